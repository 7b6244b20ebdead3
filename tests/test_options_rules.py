"""Options are checked where they are given, by Ray's rules (kit/options.py): no cluster.

Each bad option raises Ray's exception type (TypeError for a wrong type, ValueError for
a value out of range) from ``@kit.remote(...)`` and from ``.options(...)``, with a
message that names the option and the value; the options Ray accepts are accepted.
"""

import math

import pytest

import kit
from kit.records import MAX_RETURNS, object_id, task_of

pytestmark = pytest.mark.fast


def f():
    return 1


class C:
    def m(self):
        return 1


NAN, INF = math.nan, math.inf

# (options, exception, words the message must contain)
BAD_TASK = [
    ({"num_cpus": -1}, ValueError, ["num_cpus=-1", ">= 0"]),
    ({"num_cpus": NAN}, ValueError, ["num_cpus=nan", "finite"]),
    ({"num_cpus": INF}, ValueError, ["num_cpus=inf", "finite"]),
    ({"num_cpus": -INF}, ValueError, ["num_cpus=-inf"]),
    ({"num_cpus": "1"}, TypeError, ["num_cpus", "str", "'1'"]),
    ({"num_cpus": 0.00001}, ValueError, ["num_cpus=1e-05", "0.0001"]),
    ({"num_gpus": -2}, ValueError, ["num_gpus=-2"]),
    ({"num_gpus": NAN}, ValueError, ["num_gpus=nan"]),
    ({"memory": -1}, ValueError, ["memory=-1"]),
    ({"memory": INF}, ValueError, ["memory=inf"]),
    ({"resources": {"CPU": 1}}, ValueError, ["'CPU'", "num_cpus"]),
    ({"resources": {"GPU": 1}}, ValueError, ["'GPU'", "num_gpus"]),
    ({"resources": {"memory": 1}}, ValueError, ["'memory'", "memory option"]),
    ({"resources": {"object_store_memory": 1}}, ValueError, ["'object_store_memory'"]),
    ({"resources": {"disk": -1}}, ValueError, ["resources['disk']=-1"]),
    ({"resources": {"disk": NAN}}, ValueError, ["resources['disk']=nan"]),
    ({"resources": {"disk": "1"}}, TypeError, ["resources['disk']", "str"]),
    ({"resources": {1: 1}}, TypeError, ["resources", "int"]),
    ({"resources": "disk"}, TypeError, ["resources", "dict"]),
    ({"num_returns": -1}, ValueError, ["num_returns=-1", str(MAX_RETURNS)]),
    ({"num_returns": MAX_RETURNS + 1}, ValueError, [f"num_returns={MAX_RETURNS + 1}"]),
    ({"num_returns": 1.5}, TypeError, ["num_returns", "float"]),
    ({"num_returns": "x"}, TypeError, ["num_returns", "'x'"]),
    ({"num_returns": "streaming"}, ValueError, ["num_returns='streaming'", "list"]),
    ({"max_retries": -2}, ValueError, ["max_retries=-2", "-1", "forever"]),
    ({"max_retries": 1.5}, TypeError, ["max_retries", "float"]),
    ({"max_retries": "3"}, TypeError, ["max_retries", "'3'"]),
    ({"retry_exceptions": "x"}, TypeError, ["retry_exceptions", "'x'"]),
    ({"retry_exceptions": 1}, TypeError, ["retry_exceptions", "int"]),
    ({"retry_exceptions": [int]}, ValueError, ["retry_exceptions", "int", "exception class"]),
    ({"name": 1}, TypeError, ["name", "int"]),
    ({"scheduling_strategy": 1}, TypeError, ["scheduling_strategy", "int"]),
    ({"scheduling_strategy": "x"}, ValueError, ["scheduling_strategy='x'", "'SPREAD'"]),
    ({"node": "zz"}, ValueError, ["node='zz'", "hex"]),
    ({"node": 3}, TypeError, ["node", "int"]),
    ({"runtime_env": "x"}, TypeError, ["runtime_env", "dict"]),
    ({"placement_group": "pg"}, ValueError, ["placement_group='pg'"]),
    ({"max_restarts": 1}, ValueError, ["max_restarts", "remote function"]),
    ({"bogus": 1}, ValueError, ["bogus"]),
]

BAD_ACTOR = [
    ({"num_cpus": -1}, ValueError, ["num_cpus=-1"]),
    ({"num_cpus": NAN}, ValueError, ["num_cpus=nan"]),
    ({"resources": {"CPU": 1}}, ValueError, ["'CPU'"]),
    ({"max_restarts": -2}, ValueError, ["max_restarts=-2", "forever"]),
    ({"max_restarts": 1.5}, TypeError, ["max_restarts", "float"]),
    ({"max_task_retries": -2}, ValueError, ["max_task_retries=-2"]),
    ({"max_task_retries": "1"}, TypeError, ["max_task_retries", "'1'"]),
    ({"max_concurrency": -1}, ValueError, ["max_concurrency=-1", ">= 0"]),
    ({"max_concurrency": 1.5}, TypeError, ["max_concurrency", "float"]),
    ({"name": 1}, TypeError, ["name", "int"]),
    ({"name": ""}, ValueError, ["name=''", "non-empty"]),
    ({"namespace": 1}, TypeError, ["namespace", "int"]),
    ({"namespace": ""}, ValueError, ["namespace=''"]),
    ({"lifetime": "x"}, ValueError, ["lifetime='x'", "'detached'"]),
    ({"lifetime": 1}, TypeError, ["lifetime", "int"]),
    ({"get_if_exists": 1}, TypeError, ["get_if_exists", "bool"]),
    ({"get_if_exists": True}, ValueError, ["get_if_exists", "name"]),
    ({"max_retries": 1}, ValueError, ["max_retries", "actor class"]),
    ({"num_returns": 2}, ValueError, ["num_returns", "actor class"]),
]

GOOD_TASK = [
    {"num_cpus": 0},
    {"num_cpus": 0.5},
    {"num_cpus": True},
    {"num_cpus": None},
    {"num_gpus": 0.25},
    {"memory": 1.5},
    {"resources": {"disk": 0.5}},
    {"resources": {}},
    {"num_returns": 0},
    {"num_returns": 257},
    {"num_returns": None},
    {"max_retries": -1},
    {"max_retries": 0},
    {"max_retries": None},
    {"retry_exceptions": True},
    {"retry_exceptions": [ValueError, KeyError]},
    {"retry_exceptions": (ConnectionError,)},
    {"name": "nap"},
    {"scheduling_strategy": "SPREAD"},
    {"scheduling_strategy": "DEFAULT"},
    {"scheduling_strategy": kit.NodeAffinitySchedulingStrategy("ab" * 8, soft=True)},
    {"node": "ab" * 8},
]

GOOD_ACTOR = [
    {"max_restarts": -1, "max_task_retries": -1},
    {"max_concurrency": 0},
    {"max_concurrency": 8},
    {"lifetime": "detached"},
    {"lifetime": "non_detached"},
    {"name": "a", "namespace": "ns", "get_if_exists": True},
    {"num_cpus": 0.5, "resources": {"disk": 1}},
]


def _ids(cases):
    return [repr(c[0] if isinstance(c, tuple) else c)[:60] for c in cases]


def _raises(make, exc, words):
    with pytest.raises(exc) as info:
        make()
    text = str(info.value)
    for w in words:
        assert w in text, f"{w!r} not in the message: {text}"


@pytest.mark.parametrize("opts, exc, words", BAD_TASK, ids=_ids(BAD_TASK))
def test_bad_task_option_refused_where_given(opts, exc, words):
    _raises(lambda: kit.remote(**opts)(f), exc, words)
    _raises(lambda: kit.remote(f).options(**opts), exc, words)
    _raises(lambda: kit.remote(num_cpus=2)(f).options(**opts), exc, words)


@pytest.mark.parametrize("opts, exc, words", BAD_ACTOR, ids=_ids(BAD_ACTOR))
def test_bad_actor_option_refused_where_given(opts, exc, words):
    _raises(lambda: kit.remote(**opts)(C), exc, words)
    _raises(lambda: kit.remote(C).options(**opts), exc, words)


@pytest.mark.parametrize("opts", GOOD_TASK, ids=_ids(GOOD_TASK))
def test_options_ray_accepts_are_accepted_for_tasks(opts):
    kit.remote(**opts)(f)
    kit.remote(f).options(**opts)


@pytest.mark.parametrize("opts", GOOD_ACTOR, ids=_ids(GOOD_ACTOR))
def test_options_ray_accepts_are_accepted_for_actors(opts):
    kit.remote(**opts)(C)
    kit.remote(C).options(**opts)


def test_none_means_the_default_not_the_decorators_value():
    rf = kit.remote(num_cpus=2, max_retries=5, num_returns=3)(f)
    o = rf.options(num_cpus=None, max_retries=None, num_returns=None)._opts
    assert (o["num_cpus"], o["max_retries"], o["num_returns"]) == (1, 3, 1)
    assert rf.options(num_cpus=None)._res == {"CPU": 1.0}


def test_get_if_exists_checked_against_the_name_already_given():
    kit.remote(name="a")(C).options(get_if_exists=True)  # the name came first
    with pytest.raises(ValueError, match="get_if_exists"):
        kit.remote(C).options(get_if_exists=True)


@pytest.mark.parametrize(
    "n, exc", [(-1, ValueError), (1.5, TypeError), ("streaming", ValueError), ("2", TypeError)]
)
def test_method_num_returns_checked(n, exc):
    with pytest.raises(exc, match="num_returns"):
        kit.method(num_returns=n)


def test_method_num_returns_zero_and_many_accepted():
    assert kit.method(num_returns=0)(C.m).__kit_num_returns__ == 0
    assert kit.method(num_returns=300)(C.m).__kit_num_returns__ == 300


def test_object_ids_have_one_home():
    tid = b"c" * 8 + (5).to_bytes(7, "little")
    ids = [object_id(tid, i) for i in (0, 1, 255, 256, 65_536, MAX_RETURNS)]
    assert len(set(ids)) == len(ids) and {task_of(o) for o in ids} == {tid}
    assert object_id(tid, 256)[-4:] == (256).to_bytes(4, "little")
    ref = kit.ObjectRef(object_id(tid, 300))
    assert ref.task_id() == tid


@pytest.mark.parametrize("module", ["kit.options", "kit.records"])
def test_docstring_examples(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.failed == 0 and result.attempted > 0
