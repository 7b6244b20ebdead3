"""Wire format: signed multipart frames and message kinds.

Every message between kit processes is one zmq frame, plus raw buffer frames
for bulk data (object chunks)::

    [signature(32 B) | header(9 B): seq u64, kind u8 | body: pickle] [buffer]*

``signature`` is HMAC-SHA256 over the header, the body and every buffer frame,
keyed with the connection's session key (``kit.session``: derived from the
cluster's token, the connection's random routing id and two nonces), or with the
token itself for the two handshake messages. One frame per message because
pyzmq's cost is per frame (about as much as the signing and pickling together).
A receiver checks it with a constant-time compare *before* anything is
unpickled; a frame that fails (unsigned, mis-signed, truncated, replayed,
oversized) is dropped and counted, never unpickled. ``seq`` rises by one per
message on each sending socket, so a replayed frame is dropped too. Bodies are
plain ``pickle`` of small tuples (fast, C); user values travel inside them as
opaque bytes produced by ``kit.serialization``.
"""

from __future__ import annotations

import hashlib
import hmac
import pickle
import struct
import sys

__all__ = ["Signer", "Kind", "AUTH_REFUSED", "KIT_VERSION", "PY_VERSION", "secure"]

KIT_VERSION = "0.1.0"
PY_VERSION = "%d.%d" % sys.version_info[:2]
AUTH_REFUSED = b"KIT-AUTH-REFUSED"
MAX_FRAME = 1 << 30  # larger inbound messages are refused by zmq itself

_HEADER = struct.Struct("<QB")
_PICKLE = pickle.HIGHEST_PROTOCOL


class Kind:
    """Message kinds. Names say who sends them: C=client, H=head, N=node, W=worker."""

    HELLO = 1  # C/N/W -> H: (nonce, who): the handshake's first message (kit.session)
    WELCOME = 2  # H -> C: (info dict)
    REFUSED = 3  # H -> C: (reason,)
    SUBMIT = 4  # C -> H: [task spec, ...]
    FUNCTION = 5  # C -> H: (fid, blob)
    PUT = 6  # C -> H: (oid, payload, contained ids)
    REFS = 7  # C -> H: (incs, decs)
    SUBSCRIBE = 8  # C -> H: [oid, ...]
    OBJECTS = 9  # H -> C: [(oid, payload), ...]
    TASKS = 10  # H -> W: [(spec, fblob or None, dep payloads), ...]
    DONE = 11  # W -> H: [TaskDone as a tuple, ...]
    CANCEL = 12  # C -> H: (task id, force, recursive) ; H -> W: (task id,)
    LOG = 13  # W -> H -> C: [(task id, label, pid, node, stream, text), ...]; D -> H: the
    #          output of its direct tasks, for the other drivers
    QUERY = 14  # C -> H: (req id, what, args) ; H -> C: (req id, answer)
    REPLY = 15  # H -> C: (req id, answer)
    BLOCKED = 16  # W -> H: blocked (a bool), or (blocked, [(task id, fid or None)]): the
    #               tasks queued behind a blocked task, given back unstarted (blocked None:
    #               tasks that came while it waits, given back)
    NODE_CMD = 17  # H -> N: (command, args)
    NODE_EVENT = 18  # N -> H: (event, args)
    HEARTBEAT = 19  # N -> H / H -> C
    SHUTDOWN = 20  # H -> N/W/C
    ACTOR = 21  # C -> H: (op, args) create/kill/get
    FETCH = 22  # N <-> N: object chunks
    EVENTS = 23  # H -> C: task state events for widgets
    MULTI = 24  # C -> H: [(kind, body), ...] several messages in one frame
    CHALLENGE = 25  # H -> C: (nonce,): the handshake's second message
    AUTH = 26  # C -> H: None, signed with the session key: the handshake's proof
    # The direct path (kit.lease): a driver leases workers and talks to them itself.
    LEASE = 27  # C -> H: ("want", req, res, n) | ("return", wid) | ("kill", wid)
    #             H -> C: ("grant", req, wid, address, node) | ("lost", wid, cause)
    #                     | ("deny", req, why)
    DTASKS = 28  # D -> W: (result address, [(spec, fblob or None)])
    DDONE = 29  # W -> D: [(task id, results, started, finished, retry, called)]
    # 30: unused (a direct task's cancel goes through the head: LEASE "cancel")
    RECORDS = 31  # D -> H: [(task id, label, worker, fid, submitted, started, finished,
    #               state, error)]: finished None when sent to a worker (state "running"
    #               if it was shown waiting before), or waiting for its ref arguments
    #               (state "queued"); else its end state; error: a failed task's
    #               traceback text, else None; a finished record may add ``called``
    #               (TaskDone.called, when the worker's loading took a while)
    PUBLISH = 32  # W -> H: (req, [(owner, spec, results)]): direct results the head must keep
    # (answered with a REPLY once they are in: only then does the worker send the DDONE)
    DLOG = 33  # W -> D: [LogLine]: a direct task's output, before its DDONE


def secure(sock, token, server: bool, enabled: bool) -> None:
    """Encrypt a socket with CurveZMQ when ``enabled`` (call before bind or connect).

    The servers' (head, node transfer) key pair is derived from the token, so
    everyone who holds the token knows the public key and nothing else needs
    to be handed out; clients make a fresh key pair per socket. Signatures are
    still checked on every message: encryption hides traffic, the token admits it.
    """
    if not enabled:
        return
    import zmq
    from zmq.utils import z85

    if isinstance(token, str):
        token = token.encode()
    secret = z85.encode(hashlib.blake2b(token, digest_size=32, person=b"kit-curve").digest())
    public = zmq.curve_public(secret)
    if server:
        sock.curve_secretkey = secret
        sock.curve_publickey = public
        sock.curve_server = True
    else:
        pub, sec = zmq.curve_keypair()
        sock.curve_publickey = pub
        sock.curve_secretkey = sec
        sock.curve_serverkey = public


class Signer:
    """Signs and checks multipart messages with HMAC-SHA256.

    Example:
        >>> s = Signer(b"secret")
        >>> frames = s.pack(Kind.HELLO, ("driver", {}))
        >>> s.unpack(frames)[0] == Kind.HELLO
        True
    """

    __slots__ = ("_mac", "_seq", "_last_seen", "dropped", "key", "replay_check", "signed_ok")

    def __init__(self, token: bytes, replay_check: bool = True):
        if isinstance(token, str):
            token = token.encode()
        self.key = token
        self._mac = hmac.new(token, digestmod=hashlib.sha256)
        self._seq = 0
        self._last_seen: dict = {}
        self.dropped = 0
        self.replay_check = replay_check  # off for the handshake's HELLO (harmless to replay)
        self.signed_ok = False  # the last dropped frame had a good signature (a bad body)

    def sign(self, parts) -> bytes:
        mac = self._mac.copy()
        for f in parts:
            mac.update(f)
        return mac.digest()

    def pack(self, kind: int, body, buffers=()) -> list:
        """Return the frames of one signed message (without any routing id)."""
        self._seq += 1
        msg = _HEADER.pack(self._seq, kind) + pickle.dumps(body, _PICKLE)
        mac = self._mac.copy()
        mac.update(msg)
        for b in buffers:
            mac.update(b)
        return [mac.digest() + msg, *buffers]

    def unpack(self, frames, peer=b""):
        """Check and decode a message; return ``(kind, body, buffers)`` or None.

        ``frames`` excludes any routing id; ``peer`` names the sender for replay
        checks (one sequence per sending socket). Nothing is unpickled unless the
        signature matches and the sequence number is new.
        """
        self.signed_ok = False
        if not frames:
            self.dropped += 1
            return None
        first = frames[0]
        if len(first) < 32 + _HEADER.size + 1:
            self.dropped += 1
            return None
        view = memoryview(first)
        mac = self._mac.copy()
        mac.update(view[32:])
        for b in frames[1:]:
            mac.update(b)
        if not hmac.compare_digest(view[:32], mac.digest()):
            self.dropped += 1
            return None
        seq, kind = _HEADER.unpack_from(first, 32)
        if self.replay_check:
            if seq <= self._last_seen.get(peer, 0):
                self.dropped += 1
                return None
            self._last_seen[peer] = seq
        try:
            body = pickle.loads(view[32 + _HEADER.size :])
        except Exception:
            self.dropped += 1
            self.signed_ok = True
            return None
        return kind, body, frames[1:]

    @staticmethod
    def peek_kind(frames):
        """The kind a message claims, read without checking or unpickling (for refusals)."""
        if frames and len(frames[0]) >= 32 + _HEADER.size:
            return _HEADER.unpack_from(frames[0], 32)[1]
        return None
