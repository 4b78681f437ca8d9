"""FHIRPath for search-parameter expressions, compiled to plain Python getters.

http://hl7.org/fhir/R4/search.html#expression and http://hl7.org/fhirpath/N1/ (the subset that
R4 SearchParameter expressions use).

:func:`compile_path` parses an expression once and, using the R4 element model (which element has
which type, which are choice types ``value[x]``), turns it into a closure over lists of
:data:`Node` ``(fhir type, json value)``. Knowing the type of every value is what lets the
indexers tell an ``Identifier`` from a ``ContactPoint`` and ``valueQuantity`` from
``valueString``.

Compiled: paths ``A.b.c`` (the leading type name is a filter on the context; ``Resource`` and
``DomainResource`` match any resource), unions ``a | b``, ``[n]``, ``first()``, ``ofType(T)``,
``as(T)``, ``X as T``, ``X is T``, ``where(criteria)`` with ``=``, ``!=``, ``and``, ``or``,
``not()``, ``exists()``, ``empty()``, ``extension('url')``, ``%resource`` and
``where(resolve() is T)``. ``resolve()`` is not followed: a Reference passes ``is T`` when its
literal reference names type T (``Patient/1``, ``http://x/fhir/Patient/1``), or, with no literal
reference, when ``Reference.type`` is T or absent (an identifier-only reference of unknown type
is kept, so ``patient:identifier`` finds it).

Anything else falls back to ``fhirpathpy`` with its R4 model (:data:`Compiled.compiled` is then
False); both give the same answer on what they both support (tested).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any

from ehr.definitions import resource_types

__all__ = [
    "Compiled",
    "Node",
    "PRIMITIVES",
    "Unsupported",
    "compile_path",
    "element_types",
    "evaluate",
    "reference_type",
]

#: a value with its FHIR type name: ``("HumanName", {...})``, ``("date", "1974-12-25")``; a
#: backbone element's type is its path, ``("Observation.component", {...})``
Node = tuple[str, Any]
#: ``fn(focus, root)`` -> result; ``root`` is the resource node (for ``%resource``)
Fn = Callable[[list[Node], Node], list[Node]]

PRIMITIVES = frozenset(
    {"base64Binary", "boolean", "canonical", "code", "date", "dateTime", "decimal", "id",
     "instant", "integer", "markdown", "oid", "positiveInt", "string", "time", "unsignedInt",
     "uri", "url", "uuid", "xhtml"}
)  # fmt: skip
_SYSTEM_TYPES = {
    "System.String": "string",
    "System.Boolean": "boolean",
    "System.Integer": "integer",
    "System.Decimal": "decimal",
    "System.Date": "date",
    "System.DateTime": "dateTime",
    "System.Time": "time",
}
_ABSTRACT_ROOTS = ("Resource", "DomainResource")


class Unsupported(Exception):
    """The expression uses FHIRPath this compiler does not handle (the caller falls back)."""


# --------------------------------------------------------------------------- the R4 model


@cache
def _model() -> dict[str, Any]:
    from fhirpathpy.models import models

    return dict(models["r4"])


@cache
def _backbone_paths() -> frozenset[str]:
    m = _model()
    out: set[str] = set()
    for key in (*m["path2Type"], *m["choiceTypePaths"]):
        parts = key.split(".")
        for i in range(2, len(parts)):
            out.add(".".join(parts[:i]))
    return frozenset(out)


def type_name(suffix: str) -> str:
    """``DateTime`` / ``FHIR.dateTime`` / ``System.String`` -> ``dateTime`` / ``string``."""
    if suffix in _SYSTEM_TYPES:
        return _SYSTEM_TYPES[suffix]
    if suffix.startswith("FHIR."):
        suffix = suffix[5:]
    low = suffix[:1].lower() + suffix[1:]
    return low if low in PRIMITIVES else suffix


def _parent(t: str) -> str | None:
    parents: dict[str, str] = _model()["type2Parent"]
    if t in parents:
        return parents[t]
    if "." in t:  # a backbone element path
        return "BackboneElement"
    return None


def is_subtype(t: str, of: str) -> bool:
    """``Age`` is a ``Quantity``; every resource is a ``Resource``."""
    cur: str | None = t
    while cur is not None:
        if cur == of:
            return True
        cur = _parent(cur)
    return False


@lru_cache(maxsize=8192)
def element_types(t: str, name: str) -> tuple[tuple[str, str], ...]:
    """The JSON keys and types of element ``name`` on type ``t``: ``(("valueQuantity",
    "Quantity"), ("valueString", "string"), ...)``; empty when ``t`` has no such element."""
    m = _model()
    cur: str | None = t
    while cur is not None:
        path = f"{cur}.{name}"
        if path in m["path2Type"]:
            return ((name, type_name(m["path2Type"][path])),)
        if path in m["choiceTypePaths"]:
            return tuple((name + s, type_name(s)) for s in m["choiceTypePaths"][path])
        if path in m["pathsDefinedElsewhere"]:
            return ((name, m["pathsDefinedElsewhere"][path]),)
        if path in _backbone_paths():
            return ((name, path),)
        cur = _parent(cur)
    return ()


# --------------------------------------------------------------------------- tokens and AST

_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^'\\]|\\.)*')|(?P<num>\d+(?:\.\d+)?)|(?P<id>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<bq>`[^`]*`)|(?P<var>%[A-Za-z_][A-Za-z0-9_]*)|(?P<this>\$this)"
    r"|(?P<op>!=|<=|>=|[.|()\[\],=<>+\-*/&~]))"
)


def _tokenize(expr: str) -> list[tuple[str, str]]:
    pos, out = 0, []
    expr = expr.strip()
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if not m or m.end() == pos:
            raise Unsupported(f"cannot tokenize at {expr[pos:]!r}")
        kind = m.lastgroup or ""
        text = m.group(kind)
        if kind == "bq":
            kind, text = "id", text[1:-1]
        elif kind == "str":
            text = re.sub(r"\\(.)", r"\1", text[1:-1])
        out.append((kind, text))
        pos = m.end()
    return out


@dataclass(frozen=True)
class Ast:
    kind: str  # ident func index dot union eq and or typeop lit var this
    name: str = ""
    args: tuple[Ast, ...] = ()
    value: Any = None


class _Parser:
    """Recursive descent, FHIRPath precedence: ``.``/``[]`` > ``|`` > ``is``/``as`` > ``=``
    ``!=`` > ``and`` > ``or``."""

    def __init__(self, expr: str) -> None:
        self.toks = _tokenize(expr)
        self.i = 0

    def peek(self, text: str | None = None, kind: str | None = None) -> bool:
        if self.i >= len(self.toks):
            return False
        k, t = self.toks[self.i]
        return (text is None or t == text) and (kind is None or k == kind)

    def take(self, text: str | None = None, kind: str | None = None) -> str:
        if not self.peek(text, kind):
            got = self.toks[self.i] if self.i < len(self.toks) else "end"
            raise Unsupported(f"expected {text or kind}, got {got}")
        self.i += 1
        return self.toks[self.i - 1][1]

    def parse(self) -> Ast:
        node = self.or_()
        if self.i != len(self.toks):
            raise Unsupported(f"unexpected {self.toks[self.i]}")
        return node

    def or_(self) -> Ast:
        node = self.and_()
        while self.peek("or", "id"):
            self.i += 1
            node = Ast("or", args=(node, self.and_()))
        return node

    def and_(self) -> Ast:
        node = self.eq()
        while self.peek("and", "id"):
            self.i += 1
            node = Ast("and", args=(node, self.eq()))
        return node

    def eq(self) -> Ast:
        node = self.typeop()
        if self.peek("=", "op") or self.peek("!=", "op"):
            op = self.take()
            node = Ast("eq", name=op, args=(node, self.typeop()))
        return node

    def typeop(self) -> Ast:
        node = self.union()
        if self.peek("is", "id") or self.peek("as", "id"):
            op = self.take()
            node = Ast("typeop", name=op, args=(node,), value=self.type_spec())
        return node

    def type_spec(self) -> str:
        name = self.take(kind="id")
        while self.peek(".", "op"):
            self.i += 1
            name += "." + self.take(kind="id")
        return type_name(name)

    def union(self) -> Ast:
        node = self.postfix()
        while self.peek("|", "op"):
            self.i += 1
            node = Ast("union", args=(node, self.postfix()))
        return node

    def postfix(self) -> Ast:
        node = self.primary()
        while True:
            if self.peek(".", "op"):
                self.i += 1
                node = Ast("dot", args=(node, self.invocation()))
            elif self.peek("[", "op"):
                self.i += 1
                n = int(self.take(kind="num"))
                self.take("]")
                node = Ast("index", args=(node,), value=n)
            else:
                return node

    def primary(self) -> Ast:
        if self.peek("(", "op"):
            self.i += 1
            node = self.or_()
            self.take(")")
            return node
        if self.peek(kind="str"):
            return Ast("lit", value=("string", self.take()))
        if self.peek(kind="num"):
            text = self.take()
            return Ast(
                "lit", value=("decimal", float(text)) if "." in text else ("integer", int(text))
            )
        if self.peek("true", "id") or self.peek("false", "id"):
            return Ast("lit", value=("boolean", self.take() == "true"))
        if self.peek(kind="var"):
            return Ast("var", name=self.take()[1:])
        if self.peek(kind="this"):
            self.i += 1
            return Ast("this")
        return self.invocation()

    def invocation(self) -> Ast:
        name = self.take(kind="id")
        if not self.peek("(", "op"):
            return Ast("ident", name=name)
        self.i += 1
        args: list[Ast] = []
        if name in ("ofType", "as", "is"):
            args.append(Ast("lit", value=("type", self.type_spec())))
        elif not self.peek(")", "op"):
            args.append(self.or_())
            while self.peek(",", "op"):
                self.i += 1
                args.append(self.or_())
        self.take(")")
        return Ast("func", name=name, args=tuple(args))


# --------------------------------------------------------------------------- compiler

Types = frozenset[str]
_TRUE: list[Node] = [("boolean", True)]
_FALSE: list[Node] = [("boolean", False)]


def _empty(focus: list[Node], root: Node) -> list[Node]:
    return []


def _bool(b: bool) -> list[Node]:
    return _TRUE if b else _FALSE


def _truth(nodes: list[Node]) -> bool | None:
    """FHIRPath singleton evaluation of a criteria result: True, False or None (empty)."""
    if not nodes:
        return None
    if len(nodes) == 1 and nodes[0][0] == "boolean":
        return bool(nodes[0][1])
    return True  # a non-empty, non-boolean collection counts as true


_REF = re.compile(
    r"(?:^|/)(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$"
)


def reference_type(value: Any) -> str | None:
    """The resource type a Reference (or canonical/uri string) points at, if it says."""
    if isinstance(value, dict):
        literal = value.get("reference")
        if isinstance(literal, str):
            if literal.startswith("#"):
                return None
            m = _REF.search(literal.split("|")[0])
            return m["type"] if m else None
        t = value.get("type")
        return t if isinstance(t, str) else None
    if isinstance(value, str):
        m = _REF.search(value.split("|")[0])
        return m["type"] if m else None
    return None


def _resolve_is(target: str) -> Callable[[Node], bool]:
    def keep(node: Node) -> bool:
        value = node[1]
        if isinstance(value, dict) and not isinstance(value.get("reference"), str):
            t = value.get("type")
            return t is None or t == target  # identifier-only: keep unless typed otherwise
        return reference_type(value) == target

    return keep


class _Compiler:
    def __init__(self, root_type: str) -> None:
        self.root_type = root_type

    def compile(self, ast: Ast, types: Types) -> tuple[Fn, Types]:
        method = getattr(self, f"c_{ast.kind}")
        result: tuple[Fn, Types] = method(ast, types)
        return result

    # -- paths
    def c_ident(self, ast: Ast, types: Types) -> tuple[Fn, Types]:
        name = ast.name
        if name[:1].isupper() and (name in _ABSTRACT_ROOTS or name in resource_types()):
            keep = frozenset(t for t in types if is_subtype(t, name))
            if not keep:
                return _empty, frozenset()
            if keep == types:
                return (lambda focus, root: focus), keep
            return (lambda focus, root: [n for n in focus if n[0] in keep]), keep
        if name in ("extension", "id") and types & PRIMITIVES:
            # a primitive's extensions live in the sibling "_name" object, which a value node
            # does not carry: let fhirpathpy do it
            raise Unsupported(f"{name} of a primitive")
        table: dict[str, tuple[tuple[str, str], ...]] = {}
        for t in types:
            entries = element_types(t, name)
            if entries:
                table[t] = entries
        if not table:
            raise Unsupported(f"no element {name!r} on {sorted(types)}")
        out = frozenset(rt for entries in table.values() for _, rt in entries)
        if "Resource" in out:
            return self._resource_step(table), (out - {"Resource"}) | resource_types()
        if len(table) == 1 and len(next(iter(table.values()))) == 1:
            ((only_t, ((key, rt),)),) = table.items()

            def step1(focus: list[Node], root: Node) -> list[Node]:
                res: list[Node] = []
                for t, v in focus:
                    if t != only_t or not isinstance(v, dict):
                        continue
                    x = v.get(key)
                    if x is None:
                        continue
                    if isinstance(x, list):
                        res.extend((rt, y) for y in x if y is not None)
                    else:
                        res.append((rt, x))
                return res

            return step1, out

        def step(focus: list[Node], root: Node) -> list[Node]:
            res: list[Node] = []
            for t, v in focus:
                if not isinstance(v, dict):
                    continue
                for k, rt in table.get(t, ()):
                    x = v.get(k)
                    if x is None:
                        continue
                    if isinstance(x, list):
                        res.extend((rt, y) for y in x if y is not None)
                    else:
                        res.append((rt, x))
            return res

        return step, out

    @staticmethod
    def _resource_step(table: dict[str, tuple[tuple[str, str], ...]]) -> Fn:
        def step(focus: list[Node], root: Node) -> list[Node]:
            res: list[Node] = []
            for t, v in focus:
                if not isinstance(v, dict):
                    continue
                for k, rt in table.get(t, ()):
                    x = v.get(k)
                    for y in x if isinstance(x, list) else (x,):
                        if isinstance(y, dict) and rt == "Resource":
                            res.append((str(y.get("resourceType", "Resource")), y))
                        elif y is not None:
                            res.append((rt, y))
            return res

        return step

    def c_dot(self, ast: Ast, types: Types) -> tuple[Fn, Types]:
        f, t1 = self.compile(ast.args[0], types)
        if not t1:
            return _empty, frozenset()
        g, t2 = self.compile(ast.args[1], t1)
        if g is _empty or f is _empty:
            return _empty, frozenset()
        return (lambda focus, root: g(f(focus, root), root)), t2

    def c_index(self, ast: Ast, types: Types) -> tuple[Fn, Types]:
        f, t1 = self.compile(ast.args[0], types)
        n: int = ast.value
        return (lambda focus, root: f(focus, root)[n : n + 1]), t1

    def c_union(self, ast: Ast, types: Types) -> tuple[Fn, Types]:
        f, t1 = self.compile(ast.args[0], types)
        g, t2 = self.compile(ast.args[1], types)
        if f is _empty:
            return g, t2
        if g is _empty:
            return f, t1

        def union(focus: list[Node], root: Node) -> list[Node]:
            res: list[Node] = []
            seen: set[Any] = set()
            for n in (*f(focus, root), *g(focus, root)):
                key = (n[0], id(n[1])) if isinstance(n[1], dict | list) else n
                if key not in seen:
                    seen.add(key)
                    res.append(n)
            return res

        return union, t1 | t2

    def c_this(self, ast: Ast, types: Types) -> tuple[Fn, Types]:
        return (lambda focus, root: focus), types

    def c_var(self, ast: Ast, types: Types) -> tuple[Fn, Types]:
        if ast.name in ("resource", "rootResource", "context"):
            return (lambda focus, root: [root]), frozenset({self.root_type})
        raise Unsupported(f"variable %{ast.name}")

    def c_lit(self, ast: Ast, types: Types) -> tuple[Fn, Types]:
        const: list[Node] = [ast.value]
        return (lambda focus, root: const), frozenset({ast.value[0]})

    # -- operators
    def c_typeop(self, ast: Ast, types: Types) -> tuple[Fn, Types]:
        f, t1 = self.compile(ast.args[0], types)
        target: str = ast.value
        if ast.name == "as":
            return self._of_type(f, t1, target)
        return (lambda focus, root: self._is(f(focus, root), target)), frozenset({"boolean"})

    @staticmethod
    def _is(nodes: list[Node], target: str) -> list[Node]:
        if len(nodes) != 1:
            return []
        return _bool(is_subtype(nodes[0][0], target))

    @staticmethod
    def _of_type(f: Fn, types: Types, target: str) -> tuple[Fn, Types]:
        keep = frozenset(t for t in types if is_subtype(t, target))
        if not keep:
            return _empty, frozenset()
        return (lambda focus, root: [n for n in f(focus, root) if n[0] in keep]), keep

    def c_eq(self, ast: Ast, types: Types) -> tuple[Fn, Types]:
        f, _ = self.compile(ast.args[0], types)
        g, _ = self.compile(ast.args[1], types)
        negate = ast.name == "!="

        def eq(focus: list[Node], root: Node) -> list[Node]:
            a, b = f(focus, root), g(focus, root)
            if not a or not b:
                return []
            same = len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
            return _bool(same != negate)

        return eq, frozenset({"boolean"})

    def c_and(self, ast: Ast, types: Types) -> tuple[Fn, Types]:
        f, _ = self.compile(ast.args[0], types)
        g, _ = self.compile(ast.args[1], types)

        def and_(focus: list[Node], root: Node) -> list[Node]:
            a = _truth(f(focus, root))
            if a is False:
                return _FALSE
            b = _truth(g(focus, root))
            if b is False:
                return _FALSE
            return _TRUE if a and b else []

        return and_, frozenset({"boolean"})

    def c_or(self, ast: Ast, types: Types) -> tuple[Fn, Types]:
        f, _ = self.compile(ast.args[0], types)
        g, _ = self.compile(ast.args[1], types)

        def or_(focus: list[Node], root: Node) -> list[Node]:
            a = _truth(f(focus, root))
            if a is True:
                return _TRUE
            b = _truth(g(focus, root))
            if b is True:
                return _TRUE
            return _FALSE if a is False and b is False else []

        return or_, frozenset({"boolean"})

    # -- functions: a function call on the focus of its dot (``a.where(x)``)
    def c_func(self, ast: Ast, types: Types) -> tuple[Fn, Types]:
        name, args = ast.name, ast.args
        if name in ("ofType", "as"):
            return self._of_type(lambda focus, root: focus, types, args[0].value[1])
        if name == "is":
            target = args[0].value[1]
            return (lambda focus, root: self._is(focus, target)), frozenset({"boolean"})
        if name == "where" and len(args) == 1:
            return self._where(args[0], types), types
        if name == "exists":
            if args:
                w = self._where(args[0], types)
                return (lambda focus, root: _bool(bool(w(focus, root)))), frozenset({"boolean"})
            return (lambda focus, root: _bool(bool(focus))), frozenset({"boolean"})
        if name == "empty" and not args:
            return (lambda focus, root: _bool(not focus)), frozenset({"boolean"})
        if name == "not" and not args:

            def not_(focus: list[Node], root: Node) -> list[Node]:
                t = _truth(focus)
                return [] if t is None else _bool(not t)

            return not_, frozenset({"boolean"})
        if name == "first" and not args:
            return (lambda focus, root: focus[:1]), types
        if name == "extension" and len(args) == 1 and args[0].kind == "lit":
            url = args[0].value[1]
            ext, t1 = self.c_ident(Ast("ident", name="extension"), types)
            return (lambda focus, root: [n for n in ext(focus, root) if n[1].get("url") == url]), t1
        raise Unsupported(f"function {name}()")

    def _where(self, crit: Ast, types: Types) -> Fn:
        if (
            crit.kind == "typeop"
            and crit.name == "is"
            and crit.args[0].kind == "func"
            and crit.args[0].name == "resolve"
        ):
            keep = _resolve_is(crit.value)
            return lambda focus, root: [n for n in focus if keep(n)]
        if (
            crit.kind == "eq"
            and crit.name == "="
            and crit.args[0].kind == "ident"
            and crit.args[1].kind == "lit"
            and crit.args[1].value[0] == "string"
        ):  # the common where(system='phone') / where(type='depends-on'): direct key test
            key, lit = crit.args[0].name, crit.args[1].value[1]
            if all(
                len(e := element_types(t, key)) == 1 and e[0][0] == key and e[0][1] in PRIMITIVES
                for t in types
            ):
                return lambda focus, root: [n for n in focus if _key_is(n[1], key, lit)]
        c, _ = self.compile(crit, types)
        return lambda focus, root: [n for n in focus if _truth(c([n], root))]


def _key_is(value: Any, key: str, lit: str) -> bool:
    if not isinstance(value, dict):
        return False
    x = value.get(key)
    if isinstance(x, list):
        return len(x) == 1 and x[0] == lit
    return bool(x == lit)


def _equal(a: Node, b: Node) -> bool:
    x, y = a[1], b[1]
    if isinstance(x, bool) or isinstance(y, bool):
        return isinstance(x, bool) and isinstance(y, bool) and x == y
    return bool(x == y)


# --------------------------------------------------------------------------- fallback


def _fallback(expression: str, root_type: str) -> Fn:
    import fhirpathpy
    from fhirpathpy.engine.nodes import FP_Type, ResourceNode

    rewritten = re.sub(r"(?<![\w.])(?:Resource|DomainResource)\.", f"{root_type}.", expression)
    fn = fhirpathpy.compile(rewritten, _model(), {"returnRawData": True})

    def to_node(x: Any) -> Node | None:
        if isinstance(x, ResourceNode):
            data = x.data
            if isinstance(data, dict) and list(data) == ["extension"]:
                return None
            t = type_name(x.path) if x.path else _guess(data)
            return (t, data)
        if isinstance(x, FP_Type):
            return ("dateTime", str(x))
        return (_guess(x), x)

    def run(focus: list[Node], root: Node) -> list[Node]:
        out: list[Node] = []
        for t, v in focus:
            start: Any = v if v is root[1] else ResourceNode.create_node(v, t)
            for x in fn(start, {"resource": root[1], "rootResource": root[1]}):
                node = to_node(x)
                if node is not None and node[1] is not None:
                    out.append(node)
        return out

    return run


def _guess(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "decimal"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict) and "resourceType" in value:
        return str(value["resourceType"])
    return "Element"


# --------------------------------------------------------------------------- public


@dataclass(frozen=True)
class Compiled:
    """A compiled expression: ``getter(resource)`` -> nodes; ``on(nodes, root)`` for a
    sub-expression evaluated on other nodes (composite components)."""

    expression: str
    context_type: str
    fn: Fn
    compiled: bool  # False: evaluated by fhirpathpy
    types: frozenset[str] = frozenset()  # the types it can return, when compiled
    reason: str = ""

    def __call__(self, resource: dict[str, Any]) -> list[Node]:
        root: Node = (resource.get("resourceType", self.context_type), resource)
        return self.fn([root], root)

    def on(self, focus: list[Node], root: Node) -> list[Node]:
        return self.fn(focus, root)


@lru_cache(maxsize=16384)
def compile_path(expression: str, context_type: str, root_type: str | None = None) -> Compiled:
    """Compile ``expression`` for a focus of type ``context_type`` (a resource type, or a
    backbone path such as ``Observation.component`` for composite components) once; cached.
    ``root_type`` is the resource type ``%resource`` refers to (default: ``context_type``)."""
    root = root_type or context_type
    try:
        ast = _Parser(expression).parse()
        fn, types = _Compiler(root).compile(ast, frozenset({context_type}))
        return Compiled(expression, context_type, fn, True, types)
    except Unsupported as exc:
        fallback = _fallback(expression, root)
        return Compiled(expression, context_type, fallback, False, reason=str(exc))


def evaluate(resource: dict[str, Any], expression: str) -> list[Node]:
    """Evaluate ``expression`` on ``resource`` (compiled and cached)."""
    return compile_path(expression, resource["resourceType"])(resource)
