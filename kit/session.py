"""Sessions: a connection is admitted only after it proves it holds the token.

    client DEALER (a fresh random routing id per connection)        server ROUTER
      HELLO (nonce_c, who)          signed with the token  ──▶  no effect yet; a nonce_s
      ◀── CHALLENGE (nonce_s)       signed with the token       kept for this routing id
      AUTH ()                       signed with the session key ──▶  admitted: who joins
      ◀── WELCOME (...)             signed with the session key
      ... every later message, both ways, signed with the session key

    session key = HMAC-SHA256(token, "kit-session" | routing id | nonce_c | nonce_s)

Why: a signature made with the token alone is valid on any connection, so a
captured message could be replayed on a new one, and a server that routes by an
identity the client chooses lets anyone who knows (or guesses) it take a
connection over. Here the key differs per connection, so a message captured on
one is worthless on another; the routing id is random, never shown, and bound
into the key; and nothing a HELLO says has any effect until the AUTH proves the
sender holds the token *for this connection* (a replayed HELLO gets a CHALLENGE
it cannot answer). A server forgets a session when it declares its peer gone
(``drop``): the peer's later messages get the unsigned ``SESSION_UNKNOWN`` and
it must join again as someone new (fencing).

Unsigned replies, fixed bytes that carry nothing: ``AUTH_REFUSED`` (the HELLO's
signature is wrong: the token is wrong), ``AUTH_UNDECODABLE`` (signed right but
not a HELLO this version understands), ``SESSION_UNKNOWN``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections import OrderedDict

from .protocol import AUTH_REFUSED, Kind, Signer

AUTH_UNDECODABLE = b"KIT-AUTH-UNDECODABLE"
SESSION_UNKNOWN = b"KIT-SESSION-UNKNOWN"
NONCE = 16
MAX_PENDING = 4096  # handshakes half done; the oldest is forgotten past this


def session_key(token: bytes, rid: bytes, nonce_c: bytes, nonce_s: bytes) -> bytes:
    """The key both sides sign a session's messages with (see the module docstring).

    Example:
        >>> len(session_key(b"t", b"r" * 16, b"c" * 16, b"s" * 16))
        32
    """
    if isinstance(token, str):
        token = token.encode()
    msg = b"kit-session\0" + rid + nonce_c + nonce_s
    return hmac.new(token, msg, hashlib.sha256).digest()


def new_rid() -> bytes:
    """A routing id for a new connection: random, never printed (ZMQ_IDENTITY).

    Routing ids may not start with a zero byte (zmq reserves those).
    """
    return b"k" + os.urandom(15)


class Session:
    """One admitted connection: its routing id, its signer and who it said it is."""

    __slots__ = ("rid", "signer", "who", "since")

    def __init__(self, rid: bytes, signer: Signer, who):
        self.rid = rid
        self.signer = signer
        self.who = who
        self.since = time.time()

    def __repr__(self):
        return f"Session({self.rid.hex()[:8]}, {self.who!r})"


class Sessions:
    """The server side: handshakes in progress and admitted sessions, by routing id.

    ``receive(rid, frames)`` returns ``(session, kind, body, buffers)`` for a message
    of an admitted session, ``(session, Kind.AUTH, who, [])`` when a handshake
    completes (the caller admits ``who`` and answers with ``session.signer``), and
    None for everything else; ``replies`` collects what to send back
    (``[(rid, frames)]``) for the caller to send.

    Example:
        >>> server = Sessions(b"t")
        >>> rid = new_rid()
        >>> door = Signer(b"t")
        >>> server.receive(rid, door.pack(Kind.HELLO, (b"c" * 16, "me")))
        >>> challenge = door.unpack(server.replies.pop()[1])[1]
        >>> key = session_key(b"t", rid, b"c" * 16, challenge[0])
        >>> server.receive(rid, Signer(key).pack(Kind.AUTH, None))[2]
        'me'
    """

    def __init__(self, token, max_pending: int = MAX_PENDING):
        self.token = token.encode() if isinstance(token, str) else token
        self.door = Signer(self.token, replay_check=False)
        self.pending: OrderedDict = OrderedDict()  # rid -> (who, nonce_c, nonce_s)
        self.by_rid: dict = {}
        self.max_pending = max_pending
        self.replies: list = []
        self.dropped = 0

    def receive(self, rid: bytes, frames):
        s = self.by_rid.get(rid)
        if s is not None:
            msg = s.signer.unpack(frames)
            if msg is None:
                self.dropped += 1
                return None
            return s, msg[0], msg[1], msg[2]
        kind = Signer.peek_kind(frames)
        if kind == Kind.HELLO:
            self._hello(rid, frames)
        elif kind == Kind.AUTH and rid in self.pending:
            return self._auth(rid, frames)
        else:
            self.dropped += 1
            self.replies.append((rid, [SESSION_UNKNOWN]))
        return None

    def _hello(self, rid, frames):
        msg = self.door.unpack(frames)
        if msg is None:
            self.dropped += 1
            self.replies.append((rid, [AUTH_UNDECODABLE if self.door.signed_ok else AUTH_REFUSED]))
            return
        body = msg[1]
        if not (isinstance(body, tuple) and len(body) == 2 and isinstance(body[0], bytes)):
            self.dropped += 1
            self.replies.append((rid, [AUTH_UNDECODABLE]))
            return
        nonce_s = os.urandom(NONCE)
        self.pending[rid] = (body[1], body[0], nonce_s)
        self.pending.move_to_end(rid)
        while len(self.pending) > self.max_pending:
            self.pending.popitem(last=False)
        self.replies.append((rid, self.door.pack(Kind.CHALLENGE, (nonce_s,))))

    def _auth(self, rid, frames):
        who, nonce_c, nonce_s = self.pending[rid]
        signer = Signer(session_key(self.token, rid, nonce_c, nonce_s))
        if signer.unpack(frames) is None:
            self.dropped += 1
            return None
        del self.pending[rid]
        s = self.by_rid[rid] = Session(rid, signer, who)
        return s, Kind.AUTH, who, []

    def drop(self, rid: bytes) -> None:
        """Forget a session: its peer's next message gets ``SESSION_UNKNOWN``."""
        self.by_rid.pop(rid, None)
        self.pending.pop(rid, None)

    def pack(self, rid: bytes, kind: int, body, buffers=()) -> list:
        """The frames of a message to the session ``rid`` (routing id first)."""
        return [rid, *self.by_rid[rid].signer.pack(kind, body, buffers)]

    def serve(self, sock):
        """Read what waits on the ROUTER ``sock``, without blocking: answer handshakes
        (welcoming each new session) and yield the checked messages of sessions,
        ``(session, kind, body, buffers)``.

        Example:
            >>> for session, kind, body, _ in sessions.serve(router):  # doctest: +SKIP
            ...     handle(session.who, kind, body)
        """
        import zmq

        replies = self.replies
        while True:
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            got = self.receive(frames[0], frames[1:])
            while replies:
                rid, reply = replies.pop()
                sock.send_multipart([rid, *reply])
            if got is None:
                continue
            if got[1] == Kind.AUTH:
                sock.send_multipart(self.pack(got[0].rid, Kind.WELCOME, {}))
                continue
            yield got


class Dialer:
    """The client side of the handshake, one frame at a time (for event loops).

    Connects a DEALER with a fresh routing id and sends the HELLO; feed it what the
    socket receives with ``on_frames``: it answers the CHALLENGE, becomes ``ready``
    on the WELCOME (``welcome`` holds its body), and from then on returns checked
    messages ``(kind, body, buffers)``. ``failed`` says why the server refused.

    Example:
        >>> who = ("peer", "node", nid, None)
        >>> d = Dialer(zmq_ctx, "tcp://127.0.0.1:6380", token, who)  # doctest: +SKIP
        >>> while not d.ready: d.on_frames(d.sock.recv_multipart())  # doctest: +SKIP
    """

    def __init__(self, ctx, address: str, token, who, *, encrypt=False, linger=0, unbounded=False):
        import zmq

        from .protocol import secure

        self.address = address
        self.rid = new_rid()
        self.sock = sock = ctx.socket(zmq.DEALER)
        secure(sock, token, False, encrypt)
        sock.setsockopt(zmq.IDENTITY, self.rid)
        sock.setsockopt(zmq.LINGER, linger)
        if unbounded:
            sock.setsockopt(zmq.SNDHWM, 0)
            sock.setsockopt(zmq.RCVHWM, 0)
        sock.connect(address)
        self.door = Signer(token, replay_check=False)
        self.nonce_c = os.urandom(NONCE)
        self.signer = None
        self.ready = False
        self.welcome = None
        self.failed = None  # why the server refused: an AuthenticationError, or None
        self.forgotten = False  # the server answered SESSION_UNKNOWN
        sock.send_multipart(self.door.pack(Kind.HELLO, (self.nonce_c, who)))

    def on_frames(self, frames):
        """Handle one received message; return it (checked) once the session is ready."""
        from .errors import AuthenticationError

        if frames == [SESSION_UNKNOWN]:
            self.forgotten = True
            return None
        if frames == [AUTH_REFUSED]:
            self.failed = AuthenticationError(
                f"{self.address} refused this connection: the token is wrong; pass the "
                f"token printed by `kit start --head` (token= or KIT_TOKEN)"
            )
            return None
        if frames == [AUTH_UNDECODABLE]:
            self.failed = AuthenticationError(
                f"{self.address} could not read this connection's hello although the token "
                f"is right: it runs another version of kit; install the same version everywhere"
            )
            return None
        if self.signer is None:
            msg = self.door.unpack(frames)
            if msg is not None and msg[0] == Kind.CHALLENGE:
                self.signer = Signer(session_key(self.door.key, self.rid, self.nonce_c, msg[1][0]))
                self.sock.send_multipart(self.signer.pack(Kind.AUTH, None))
            return None
        msg = self.signer.unpack(frames)
        if msg is None or self.ready:
            return msg
        if msg[0] == Kind.REFUSED:
            self.failed = AuthenticationError(msg[1][0])
        elif msg[0] == Kind.WELCOME:
            self.ready = True
            self.welcome = msg[1]
            return None
        return msg

    def send(self, kind: int, body, buffers=(), copy: bool = True) -> None:
        self.sock.send_multipart(self.signer.pack(kind, body, buffers), copy=copy)

    def close(self, linger: int = 0) -> None:
        self.sock.close(linger)


def handshake(dialer: Dialer, timeout: float, on_other=None):
    """Block until ``dialer``'s session is ready; return the WELCOME body.

    ``on_other(kind, body)`` gets any other message that arrives before the welcome.

    Raises:
        AuthenticationError: the token is wrong, or the server refused who we are.
        KitError: no answer within ``timeout`` (wrong address, server down, or an
            encryption mismatch).
    """
    from .errors import KitError

    deadline = time.time() + timeout
    while not dialer.ready:
        left = deadline - time.time()
        if left <= 0 or not dialer.sock.poll(left * 1000):
            raise KitError(
                f"no answer from a kit server at {dialer.address} within {timeout:.0f} s; "
                f"check the address and that `kit start --head` is running there (if it was "
                f"started with --encrypt, connect with encrypt=True)"
            )
        msg = dialer.on_frames(dialer.sock.recv_multipart())
        if dialer.failed is not None:
            raise dialer.failed
        if msg is not None and on_other is not None:
            on_other(msg[0], msg[1])
    return dialer.welcome


class Channel(Dialer):
    """A client's connection with a session, ready when constructed (blocking handshake).

    Example:
        >>> who = ("peer", "driver", cid, None)
        >>> ch = Channel(zmq_ctx, "tcp://127.0.0.1:6380", token, who)  # doctest: +SKIP
        >>> ch.send(Kind.FETCH, ("chunk", 0, name, 0, 100))  # doctest: +SKIP
    """

    def __init__(
        self, ctx, address: str, token, who, *, timeout: float = 10.0, on_other=None, **options
    ):
        super().__init__(ctx, address, token, who, **options)
        try:
            handshake(self, timeout, on_other)
        except BaseException:
            self.sock.close(0)
            raise

    def recv(self, flags: int = 0):
        """The next message, checked: ``(kind, body, buffers)``; None if it fails its check,
        or ``SESSION_UNKNOWN`` (bytes) if the server no longer knows this connection."""
        frames = self.sock.recv_multipart(flags)
        if frames == [SESSION_UNKNOWN]:
            return SESSION_UNKNOWN
        return self.signer.unpack(frames)
