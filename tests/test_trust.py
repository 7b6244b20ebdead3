"""No way in without the token: nothing a client without it sends changes what the head
believes, and nothing captured from one connection works on another.

Each test is an attack the issue "Trustworthy under faults and attack" found working:
taking over a node's or a driver's connection by its id, replaying a captured signed
SUBMIT under a new identity, and a signed hello with a body that is not a hello.
"""

import json
import os
import pickle
import subprocess
import sys
import time

import pytest
import zmq
from helpers import stays_true, wait_until

import kit
from kit.protocol import Kind, Signer
from kit.session import AUTH_UNDECODABLE, SESSION_UNKNOWN, Dialer

pytestmark = pytest.mark.cluster

TOKEN = "trust-test-token-0123456789abcdef"
ADDRESS = "127.0.0.1:6396"
NODE_TIMEOUT = 4  # seconds of silence before the daemon declares a node dead


@pytest.fixture
def daemon_cluster(tmp_path):
    """A `kit start --head` cluster whose nodes are declared dead after NODE_TIMEOUT s of
    silence (short, and still safe on a busy 2-core machine)."""
    if kit.is_initialized():
        kit.shutdown()  # the module's local cluster: this test connects to the daemon
    env = dict(os.environ, KIT_STATE_DIR=str(tmp_path / "state"))
    out = subprocess.run(
        [sys.executable, "-m", "kit.cli", "start", "--head", "--port", "6396", "--num-cpus",
         "2", "--token", TOKEN, "--node-ip-address", "127.0.0.1", "--node-timeout",
         str(NODE_TIMEOUT)],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    try:
        yield env
    finally:
        if kit.is_initialized():
            kit.shutdown()
        subprocess.run([sys.executable, "-m", "kit.cli", "stop"], env=env, timeout=60,
                       capture_output=True)  # fmt: skip


def _raw(ctx, identity=None):
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    if identity is not None:
        s.setsockopt(zmq.IDENTITY, identity)
    s.connect("tcp://" + ADDRESS)
    return s


def test_stolen_ids_take_nothing_over(daemon_cluster):
    """A client without the token connects for 5 s under every id it can learn (the node's
    id that `kit status` shows, the driver's, the ids kit used to route by) and sends
    frames signed with a wrong token: the node stays alive past the node timeout and the
    driver keeps getting results (it used to lose its node, or every later result)."""
    kit.init(address=ADDRESS, token=TOKEN)
    node = kit.nodes()[0]["NodeID"]
    me = kit.api._current_client().cid
    ctx = zmq.Context()
    wrong = Signer("not-the-token")
    ids = [bytes.fromhex(node) + b"n", me + b"r", me + b"t", b"k" + os.urandom(15)]
    socks = [_raw(ctx, i) for i in ids]
    try:
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:  # the attack, for longer than the node timeout
            for s in socks:
                s.send_multipart(wrong.pack(Kind.HEARTBEAT, None))
                s.send_multipart(wrong.pack(Kind.NODE_EVENT, ("bye", None)))
            time.sleep(0.05)  # the attacker's pace
    finally:
        for s in socks:
            s.close(0)
        ctx.term()

    @kit.remote
    def one():
        return 1

    wait_until(lambda: kit.get(one.remote(), timeout=10) == 1, 10, "a result")
    # a node the attack had cut off would be declared dead within a node timeout of it
    stays_true(
        lambda: [n["Alive"] for n in kit.nodes()] == [True],
        NODE_TIMEOUT + 0.5,
        "the node alive after the attack",
        interval=0.25,
    )
    assert [n["Alive"] for n in kit.nodes()] == [True]
    assert kit.get(one.remote(), timeout=10) == 1
    assert kit.api._current_client().query("status")["dropped"] > 0


def test_a_replayed_submit_runs_nothing(fresh, tmp_path, monkeypatch):
    """A signed SUBMIT captured from a driver's connection and sent again on a new
    connection is refused (each connection signs with its own key), and sent again on
    the same connection is dropped as a replay: the task runs once (it ran twice)."""
    monkeypatch.setenv("KIT_DIRECT", "0")  # the head's path (the direct one: below)
    fresh(num_cpus=1)
    client = kit.api._current_client()
    captured = []
    send = client.tx.send_multipart

    def recording(frames, *a, **k):
        captured.append(list(frames))
        return send(frames, *a, **k)

    log = tmp_path / "runs"

    @kit.remote
    def once(path):
        with open(path, "a") as f:
            f.write("ran\n")
        return 1

    client.tx.send_multipart = recording
    try:
        ref = once.remote(str(log))
    finally:
        client.tx.send_multipart = send
    assert kit.get(ref, timeout=30) == 1
    submit = [f for f in captured if Signer.peek_kind(f) in (Kind.SUBMIT, Kind.MULTI)]
    assert submit, "the SUBMIT was captured"
    ctx = zmq.Context()
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect("tcp://" + kit.api._state["ctx"].address)
    try:
        for frames in submit:
            s.send_multipart(frames)
        assert s.poll(5000) and s.recv_multipart() == [SESSION_UNKNOWN]
    finally:
        s.close(0)
        ctx.term()
    with client.lock:
        for frames in submit:  # the same connection: a replay
            client.tx.send_multipart(frames)

    @kit.remote
    def after():
        return 2

    assert kit.get(after.remote(), timeout=30) == 2  # later messages are handled...
    assert log.read_text() == "ran\n"  # ...and the task ran once


def test_a_replayed_direct_task_runs_nothing(fresh, tmp_path, monkeypatch):
    """The direct path (kit.lease): a task sent straight to a leased worker, captured and
    sent again on a new connection to that worker, is refused: the task runs once."""
    fresh(num_cpus=1)
    captured = []
    send = Dialer.send

    def recording(self, kind, body, buffers=(), copy=True):
        if kind == Kind.DTASKS:
            captured.append((self.address, self.signer.pack(kind, body, buffers)))
        return send(self, kind, body, buffers, copy)

    log = tmp_path / "runs"

    @kit.remote
    def once(path):
        with open(path, "a") as f:
            f.write("ran\n")
        return 1

    monkeypatch.setattr(Dialer, "send", recording)
    assert kit.get(once.remote(str(log)), timeout=30) == 1
    monkeypatch.setattr(Dialer, "send", send)
    assert captured, "the task went straight to a worker"
    address, frames = captured[0]
    ctx = zmq.Context()
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(address)
    try:
        s.send_multipart(frames)
        assert s.poll(5000) and s.recv_multipart() == [SESSION_UNKNOWN]
    finally:
        s.close(0)
        ctx.term()
    assert kit.get(once.remote(str(tmp_path / "other")), timeout=30) == 1  # still serving
    assert log.read_text() == "ran\n"


def test_a_signed_hello_that_is_not_a_hello(cluster):
    """The right token around a body that does not decode: the answer says so (it used to
    say the token is wrong)."""
    ctx = zmq.Context()
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect("tcp://" + cluster.address)
    try:
        signer = Signer(cluster.token)
        frames = signer.pack(Kind.HELLO, None)
        head = frames[0][: 32 + 9]
        body = b"\x80\x05not a pickle"
        good = Signer(cluster.token).sign([head[32:] + body])
        s.send_multipart([good + head[32:] + body])
        assert s.poll(5000) and s.recv_multipart() == [AUTH_UNDECODABLE]
        s.send_multipart(Signer(cluster.token).pack(Kind.HELLO, ("no nonce",)))
        assert s.poll(5000) and s.recv_multipart() == [AUTH_UNDECODABLE]
    finally:
        s.close(0)
        ctx.term()


def test_a_wrong_token_joins_nothing(daemon_cluster):
    """A node started with a wrong token is refused at once and never listed."""
    env = dict(daemon_cluster, KIT_STATE_DIR=daemon_cluster["KIT_STATE_DIR"] + "-b")
    out = subprocess.run(
        [sys.executable, "-m", "kit.cli", "start", "--address", ADDRESS, "--token", "wrong",
         "--num-cpus", "1"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert out.returncode == 1 and "token is wrong" in out.stderr, out.stdout + out.stderr
    kit.init(address=ADDRESS, token=TOKEN)
    assert len(kit.nodes()) == 1
    state = json.loads(open(os.path.join(daemon_cluster["KIT_STATE_DIR"], "head.json")).read())
    assert state["address"] == ADDRESS
    subprocess.run([sys.executable, "-m", "kit.cli", "stop"], env=env, timeout=60,
                   capture_output=True)  # fmt: skip


def test_session_frames_are_never_unpickled_unchecked(cluster):
    """A frame that would run code when unpickled, with a session-looking header."""

    class Bomb:
        def __reduce__(self):
            return (exec, ("import os; os._exit(99)",))

    ctx = zmq.Context()
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect("tcp://" + cluster.address)
    try:
        for kind in (Kind.AUTH, Kind.SUBMIT, Kind.HELLO):
            s.send_multipart([b"\0" * 32 + bytes([1] + [0] * 7 + [kind]) + pickle.dumps(Bomb())])
    finally:
        s.close(0)
        ctx.term()

    @kit.remote
    def alive():
        return "yes"

    assert kit.get(alive.remote(), timeout=30) == "yes"
