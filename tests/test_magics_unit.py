"""The pure parts of the magics: free names, compiling, --map, shipping, rendering. No cluster."""

import ast
import doctest
import threading
import traceback

import numpy as np
import pytest

import kit
from magics import analysis, cells, output, render, runner, shipping
from magics.analysis import (
    assigned_names,
    bind_target,
    compile_cell,
    ends_with_semicolon,
    free_names,
    parse_map,
    split_last_expr,
)

pytestmark = pytest.mark.fast


@pytest.mark.parametrize("module", [analysis, shipping, render, output, runner, cells])
def test_doctests(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


# ---- free names ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "source, expected",
    [
        ("y = x + 1", {"x"}),
        ("x = 1\nprint(x)", {"print"}),
        ("x = x + 1", {"x"}),
        ("x += 1", {"x"}),
        ("a.b = c", {"a", "c"}),
        ("d[k] = v", {"d", "k", "v"}),
        ("a, *b = seq\nprint(a, b)", {"seq", "print"}),
        ("import numpy as np\nnp.zeros(n)", {"n"}),
        ("import os.path\nos.path.join(p)", {"p"}),
        ("from math import pi, tau as t\npi + t + r", {"r"}),
        ("del z", {"z"}),
        ("z = 1\ndel z\nz", {"z"}),
        ("q: int = 3\nq", {"int"}),
        ("q: int\nq", {"int", "q"}),
        ("(w := f(1))\nw + 1", {"f"}),
    ],
)
def test_free_names_statements(source, expected):
    assert free_names(source) == expected


@pytest.mark.parametrize(
    "source, expected",
    [
        # a function's parameters and locals are its own; its globals are read where it is defined
        (
            "def f(a, *args, k=default, **kw):\n    b = a + g\n    return b, args, kw, k\n",
            {"default", "g"},
        ),
        ("def f():\n    return helper()\nhelper = 1\n", {"helper"}),
        ("def f():\n    global counter\n    counter += 1\n", {"counter"}),
        (
            "def f():\n    counter = 0\n    def g():\n        nonlocal counter\n"
            "        counter += step\n    return g\n",
            {"step"},
        ),
        (
            "def outer():\n    v = 1\n    def inner():\n        return v + w\n    return inner\n",
            {"w"},
        ),
        ("@decorate\ndef f(x: Ann) -> Ret:\n    pass\n", {"decorate", "Ann", "Ret"}),
        ("async def f():\n    await g()\n", {"g"}),
        ("f = lambda a, b=dflt: a + b + c\n", {"dflt", "c"}),
        # comprehensions: targets are local, the first iterable is read outside
        ("[i * k for i in items if i > lo]", {"items", "k", "lo"}),
        ("{k: v for k, v in pairs.items()}", {"pairs"}),
        ("[(i, j) for i in rows for j in cols(i)]", {"rows", "cols"}),
        ("sum(x for x in xs)", {"sum", "xs"}),
        ("[i for i in range(3)]\ni", {"range", "i"}),
        # classes: the body reads outside; methods skip the class scope
        (
            "class A(Base, metaclass=Meta):\n    x = 1\n    y = x + z\n"
            "    def m(self):\n        return self.x + x\n",
            {"Base", "Meta", "z", "x"},
        ),
        ("class A:\n    pass\nA()", set()),
    ],
)
def test_free_names_scopes(source, expected):
    assert free_names(source) == expected


@pytest.mark.parametrize(
    "source, expected",
    [
        ("if c:\n    x = 1\nelse:\n    x = 2\nx", {"c"}),
        ("if c:\n    x = 1\nx", {"c", "x"}),
        ("for i in r:\n    t = i\nt, i", {"r", "t", "i"}),
        ("for i in r:\n    print(i)", {"r", "print"}),
        ("while cond():\n    y = 1\ny", {"cond", "y"}),
        ("with open(p) as fh:\n    data = fh.read()\ndata", {"open", "p"}),
        ("try:\n    v = f()\nexcept E as e:\n    v = e\nv", {"f", "E"}),
        ("try:\n    v = f()\nexcept E:\n    pass\nv", {"f", "E", "v"}),
        ("try:\n    pass\nfinally:\n    done = 1\ndone", set()),
    ],
)
def test_free_names_control_flow(source, expected):
    assert free_names(source) == expected


def test_free_names_match_statement():
    src = (
        "match cmd:\n    case Point(x=px) if px > lim:\n        r = px\n"
        "    case _:\n        r = 0\n"
    )
    assert free_names(src) == {"cmd", "Point", "lim"}


def test_free_names_with_bound_map_variable():
    assert free_names("y = i * scale", bound={"i"}) == {"scale"}


def test_free_names_syntax_error():
    with pytest.raises(SyntaxError):
        free_names("x = (")


def test_assigned_names():
    src = (
        "import os, numpy as np\nfrom a import b\nx = 1\nfor i in r:\n    t = 2\n"
        "def f():\n    inner = 1\nclass C:\n    attr = 1\nwith w as (p, q):\n    pass\n"
        "[z for z in r]\n(k := 3)\n"
    )
    assert assigned_names(src) == {"os", "np", "b", "x", "i", "t", "f", "C", "p", "q", "k"}


# ---- compiling and the last expression --------------------------------------------------


def test_split_last_expr():
    body, last = split_last_expr(ast.parse("a = 1\na + 1"), "a = 1\na + 1")
    assert len(body.body) == 1 and ast.unparse(last) == "a + 1"
    assert split_last_expr(ast.parse("a = 1"))[1] is None
    assert split_last_expr(ast.parse("a + 1;"), "a + 1;")[1] is None


@pytest.mark.parametrize(
    "source, quiet",
    [
        ("x", False),
        ("x;", True),
        ("x;  # note", True),
        ("'a;'", False),
        ("x  # ;", False),
    ],
)
def test_semicolon(source, quiet):
    assert ends_with_semicolon(source) is quiet


def test_compile_cell_keeps_cell_line_numbers():
    code = compile_cell("a = 1\n\nb = a / 0\n", "<remote-cell-9>")
    assert code.last is None
    with pytest.raises(ZeroDivisionError) as ei:
        exec(code.body, {})
    frames = traceback.extract_tb(ei.value.__traceback__)
    assert (frames[-1].filename, frames[-1].lineno) == ("<remote-cell-9>", 3)


def test_compile_cell_counts_the_magic_line():
    code = compile_cell("a = 1\na / 0", "<remote-cell-9>", first_line=2)
    with pytest.raises(ZeroDivisionError) as ei:
        exec(code.body, {})
        eval(code.last, {"a": 1})
    assert traceback.extract_tb(ei.value.__traceback__)[-1].lineno == 3


def test_compile_cell_syntax_error_line():
    with pytest.raises(SyntaxError) as ei:
        compile_cell("x = 1\ny = )\n", "<remote-cell-2>", first_line=2)
    assert (ei.value.filename, ei.value.lineno) == ("<remote-cell-2>", 3)


# ---- --map ----------------------------------------------------------------------------


def test_parse_map():
    m = parse_map("i in range(8)")
    assert (m.target, m.names, m.iterable) == ("i", frozenset({"i"}), "range(8)")
    m = parse_map("(x, y) in zip(a, b)")
    assert m.names == {"x", "y"} and m.iterable == "zip(a, b)"


@pytest.mark.parametrize(
    "text", ["range(8)", "i range(8)", "a.b in x", "d[0] in x", "i in", "i in x: pass", ""]
)
def test_parse_map_rejects(text):
    with pytest.raises(ValueError, match="--map expects"):
        parse_map(text)


def test_bind_target():
    ns = {}
    bind_target("a, *rest", [1, 2, 3], ns)
    assert ns == {"a": 1, "rest": [2, 3]}


# ---- the runner, without a cluster -------------------------------------------------------


def _spec(source, **kw):
    spec = {
        "source": source,
        "filename": "<remote-cell-5>",
        "values": {},
        "modules": {},
        "args": [],
        "outputs": [],
        "target": None,
    }
    spec.update(kw)
    return spec


def test_run_cell_namespace_and_outputs():
    spec = _spec(
        "import json\nout = m.sqrt(v) + r + sum(lst)\njson.dumps(out)",
        values={"v": 16},
        modules={"m": "math"},
        args=[("r", None), ("lst", (2, "list"))],
        outputs=["out"],
    )
    assert runner.run_cell(spec, 0.0, 1, 2, 3)[1:] == ("10.0", 10.0)


def test_run_cell_notebook_functions_share_the_cell_namespace():
    import cloudpickle

    nb = {"__name__": "__main__", "factor": 2}
    exec("def scaled(v, *, k=1):\n    return v * factor * k\n", nb)
    values = cloudpickle.loads(cloudpickle.dumps({"scaled": nb["scaled"]}))
    assert "factor" not in values  # it travels with scaled
    spec = _spec(
        "before = scaled(1)\nfactor = 3\nscaled(1, k=2)", values=values, outputs=["before"]
    )
    assert runner.run_cell(spec)[1:] == (6, 2)


def test_run_cell_map_target_and_missing_output():
    assert runner.run_cell(_spec("i * 2", target="i"), 0.0, 21)[1:] == (42,)
    with pytest.raises(NameError, match="-o nope"):
        runner.run_cell(_spec("x = 1", outputs=["nope"]))


def test_run_cell_traceback_shows_cell_source():
    with pytest.raises(KeyError) as ei:
        runner.run_cell(_spec("d = {}\nd['missing']"))
    text = "".join(traceback.format_exception(ei.value))
    assert 'File "<remote-cell-5>", line 2' in text and "d['missing']" in text


# ---- shipping ----------------------------------------------------------------------------


def test_pack_sorts_values():
    import math

    ref = kit.ObjectRef(b"r" * 16)
    refs = [kit.ObjectRef(b"a" * 16), kit.ObjectRef(b"b" * 16)]
    hidden_fn = object()
    ns = {
        "math": math,
        "ref": ref,
        "refs": refs,
        "x": 3,
        "get_ipython": hidden_fn,
        "mixed": [ref, 1],
    }
    s = shipping.pack(
        {"math", "ref", "refs", "x", "get_ipython", "mixed", "print"},
        ns,
        hidden={"get_ipython": hidden_fn},
    )
    assert s.modules == {"math": "math"}
    assert s.values == {"x": 3, "mixed": [ref, 1]}
    assert s.layout == [("ref", None), ("refs", (2, "list"))]
    assert s.args == [ref] + refs
    assert sorted(s.names) == ["math", "mixed", "ref", "refs", "x"]


def test_pack_uses_cache_for_large_values():
    calls = []
    cache = shipping.PutCache(put=lambda v: calls.append(v) or f"ref{len(calls)}", threshold=1000)
    big, small = np.zeros(1000), np.zeros(10)
    s = shipping.pack({"big", "small"}, {"big": big, "small": small}, cache=cache)
    assert s.layout == [("big", None)] and s.args == ["ref1"] and list(s.values) == ["small"]
    shipping.pack({"big"}, {"big": big}, cache=cache)
    assert len(calls) == 1


def test_put_cache_reuse_change_prune():
    calls = []
    cache = shipping.PutCache(put=lambda v: calls.append(type(v)) or len(calls), threshold=100)
    arr = np.arange(100.0)
    assert cache.ref_for(arr) == cache.ref_for(arr) == 1
    arr[5] = -1  # changed in place: stored again
    assert cache.ref_for(arr) == 2 and len(cache) == 1
    lst = list(range(100))  # not weak-referenceable
    assert cache.ref_for(lst) == cache.ref_for(lst) == 3
    cache.prune({"arr": arr})
    assert len(cache) == 1
    del arr  # the weak reference drops the entry
    assert len(cache) == 0
    assert cache.ref_for(np.zeros(3)) is None  # small: not cached
    assert cache.puts == 3


def test_fingerprint_tracks_content():
    a = np.arange(10.0)
    assert shipping.fingerprint(a) == shipping.fingerprint(a.copy())
    assert shipping.fingerprint(a) != shipping.fingerprint(a.reshape(2, 5))
    strided = shipping.fingerprint(a[::2])
    a[2] = -1
    assert shipping.fingerprint(a[::2]) != strided
    assert shipping.fingerprint({"k": [1, 2]}) != shipping.fingerprint({"k": [1, 3]})


def test_unpicklable_names_the_value():
    assert shipping.unpicklable({"a": 1}) is None
    name, err = shipping.unpicklable({"a": 1, "lock": threading.Lock()})
    assert name == "lock" and "lock" in str(err)


# ---- rendering -----------------------------------------------------------------------------

NODES = [
    {
        "node_id": "aa11bb22cc33dd44",
        "tag": "n0",
        "alive": True,
        "resources": {"CPU": 2.0},
        "available": {"CPU": 0.0},
        "running": 2,
        "queued": 3,
        "done": 10,
        "failed": 1,
        "store_used": 5 * 2**20,
    },
    {
        "node_id": "ee55ff6677889900",
        "tag": "n1",
        "alive": False,
        "resources": {"CPU": 4.0},
        "available": {"CPU": 4.0},
        "running": 0,
        "queued": 0,
        "done": 0,
        "failed": 0,
        "store_used": 0,
    },
]


def test_nodes_text_and_html():
    text = render.nodes_text(NODES)
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["node", "alive", "CPU"]
    assert lines[1].split() == ["n0", "aa11bb22", "yes", "0/2", "2", "3", "10", "1", "5.0", "MiB"]
    assert "no" in lines[2].split()
    html = render.nodes_html(NODES)
    assert html.count("<tr>") == 3 and "<td>n1 ee55ff66</td>" in html


def test_clean_traceback_keeps_cell_and_library_frames_of_chained_errors():
    tb = (
        "Traceback (most recent call last):\n"
        '  File "/site/kit/worker.py", line 210, in _execute\n'
        "    value = fn(*args, **kwargs)\n"
        "            ^^^^^^^^^^^^^^^^^^^\n"
        '  File "/site/magics/runner.py", line 90, in run_cell\n'
        "    exec(code.body, ns)\n"
        '  File "<remote-cell-3>", line 4, in <module>\n'
        "    json.loads(s)\n"
        '  File "/usr/lib/json/__init__.py", line 346, in loads\n'
        "    return _default_decoder.decode(s)\n"
        "JSONDecodeError: bad\n"
        "\n"
        "During handling of the above exception, another exception occurred:\n"
        "\n"
        "Traceback (most recent call last):\n"
        '  File "/site/kit/worker.py", line 210, in _execute\n'
        "    value = fn(*args, **kwargs)\n"
        '  File "<remote-cell-3>", line 6, in <module>\n'
        '    raise ValueError("x")\n'
        "ValueError: x\n"
    )
    out = render.clean_traceback(tb)
    assert "worker.py" not in out and "runner.py" not in out and "^^^" not in out
    assert out.count("<remote-cell-3>") == 2 and "json/__init__.py" in out
    assert "During handling" in out and out.endswith("ValueError: x")


def test_remote_error_lines_name_node_and_item():
    lines = render.remote_error_lines("KeyError", "Traceback\nKeyError: 1", "n1 ab", 42, item=3)
    assert lines[1] == "KeyError raised remotely on node n1 ab (pid 42), --map item 3"


@pytest.mark.parametrize(
    "n, text", [(0, "0 B"), (1023, "1023 B"), (2**20, "1.0 MiB"), (5 * 2**40, "5.0 TiB")]
)
def test_human_bytes(n, text):
    assert render.human_bytes(n) == text


# ---- output plumbing -------------------------------------------------------------------


def test_prefix_lines():
    assert output.prefix_lines("x", "[0] ") == "[0] x"
    assert output.prefix_lines("a\nb", "[1] ") == "[1] a\n[1] b"


def test_merge_outputs_merges_runs_of_a_stream():
    outs = output.merge_outputs([], [("stdout", "a")])
    outs = output.merge_outputs(outs, [("stdout", "b"), ("stderr", "e"), ("stdout", "c")])
    assert [(o["name"], o["text"]) for o in outs] == [
        ("stdout", "a\nb\n"),
        ("stderr", "e\n"),
        ("stdout", "c\n"),
    ]


def test_queue_sink_prints_in_the_reading_thread(capsys):
    sink = output.QueueSink()
    assert sink.pump(0.01) is False
    t = threading.Thread(
        target=lambda: (sink.write("stdout", "one\ntwo"), sink.write("stderr", "err"), sink.done())
    )
    t.start()
    t.join(5)
    assert sink.pump(1.0) is True
    out = capsys.readouterr()
    assert out.out == "one\ntwo\n" and out.err == "err\n"


# ---- planning a cell --------------------------------------------------------------------


def test_plan_cell():
    p = cells.plan_cell(
        "print(i * k)\ntotal = i", 7, outputs=["total"], map_text="i in r", name="sq"
    )
    assert p.label == "sq" and p.filename == "<remote-cell-7>"
    assert p.free == {"print", "k"} and not p.has_last and p.map.iterable == "r"
    assert cells.plan_cell("x", 1).label == "remote-cell-1"


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(outputs=["a-b"]), "-o takes names"),
        (dict(outputs=["zz"]), "neither assigns nor reads"),
        (dict(map_text="nope"), "--map expects"),
    ],
)
def test_plan_cell_rejects(kw, match):
    with pytest.raises(cells.CellUsageError, match=match):
        cells.plan_cell("a = b", 1, **kw)


def test_resolve_node():
    nodes = [{"node_id": "aa11", "tag": "n0"}, {"node_id": "ab22", "tag": "n1"}]
    assert cells.resolve_node("aa11", nodes) == "aa11"
    assert cells.resolve_node("n1", nodes) == "ab22"
    assert cells.resolve_node("AB", nodes) == "ab22"
    with pytest.raises(cells.CellUsageError, match="no such node"):
        cells.resolve_node("a", nodes)
