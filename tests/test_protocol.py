"""Signed frames: bad, truncated, replayed and unsigned messages are dropped unopened."""

import pickle

import pytest
import zmq

import kit
from kit.protocol import AUTH_REFUSED, Kind, Signer

pytestmark = pytest.mark.cluster


class Bomb:
    """Unpickling this would run code; a checked signature must stop it first."""

    def __reduce__(self):
        return (exec, ("import os; os._exit(99)",))


def test_pack_unpack_roundtrip():
    a, b = Signer(b"k"), Signer(b"k")
    kind, body, bufs = b.unpack(a.pack(Kind.SUBMIT, [1, 2], [b"buf"]), b"peer")
    assert kind == Kind.SUBMIT and body == [1, 2] and bufs == [b"buf"]


def test_wrong_key_truncated_and_replay_are_dropped():
    a, b = Signer(b"k"), Signer(b"other")
    frames = a.pack(Kind.SUBMIT, "x")
    assert b.unpack(frames) is None
    good = Signer(b"k")
    assert good.unpack([frames[0][:40]]) is None
    assert good.unpack([frames[0][:-1]] + frames[1:]) is None
    assert good.unpack(frames, b"p") is not None
    assert good.unpack(frames, b"p") is None  # replayed
    assert good.dropped == 3


def test_unsigned_pickle_is_never_loaded():
    evil = [b"\0" * 32 + b"\1" * 9 + pickle.dumps(Bomb())]
    s = Signer(b"k")
    assert s.unpack(evil) is None  # the process is still here: nothing was unpickled


def test_wrong_token_is_refused_quickly(cluster):
    addr = "tcp://" + cluster.address
    with pytest.raises(kit.AuthenticationError, match="token is wrong"):
        kit.client.Client(addr, "not-the-token", "driver", hello_timeout=5)


def test_garbage_frames_leave_head_serving(cluster):
    ctx = zmq.Context()
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect("tcp://" + cluster.address)
    s.send_multipart([b"\0" * 32 + b"\1" * 9 + pickle.dumps(Bomb())])
    s.send_multipart([b"x"])
    s.send_multipart([b"\0" * 32 + bytes([0] * 8 + [Kind.HELLO]) + b"junk"])
    assert s.poll(5000), "the head should answer a bad hello with a refusal"
    assert s.recv_multipart() == [AUTH_REFUSED]
    s.close()
    ctx.term()

    @kit.remote
    def one():
        return 1

    assert kit.get(one.remote(), timeout=10) == 1
    assert kit.api._current_client().query("status")["dropped"] >= 3


def test_version_mismatch_is_refused(cluster, monkeypatch):
    monkeypatch.setattr(kit.client, "PY_VERSION", "2.7")
    with pytest.raises(kit.AuthenticationError, match="version mismatch"):
        kit.client.Client("tcp://" + cluster.address, cluster.token, "driver", hello_timeout=5)


def test_encrypted_cluster(fresh):
    """With encrypt=True every connection is CurveZMQ; plain peers cannot talk to it."""
    import numpy as np

    ctx = fresh(num_nodes=2, num_cpus=1, encrypt=True)
    a, b = [n["NodeID"] for n in kit.nodes()]

    @kit.remote
    def make():
        return np.arange(1 << 20)

    @kit.remote
    def total(x):
        return int(x.sum())

    S = kit.NodeAffinitySchedulingStrategy
    ref = make.options(scheduling_strategy=S(a)).remote()
    assert (
        kit.get(total.options(scheduling_strategy=S(b)).remote(ref))
        == (1 << 20) * ((1 << 20) - 1) // 2
    )
    with pytest.raises(kit.KitError, match="encrypt"):
        kit.client.Client("tcp://" + ctx.address, ctx.token, "driver", hello_timeout=2)
