"""What a cell reads, what it binds, and how it is compiled: pure functions on source text.

``%%remote`` ships the names a cell reads but does not bind first (its free
names), brings back names it assigns, and returns the value of its last
expression. Everything here works on source text and ``ast`` trees only: no
IPython, no kit, no namespace.

    source ──ast──▶ free_names()     names to ship from the notebook
           └──────▶ assigned_names() names the cell binds at its top level
           └──────▶ compile_cell()   (body code, last-expression code or None)
    "i in range(8)" ──▶ parse_map()  (target source, target names, iterable source)

Free-name rules, as Python evaluates a cell at module level: statements run in
order, so ``x = x + 1`` reads ``x`` first (free) and ``x = 1; print(x)`` does
not; a name is bound after a compound statement only if every path binds it
(both arms of an ``if``, a ``with`` body; not a loop body, which may not run);
function bodies, lambdas, comprehensions and classes are scopes of their own,
whose reads of outer names count where the ``def`` (or expression) stands;
``global``/``nonlocal`` declarations send a name past a function's locals.
When unsure, a name counts as free: shipping a name too many costs a pickle,
one too few costs a ``NameError``.
"""

from __future__ import annotations

import ast
import io
import tokenize
from dataclasses import dataclass
from types import CodeType

__all__ = [
    "free_names",
    "assigned_names",
    "compile_cell",
    "CellCode",
    "parse_map",
    "MapSpec",
    "ends_with_semicolon",
]

_SCOPES = (
    ast.FunctionDef,
    ast.AsyncFunctionDef,
    ast.Lambda,
    ast.ClassDef,
    ast.ListComp,
    ast.SetComp,
    ast.DictComp,
    ast.GeneratorExp,
)
_COMPS = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


def _parse(source_or_tree, filename="<cell>"):
    if isinstance(source_or_tree, ast.AST):
        return source_or_tree
    return ast.parse(source_or_tree, filename)


# ---- bindings and reads inside one scope ---------------------------------------------


def _target_names(target) -> set:
    """Names bound by an assignment target (``a``, ``a, *b``, but not ``a.x`` or ``a[0]``)."""
    if isinstance(target, ast.Name):
        return {target.id}
    if isinstance(target, (ast.Tuple, ast.List)):
        out = set()
        for elt in target.elts:
            out |= _target_names(elt)
        return out
    if isinstance(target, ast.Starred):
        return _target_names(target.value)
    return set()


def _bindings(nodes) -> set:
    """Every name the code in ``nodes`` binds in its own scope (on any path)."""
    out = set()
    stack = list(nodes)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(node.name)
            stack.extend(node.decorator_list)
            if not isinstance(node, ast.ClassDef):
                stack.extend(_arg_defaults(node.args))
            else:
                stack.extend(node.bases)
                stack.extend(k.value for k in node.keywords)
            continue
        if isinstance(node, ast.Lambda):
            stack.extend(_arg_defaults(node.args))
            continue
        if isinstance(node, _COMPS):
            # Only a walrus inside a comprehension binds in the enclosing scope.
            stack.append(node.generators[0].iter)
            for sub in ast.walk(node):
                if isinstance(sub, ast.NamedExpr) and isinstance(sub.target, ast.Name):
                    out.add(sub.target.id)
            continue
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            out.add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                if alias.name != "*":
                    out.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, ast.ExceptHandler) and node.name:
            out.add(node.name)
        elif isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name:
            out.add(node.name)
        elif isinstance(node, ast.MatchMapping) and node.rest:
            out.add(node.rest)
        stack.extend(ast.iter_child_nodes(node))
    return out


def _arg_defaults(args: ast.arguments):
    """The parts of a signature evaluated where the ``def`` stands."""
    out = list(args.defaults) + [d for d in args.kw_defaults if d is not None]
    for a in args.posonlyargs + args.args + args.kwonlyargs + [args.vararg, args.kwarg]:
        if a is not None and a.annotation is not None:
            out.append(a.annotation)
    return out


def _params(args: ast.arguments) -> set:
    names = {a.arg for a in args.posonlyargs + args.args + args.kwonlyargs}
    for a in (args.vararg, args.kwarg):
        if a is not None:
            names.add(a.arg)
    return names


def _reads(nodes) -> set:
    """Names read by ``nodes`` in their own scope, plus the free names of nested scopes."""
    out = set()
    stack = list(nodes)
    while stack:
        node = stack.pop()
        if isinstance(node, _SCOPES):
            out |= _outer_reads(node)
            continue
        if isinstance(node, ast.Name):
            if isinstance(node.ctx, (ast.Load, ast.Del)):
                out.add(node.id)
        elif isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):
            out.add(node.target.id)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            continue
        stack.extend(ast.iter_child_nodes(node))
    return out


def _outer_reads(node) -> set:
    """What a nested scope (def, lambda, class, comprehension) reads from outside itself.

    Includes the parts evaluated in the enclosing scope (decorators, defaults,
    annotations, base classes, a comprehension's first iterable).
    """
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
        here = _reads(_arg_defaults(node.args))
        body = node.body if isinstance(node.body, list) else [node.body]
        if not isinstance(node, ast.Lambda):
            here |= _reads(node.decorator_list)
            if node.returns is not None:
                here |= _reads([node.returns])
        declared_global, declared_nonlocal = _declarations(body)
        local = (_params(node.args) | _bindings(body)) - declared_global - declared_nonlocal
        return here | (_reads(body) - local) | declared_nonlocal
    if isinstance(node, ast.ClassDef):
        here = _reads(node.decorator_list + node.bases + [k.value for k in node.keywords])
        direct, nested = set(), set()
        for stmt in node.body:
            if isinstance(stmt, _SCOPES):
                nested |= _outer_reads(stmt)  # methods skip the class scope
            else:
                direct |= _reads([stmt])
        return (
            here
            | (direct - _bindings([s for s in node.body if not isinstance(s, _SCOPES)]))
            | nested
        )
    # A comprehension: the first iterable is evaluated outside, the rest inside.
    gens = node.generators
    local = set()
    for g in gens:
        local |= _target_names(g.target)
    inner = [g.iter for g in gens[1:]] + [cond for g in gens for cond in g.ifs]
    inner += [node.key, node.value] if isinstance(node, ast.DictComp) else [node.elt]
    return _reads([gens[0].iter]) | (_reads(inner) - local)


def _declarations(body):
    """Names declared ``global`` and ``nonlocal`` directly in a function body."""
    glob, nonloc = set(), set()
    stack = list(body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Global):
            glob.update(node.names)
        elif isinstance(node, ast.Nonlocal):
            nonloc.update(node.names)
        elif not isinstance(node, _SCOPES):
            stack.extend(ast.iter_child_nodes(node))
    return glob, nonloc


# ---- the cell's own scope, statement by statement -------------------------------------


class _Cell:
    """Walks a cell's top-level statements in order, tracking definitely bound names."""

    def __init__(self):
        self.free: set = set()

    def read(self, names, bound):
        self.free |= set(names) - bound

    def block(self, stmts, bound: set) -> set:
        for stmt in stmts:
            bound = self.stmt(stmt, bound)
        return bound

    def stmt(self, node, bound: set) -> set:
        """Record what ``node`` reads while ``bound`` is bound; the names bound after it."""
        compound = self._COMPOUND.get(type(node).__name__)
        if compound is not None:
            return compound(self, node, bound)
        if isinstance(node, ast.Delete):
            self.read(_reads([node]), bound)
            return bound - _bindings([node])
        if isinstance(node, ast.AnnAssign):
            self.read(_reads([node]), bound)
            if node.value is None:
                return bound
            return bound | _target_names(node.target)
        # Simple statements, function and class definitions: reads, then bindings.
        self.read(_reads([node]), bound)
        return bound | _bindings([node])

    def _if(self, node, bound: set) -> set:
        self.read(_reads([node.test]), bound)
        bound = bound | _walrus([node.test])
        return self.block(node.body, set(bound)) & self.block(node.orelse, set(bound))

    def _for(self, node, bound: set) -> set:
        self.read(_reads([node.iter]), bound)
        self.block(node.body, bound | _target_names(node.target))
        self.block(node.orelse, set(bound))
        return bound

    def _while(self, node, bound: set) -> set:
        self.read(_reads([node.test]), bound)
        self.block(node.body, set(bound))
        self.block(node.orelse, set(bound))
        return bound

    def _with(self, node, bound: set) -> set:
        for item in node.items:
            self.read(_reads([item.context_expr]), bound)
            if item.optional_vars is not None:
                self.read(_reads([item.optional_vars]), bound)
                bound = bound | _target_names(item.optional_vars)
        return self.block(node.body, set(bound))

    def _try(self, node, bound: set) -> set:
        after = self.block(node.orelse, self.block(node.body, set(bound)))
        for h in node.handlers:
            if h.type is not None:
                self.read(_reads([h.type]), bound)
            after &= self.block(h.body, bound | ({h.name} if h.name else set()))
        return self.block(node.finalbody, after)

    def _match(self, node, bound: set) -> set:
        self.read(_reads([node.subject]), bound)
        for case in node.cases:
            inner = bound | _bindings([case.pattern])
            self.read(_reads([case.pattern]), bound)
            if case.guard is not None:
                self.read(_reads([case.guard]), inner)
            self.block(case.body, inner)
        return bound

    # Statements with bodies, by class name (ast.Match and ast.TryStar are newer).
    _COMPOUND = {
        "If": _if,
        "For": _for,
        "AsyncFor": _for,
        "While": _while,
        "With": _with,
        "AsyncWith": _with,
        "Try": _try,
        "TryStar": _try,
        "Match": _match,
    }


def _walrus(nodes) -> set:
    return {
        n.target.id
        for node in nodes
        for n in ast.walk(node)
        if isinstance(n, ast.NamedExpr) and isinstance(n.target, ast.Name)
    }


def free_names(source, bound=()) -> set:
    """Names a cell reads before (or without) binding them: the ones to ship.

    Builtins are included (``print``); the caller ships only names its
    namespace has.

    Args:
        source: the cell's source text, or an ``ast.Module`` of it.
        bound: names already bound when the cell starts (a ``--map`` variable).

    Returns:
        A set of names.

    Raises:
        SyntaxError: the source does not parse.

    Example:
        >>> sorted(free_names("y = x + 1\\nz = y * scale"))
        ['scale', 'x']
        >>> sorted(free_names("import numpy as np\\nnp.sum([n for n in data])"))
        ['data']
    """
    tree = _parse(source)
    cell = _Cell()
    cell.block(tree.body, set(bound))
    return cell.free


def assigned_names(source) -> set:
    """Names the cell binds at its top level, on any path (candidates for ``-o``).

    Example:
        >>> sorted(assigned_names("import os\\nfor i in range(3):\\n    total = i\\ndef f(): pass"))
        ['f', 'i', 'os', 'total']
    """
    return _bindings(_parse(source).body)


# ---- compiling ----------------------------------------------------------------------


@dataclass
class CellCode:
    """A compiled cell: ``body`` runs with ``exec``, then ``last`` (if any) with ``eval``.

    Both code objects carry the cell's filename and its own line numbers.
    """

    body: CodeType
    last: CodeType | None
    filename: str


def ends_with_semicolon(source: str) -> bool:
    """True if the last token (ignoring comments) is ``;``: IPython's "no output" mark.

    Example:
        >>> ends_with_semicolon("x + 1;  # quiet")
        True
        >>> ends_with_semicolon("x + 1")
        False
    """
    last = None
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type not in (
                tokenize.COMMENT,
                tokenize.NL,
                tokenize.NEWLINE,
                tokenize.INDENT,
                tokenize.DEDENT,
                tokenize.ENDMARKER,
            ):
                last = tok
    except (tokenize.TokenError, SyntaxError):
        return False
    return last is not None and last.type == tokenize.OP and last.string == ";"


def split_last_expr(tree: ast.Module, source: str = ""):
    """Split a module into (statements, last expression or None), as IPython does.

    The last statement counts as the cell's value only if it is an expression
    and the cell does not end with ``;``.

    Example:
        >>> body, last = split_last_expr(ast.parse("x = 1\\nx + 1"))
        >>> len(body.body), ast.unparse(last)
        (1, 'x + 1')
    """
    stmts = list(tree.body)
    last = None
    if stmts and isinstance(stmts[-1], ast.Expr) and not ends_with_semicolon(source):
        expr = stmts.pop()
        assert isinstance(expr, ast.Expr)
        last = ast.Expression(expr.value)
    return ast.Module(body=stmts, type_ignores=[]), last


def compile_cell(source: str, filename: str, first_line: int = 1) -> CellCode:
    """Compile a cell so tracebacks show ``filename`` and the cell's own line numbers.

    Args:
        source: the cell's text (without the ``%%remote`` line).
        filename: e.g. ``"<remote-cell-7>"``.
        first_line: the line number of the source's first line in the cell as the
            user sees it: 2 for a ``%%remote`` body (the magic is line 1).

    Raises:
        SyntaxError: with the cell's line number.

    Example:
        >>> code = compile_cell("a = 2\\na * 21", "<remote-cell-1>")
        >>> ns = {}
        >>> exec(code.body, ns); eval(code.last, ns)
        42
    """
    tree = ast.parse("\n" * (first_line - 1) + source, filename)
    body, last = split_last_expr(tree, source)
    return CellCode(
        compile(body, filename, "exec"),
        compile(last, filename, "eval") if last is not None else None,
        filename,
    )


# ---- --map "VAR in EXPR" ---------------------------------------------------------------


@dataclass
class MapSpec:
    """A parsed ``--map`` option: bind ``target`` to each item of ``iterable``."""

    target: str  # source of the loop target, e.g. "i" or "x, y"
    names: frozenset  # the names the target binds
    iterable: str  # source of the expression that gives the items


def parse_map(text: str) -> MapSpec:
    """Parse ``--map "VAR in EXPR"`` (the header of a ``for`` loop).

    Raises:
        ValueError: the text is not ``TARGET in EXPR``, with what to write instead.

    Example:
        >>> m = parse_map("i in range(8)")
        >>> m.target, sorted(m.names), m.iterable
        ('i', ['i'], 'range(8)')
        >>> parse_map("x, y in zip(a, b)").target
        '(x, y)'
    """
    try:
        loop = ast.parse(f"for {text}:\n    pass\n").body[0]
    except SyntaxError:
        loop = None
    if not isinstance(loop, ast.For) or not _simple_target(loop.target):
        raise ValueError(
            f"--map expects 'NAME in EXPRESSION' (like a for loop header), "
            f'e.g. --map "i in range(8)"; got {text!r}'
        )
    return MapSpec(
        ast.unparse(loop.target), frozenset(_target_names(loop.target)), ast.unparse(loop.iter)
    )


def _simple_target(t) -> bool:
    if isinstance(t, ast.Name):
        return True
    if isinstance(t, ast.Starred):
        return _simple_target(t.value)
    if isinstance(t, (ast.Tuple, ast.List)):
        return bool(t.elts) and all(_simple_target(e) for e in t.elts)
    return False


def bind_target(target: str, item, namespace: dict) -> None:
    """Assign ``item`` to a ``--map`` target (``i`` or ``x, y``) in ``namespace``.

    Example:
        >>> ns = {}
        >>> bind_target("x, y", (1, 2), ns)
        >>> ns["x"], ns["y"]
        (1, 2)
    """
    tree = ast.parse(f"{target} = __kit_item__")
    had_builtins = "__builtins__" in namespace
    namespace["__kit_item__"] = item
    try:
        exec(compile(tree, "<map-target>", "exec"), namespace)
    finally:
        namespace.pop("__kit_item__", None)
        if not had_builtins:
            namespace.pop("__builtins__", None)
