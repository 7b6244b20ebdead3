"""Options on a cluster: num_returns=0 and many returns, retrying forever, and bad
resources refused before they reach the head (the rules: tests/test_options_rules.py)."""

import math
import os
import time

import pytest
from helpers import latest_event, wait_tasks, wait_until

import kit

pytestmark = pytest.mark.cluster


def _count(path):
    """Add one to the number in the file ``path``; return the new number."""
    n = int(open(path).read()) + 1 if os.path.exists(path) else 1
    with open(path, "w") as f:
        f.write(str(n))
    return n


@kit.remote(num_returns=0)
def leaves_a_mark(path):
    open(path, "w").write("ran")
    return None


@kit.remote
def numbers(n):
    return list(range(n))


@kit.remote
class Box:
    def __init__(self):
        self.value = None

    def put_in(self, value):
        self.value = value

    def take(self):
        return self.value

    def numbers(self, n):
        return list(range(n))


def test_num_returns_zero_gives_none_and_the_task_runs(cluster, tmp_path):
    mark = tmp_path / "mark"
    since = latest_event()
    assert leaves_a_mark.remote(str(mark)) is None
    wait_until(mark.exists, 30, "the task with num_returns=0 to run")
    wait_tasks("leaves_a_mark", "finished", since=since, timeout=30)
    other = tmp_path / "other"
    assert numbers.options(num_returns=0).remote(3) is None  # returned a value: dropped
    assert leaves_a_mark.options(num_returns=0).remote(str(other)) is None
    wait_until(other.exists, 30, "the second task with num_returns=0 to run")


def test_actor_method_num_returns_zero_gives_none_and_runs(cluster):
    box = Box.remote()
    assert box.put_in.options(num_returns=0).remote(5) is None
    assert kit.get(box.take.remote(), timeout=30) == 5  # calls from one caller run in order


@pytest.mark.parametrize("n", [2, 256, 257, 300])
def test_many_returns(cluster, n):
    refs = numbers.options(num_returns=n).remote(n)
    assert len(refs) == n and len({r.binary() for r in refs}) == n
    assert {r.task_id() for r in refs} == {refs[0].task_id()}
    assert kit.get(refs, timeout=60) == list(range(n))


def test_actor_method_many_returns(cluster):
    box = Box.remote()
    refs = box.numbers.options(num_returns=300).remote(300)
    assert kit.get(refs, timeout=60) == list(range(300))


def test_max_retries_minus_one_outlives_five_worker_deaths(cluster, tmp_path):
    """Ray's -1 is "retry forever": the worker dies on the first five tries, the sixth
    returns."""
    tries = str(tmp_path / "tries")

    @kit.remote(max_retries=-1)
    def dies_five_times(path):
        n = _count(path)
        if n <= 5:
            os._exit(3)
        return n

    assert kit.get(dies_five_times.remote(tries), timeout=120) == 6


def test_max_retries_minus_one_retries_exceptions_until_success(cluster, tmp_path):
    tries = str(tmp_path / "tries")

    @kit.remote(max_retries=-1, retry_exceptions=[ConnectionError])
    def flaky(path):
        n = _count(path)
        if n <= 5:
            raise ConnectionError(f"try {n}")
        return n

    assert kit.get(flaky.remote(tries), timeout=60) == 6


def test_actor_restarts_and_call_retries_minus_one_are_forever(cluster, tmp_path):
    """max_restarts=-1 and max_task_retries=-1: the process dies during the call three
    times; the actor restarts each time and the call runs again until it returns."""
    tries = str(tmp_path / "tries")

    @kit.remote(max_restarts=-1, max_task_retries=-1)
    class Fragile:
        def pid(self):
            return os.getpid()

        def call(self, path):
            n = _count(path)
            if n <= 3:
                os._exit(3)
            return n

    a = Fragile.remote()
    kit.get(a.pid.remote(), timeout=30)  # started (a death before that is not a restart)
    assert kit.get(a.call.remote(tries), timeout=120) == 4


BAD_RESOURCES = [
    {"num_cpus": -1},
    {"num_cpus": math.nan},
    {"num_cpus": math.inf},
    {"num_gpus": -2},
    {"resources": {"CPU": -1}},
    {"resources": {"slot": -1}},
]


def test_bad_resources_refused_before_the_head_sees_them(cluster, tmp_path):
    """Each bad option raises where it is given and nothing is submitted; the cluster's
    available CPUs never exceed its total, while tasks run and after."""
    total = kit.cluster_resources()["CPU"]
    since = latest_event()

    @kit.remote
    def probe():
        return 1

    for opts in BAD_RESOURCES:
        with pytest.raises(ValueError):
            probe.options(**opts)
        with pytest.raises(ValueError):
            kit.remote(**opts)(probe._fn)
    assert [e for e in kit.events(since)[1] if e["label"] == "probe"] == []  # none submitted

    release = tmp_path / "go"

    @kit.remote(num_cpus=0.5)
    def hold(path):
        while not os.path.exists(path):  # holds its CPU until the test lets go
            time.sleep(0.01)
        return 1

    refs = [hold.remote(str(release)) for _ in range(3)]
    wait_tasks("hold", "running", count=3, since=since, timeout=30)
    assert kit.available_resources().get("CPU", 0) == pytest.approx(total - 1.5)
    release.touch()
    assert kit.get(refs, timeout=30) == [1, 1, 1]
    wait_until(
        lambda: kit.available_resources().get("CPU") == total,
        30,
        f"all {total} CPUs free again",
    )
    assert kit.available_resources()["CPU"] <= kit.cluster_resources()["CPU"]
