"""Work no node could ever run is reported at once and fails after a timeout.

Tasks asking for resources no node has (``{"nope": 1}``, more CPUs than any node) used
to wait forever without a word. Now the driver hears at once which resource is missing
and what the largest node has, and ``get`` raises ``TaskUnschedulableError`` (Ray's
name) once ``KIT_UNSCHEDULABLE_TIMEOUT`` seconds pass; work that only waits for busy
slots is never failed.
"""

import time

import pytest
from helpers import wait_until

import kit

pytestmark = pytest.mark.cluster


@pytest.fixture
def quick(fresh, monkeypatch):
    monkeypatch.setenv("KIT_UNSCHEDULABLE_TIMEOUT", "2")
    fresh(num_cpus=1, resources={"disk": 1})


def test_unschedulable_tasks_are_named_at_once_then_fail(quick, capfd):
    @kit.remote
    def f():
        return 1

    too_big = f.options(num_cpus=4).remote()
    missing = f.options(resources={"nope": 1}).remote()
    err = []  # what kit says on stderr (a line about shipping this module may come first)

    def told():
        err.append(capfd.readouterr().err)
        return "kit: f needs 4 CPU but the largest node has 1" in "".join(err)

    wait_until(told, 10, lambda: f"kit to name the task at once; it said {''.join(err)!r}")
    with pytest.raises(kit.TaskUnschedulableError, match="largest node has 1") as ei:
        kit.get(too_big, timeout=30)
    assert "add a node" in str(ei.value)
    with pytest.raises(kit.TaskUnschedulableError, match="needs 1 nope and no node has any"):
        kit.get(missing, timeout=30)
    assert kit.get(f.options(resources={"disk": 1}).remote(), timeout=30) == 1


def test_waiting_for_a_busy_slot_is_not_unschedulable(quick):
    @kit.remote
    def hold(seconds):
        time.sleep(seconds)  # the behaviour under test: the only slot stays busy
        return seconds

    first = hold.remote(4)
    second = hold.remote(0)  # waits for the slot longer than the 2 s timeout
    assert kit.get([first, second], timeout=60) == [4, 0]


def test_an_actor_no_node_fits_dies_saying_why(quick):
    @kit.remote(num_cpus=8)
    class Big:
        def ping(self):
            return "pong"

    a = Big.remote()
    with pytest.raises(kit.ActorDiedError, match="needs 8 CPU but the largest node has 1"):
        kit.get(a.ping.remote(), timeout=30)
