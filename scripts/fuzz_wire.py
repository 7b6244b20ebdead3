"""Send many bad frames to a live cluster's head and node ports; the cluster must shrug.

    python scripts/fuzz_wire.py [--frames 100000] [--short]

Kinds of frames: random bytes, truncated real messages, oversized frames,
replayed real messages (captured signed frames sent again), unsigned pickles
(that would run code if unpickled), and frames signed with another token.
Afterwards every kit process must still be alive, nothing may have been
unpickled (a pickle that would kill the head is among them), and the cluster
must run a task. Prints the figures as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import random
import sys
import time

import psutil
import zmq


class Bomb:
    def __reduce__(self):
        return (os._exit, (97,))


def frames_for(i, signer, other, rng, captured):
    kind = i % 6
    if kind == 0:
        return [rng.randbytes(rng.randint(0, 300))]
    if kind == 1:
        good = signer.pack(4, [("x",)])
        return [good[0][: rng.randint(0, len(good[0]) - 1)]]
    if kind == 2:
        return [rng.randbytes(64) * rng.randint(1000, 40000)]
    if kind == 3:
        return captured[rng.randrange(len(captured))]
    if kind == 4:
        return [b"\0" * 32 + b"\x01" * 9 + pickle.dumps(Bomb()), rng.randbytes(10)]
    return other.pack(rng.choice([1, 4, 6, 7, 11, 17]), Bomb())


def _settled_dropped(client, deadline=60.0, quiet=1.0):
    """The head's count of frames it dropped, once it has stopped growing for ``quiet``
    seconds (the head has read everything sent; a fixed wait was too short on a loaded
    machine), or as it is after ``deadline``."""
    last, since = -1, time.monotonic()
    end = since + deadline
    while time.monotonic() < end:
        dropped = client.query("status", timeout=60)["dropped"]
        if dropped != last:
            last, since = dropped, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
        time.sleep(0.05)  # polling the head's counter: nothing to wait on but it
    return last


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--frames", type=int, default=100_000)
    p.add_argument("--short", action="store_true", help="2,000 frames (for the tests)")
    args = p.parse_args(argv)
    n = 2000 if args.short else args.frames
    import kit
    from kit.protocol import Signer

    ctx_info = kit.init(num_cpus=1)
    client = kit.api._current_client()
    token = ctx_info.token
    procs = [c for c in psutil.Process().children(recursive=True)]
    node = kit.nodes()[0]
    transfer = client.transfer
    rng = random.Random(1234)
    signer = Signer(token)  # real token: for truncation and replays
    other = Signer("some-other-token")
    captured = [signer.pack(7, [(os.urandom(16), 1)]) for _ in range(20)]
    ctx = zmq.Context()
    targets = []
    for addr in ("tcp://" + ctx_info.address, transfer):
        s = ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.SNDHWM, 0)
        s.connect(addr)
        targets.append(s)
    # the captured (signed, valid) frames go first once, so later copies are replays
    for f in captured:
        targets[0].send_multipart(f)
    t = time.time()
    for i in range(n):
        targets[i % 2].send_multipart(frames_for(i, signer, other, rng, captured))
    dropped = _settled_dropped(client)
    alive = all(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in procs)

    @kit.remote
    def after():
        return "served"

    served = kit.get(after.remote(), timeout=60)
    for s in targets:
        s.close(0)
    ctx.term()
    kit.shutdown()
    out = {
        "frames_sent": n,
        "head_dropped": dropped,
        "processes_alive": alive,
        "processes": len(procs),
        "served_after": served == "served",
        "seconds": round(time.time() - t, 2),
        "node": node["NodeID"],
    }
    print(json.dumps(out))
    return 0 if alive and served == "served" else 1


if __name__ == "__main__":
    sys.exit(main())
