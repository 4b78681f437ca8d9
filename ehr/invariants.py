"""The invariants (constraints) and cardinalities of the R4 definitions, for ``$validate``
(http://hl7.org/fhir/R4/validation.html, http://hl7.org/fhir/R4/conformance-rules.html#constraints).

The generated table ``definitions/data/invariants.json`` (see
:mod:`ehr.definitions.gen_invariants`) gives, for each resource, data type and backbone element,
its constraints and its elements. :func:`check_resource` walks a resource's JSON with it and, at
every occurrence of an element that carries constraints (the resource itself, each
``Patient.contact``, each Quantity, Period, Reference, Extension ... anywhere, including inside
contained and bundled resources), evaluates each constraint's FHIRPath with the occurrence as the
context, ``%resource`` the resource it belongs to and ``%rootResource`` its container
(http://hl7.org/fhir/R4/fhirpath.html#variables). A constraint fails when its expression gives
``false``; an empty result passes (as when an element the test needs is absent).

The same walk checks cardinalities: every missing ``min >= 1`` element (``fhir.resources``, in
:mod:`ehr.validation`, reports only the first kind of problem it meets, and has no model for some
R4-only types), arrays exactly where ``max`` is ``*``, one type per choice element.

Every failure is an :class:`~ehr.errors.Issue` with the constraint's severity, code
``invariant`` (``required`` / ``structure`` for cardinality), ``"<key>: <human>"`` as its
diagnostics and the occurrence's location (``Patient.contact[0]``; choice elements are named by
their JSON key, ``Observation.valueQuantity``, as :mod:`ehr.validation` does). A constraint that
fails to evaluate on odd data gives a ``warning`` (code ``processing``), never an exception.

Evaluation. Expressions are parsed once (cached). The boolean operators at the top of an
expression (``or``, ``and``, ``implies``, ``xor``) are evaluated here, with FHIRPath's
three-valued logic and short-circuits, and so are the operands of the common forms, directly on
the JSON and led by the element table (choice types, nested resources): ``path.exists()`` /
``empty()`` / ``hasValue()`` / ``startsWith('x')`` with ``.not()``s, ``path.where(criteria)``
and ``exists(criteria)`` of such forms, ``path = 'literal'`` (or ``%ucum``), ``path in ('a' |
'b')``, ``a.exists() != b.exists()``, ``start <= end`` on date/times of one precision and zone,
``low <= high`` on Quantities of one unit (which fhirpathpy cannot compare) and ``period >= 0``.
Everything else, and data those forms do not handle (a primitive with only extensions, other
precisions), goes to ``fhirpathpy`` with its R4 model; an operand whose leading path selects
nothing (``contained.where(...)``, the usual case) is answered from its value on empty input.
``tests/test_validate_operation.py`` checks that both evaluations agree. fhirpathpy is given
``hasValue()``, which it lacks, and R4's ``as(T)`` function on collections (dom-3) as
``ofType(T)``; constraints using a function it does not have (``resolve()``) are skipped:
:func:`unsupported_constraints` lists them. fhirpathpy keeps per-evaluation state in module
globals, so its calls hold a lock.

About 40 µs for a typical Observation, 50-100 µs for a Patient or Encounter: far more than the
ordinary write path spends, so only ``$validate`` runs it.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from ehr.definitions import load_table
from ehr.errors import Issue

__all__ = ["Constraint", "check_resource", "constraints_of", "unsupported_constraints"]


@dataclass(frozen=True, slots=True)
class Constraint:
    """One ElementDefinition.constraint."""

    key: str
    severity: str  # error | warning
    human: str
    expression: str
    path: str  # the element it sits on: "Patient.contact", "Quantity"


# --------------------------------------------------------------------------- the element table


@dataclass(slots=True)
class _Element:
    child: _Node | None  # the node of a complex type; None for a primitive or a resource
    resource: bool  # any resource, dispatched on resourceType
    many: bool
    fp: str  # the type name fhirpathpy knows the value by
    inv: tuple[_Rule, ...] = ()
    choice: str | None = None  # "value" for valueQuantity, valueString ...


@dataclass(slots=True)
class _Node:
    name: str
    fp: str
    inv: tuple[_Rule, ...] = ()
    elements: dict[str, _Element] = field(default_factory=dict)
    required: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (display name, JSON keys)
    members: dict[str, tuple[tuple[str, _Element], ...]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Rule:
    constraint: Constraint
    run: _Runner | None  # None: not evaluable
    reason: str = ""


@dataclass(frozen=True, slots=True)
class _Model:
    nodes: dict[str, _Node]
    rules: tuple[_Rule, ...]


@cache
def _model() -> _Model:
    table = load_table("invariants.json")
    rules = []
    for c in table["constraints"]:
        constraint = Constraint(c["key"], c["severity"], c["human"], c["expression"], c["path"])
        run, reason = _compile(constraint.expression)
        rules.append(_Rule(constraint, run, reason))
    raw: dict[str, dict[str, Any]] = table["nodes"]
    nodes = {name: _Node(name, spec["fp"]) for name, spec in raw.items()}

    def chain(name: str) -> list[dict[str, Any]]:
        out = []
        cur: str | None = name
        while cur is not None:
            out.append(raw[cur])
            cur = raw[cur].get("base")
        return out[::-1]  # base first

    for name, node in nodes.items():
        inv: list[_Rule] = []
        elements: dict[str, _Element] = {}
        members: dict[str, list[tuple[str, _Element]]] = {}
        required: dict[tuple[str, ...], None] = {}
        for spec in chain(name):
            inv += [rules[i] for i in spec.get("inv", ())]
            for key, e in spec.get("e", {}).items():
                t = e.get("t")
                child = nodes[t] if t and t != "*" else None
                fp = child.fp if child is not None else e.get("p", "Resource")
                element = _Element(
                    child,
                    t == "*",
                    bool(e.get("m")),
                    fp,
                    tuple(rules[i] for i in e.get("i", ())),
                    e.get("x"),
                )
                elements[key] = element
                members.setdefault(e.get("x", key), []).append((key, element))
            for keys in spec.get("req", ()):
                required[tuple(keys)] = None
        node.inv = tuple(inv)
        node.elements = elements
        node.members = {m: tuple(v) for m, v in members.items()}
        node.required = tuple((_display(keys), keys) for keys in required)
    return _Model(nodes, tuple(rules))


def _display(keys: tuple[str, ...]) -> str:
    if len(keys) == 1:
        return keys[0]
    stem = keys[0]
    for k in keys[1:]:
        while not k.startswith(stem):
            stem = stem[:-1]
    return stem + "[x]"


def unsupported_constraints() -> list[tuple[Constraint, str]]:
    """The constraints that are never evaluated, each with the reason."""
    return [(r.constraint, r.reason) for r in _model().rules if r.run is None]


def constraints_of(name: str) -> list[Constraint]:
    """The constraints checked on every occurrence of a type or backbone element (with those
    of its bases): ``constraints_of("Patient")``, ``constraints_of("Period")``."""
    node = _model().nodes.get(name)
    return [r.constraint for r in node.inv] if node is not None else []


# --------------------------------------------------------------------------- evaluation


class _Focus:
    """The context of one evaluation: a value, its node (None for a primitive) and type."""

    __slots__ = ("value", "node", "fp", "resource", "root", "_fp_node", "_env")

    def __init__(
        self,
        value: Any,
        node: _Node | None,
        fp: str,
        resource: dict[str, Any],
        root: dict[str, Any],
    ) -> None:
        self.value = value
        self.node = node
        self.fp = fp
        self.resource = resource
        self.root = root
        self._fp_node: Any = None
        self._env: dict[str, Any] | None = None

    def fhirpathpy_args(self) -> tuple[Any, dict[str, Any]]:
        if self._env is None:
            from fhirpathpy.engine.nodes import ResourceNode

            value = self.value
            self._fp_node = (
                value if value is self.resource else ResourceNode.create_node(value, self.fp)
            )
            self._env = {
                "resource": ResourceNode.create_node(self.resource),
                "rootResource": ResourceNode.create_node(self.root),
            }
        return self._fp_node, self._env


_Runner = Callable[[_Focus], "bool | None"]  # FHIRPath boolean: True, False or None (empty)

_LOCK = threading.Lock()  # fhirpathpy keeps per-evaluation state in module globals


def _has_value(inputs: list[Any]) -> bool:
    """FHIRPath ``hasValue()``: a single primitive that has a value (not only extensions)."""
    return len(inputs) == 1 and inputs[0] is not None and not isinstance(inputs[0], dict | list)


_USER_FUNCTIONS = {"hasValue": {"fn": _has_value}}
_OPTIONS: dict[str, Any] = {
    "userInvocationTable": _USER_FUNCTIONS,
    "traceFn": lambda label, value: None,  # trace() in ref-1 and dom-3: print nothing
}


def _functions(ast: Any, out: set[str]) -> set[str]:
    if isinstance(ast, dict):
        if ast.get("type") == "Functn":
            out.add(str(ast["children"][0].get("text", "")))
        for child in ast.get("children") or ():
            _functions(child, out)
    return out


@cache
def _compile(expression: str, direct: bool = True) -> tuple[_Runner | None, str]:
    """(evaluator, "") or (None, why it cannot be evaluated). ``direct=False`` sends every
    operand to fhirpathpy (to compare the two)."""
    from fhirpathpy.engine.invocations import invocation_registry

    from ehr.patch._locate import PathSyntaxError, compile_path

    try:
        # R4 constraints (dom-3) call the function as() on collections, meaning ofType();
        # fhirpathpy, like FHIRPath N1, refuses as() on more than one item
        ast = compile_path(_AS_FUNCTION.sub(".ofType(", expression))
    except PathSyntaxError as exc:
        return None, f"syntax: {exc}"
    missing = _functions(ast, set()) - set(invocation_registry) - set(_USER_FUNCTIONS)
    if missing:
        return None, "fhirpathpy lacks " + ", ".join(f"{m}()" for m in sorted(missing))
    return _plan(ast["children"][0], direct, top=True), ""


_AS_FUNCTION = re.compile(r"\.as\(")


def _unparen(node: dict[str, Any]) -> dict[str, Any]:
    while (
        node.get("type") == "TermExpression"
        and node["children"][0].get("type") == "ParenthesizedTerm"
    ):
        node = node["children"][0]["children"][0]
    return node


_OPERATORS = {"OrExpression", "AndExpression", "ImpliesExpression"}


def _plan(node: dict[str, Any], direct: bool, *, top: bool = False) -> _Runner:
    """The boolean operators at the top of an expression, with short-circuits
    (``reference.startsWith('#').not() or ...`` stops at its first operand for most
    references)."""
    node = _unparen(node)
    if node.get("type") not in _OPERATORS:
        slow = _fhirpathpy_operand(node, top)
        fast = _direct_operand(node, slow) if direct else None
        return fast or slow
    op = node["terminalNodeText"][0]
    return _logic(op, _plan(node["children"][0], direct), _plan(node["children"][1], direct))


def _fhirpathpy_operand(node: dict[str, Any], top: bool) -> _Runner:
    from fhirpathpy import apply_parsed_path
    from fhirpathpy.models import models

    model = models["r4"]
    ast = {"children": [node]}

    def run(f: _Focus) -> bool | None:
        focus, env = f.fhirpathpy_args()
        with _LOCK:
            result = apply_parsed_path(focus, ast, env, model, _OPTIONS)
        if not isinstance(result, list):
            result = [result]
        if not result:
            return None
        if len(result) == 1 and isinstance(result[0], bool):
            return result[0]
        for item in result:
            if isinstance(item, dict) and item.get("$status") == "error":
                raise ValueError(str(item.get("$error", "evaluation failed")))
        if top:
            return True  # a non-boolean result does not say false
        raise TypeError(f"a boolean operand is expected, got {_short(result)}")

    return run


# -- operands evaluated on the JSON ---------------------------------------------------------------
#
# A direct operand answers on the JSON, led by the element table, what fhirpathpy would answer; on
# data it does not handle (a primitive context, a primitive with only extensions, values of an
# unexpected kind) it raises _Slow and the operand goes to fhirpathpy.

_Item = tuple["_Node | None", Any]  # (node of a complex value or None, the value)
_Path = Callable[[_Focus], list[_Item]]


class _Slow(Exception):
    """Only fhirpathpy can answer for this data."""


_UCUM = "http://unitsofmeasure.org"
_OPAQUE_MEMBERS = frozenset({"extension", "id", "url"})  # on a primitive: its _twin, not here


def _logic(op: str, left: _Runner, right: _Runner) -> _Runner:
    """FHIRPath's three-valued ``or`` / ``and`` / ``implies`` / ``xor``, with short-circuits."""
    if op == "or":

        def run_or(f: _Focus) -> bool | None:
            a = left(f)
            if a is True:
                return True
            b = right(f)
            if b is True:
                return True
            return False if a is False and b is False else None

        return run_or
    if op == "and":

        def run_and(f: _Focus) -> bool | None:
            a = left(f)
            if a is False:
                return False
            b = right(f)
            if b is False:
                return False
            return True if a is True and b is True else None

        return run_and
    if op == "implies":

        def run_implies(f: _Focus) -> bool | None:
            a = left(f)
            if a is False:
                return True
            b = right(f)
            if b is True:
                return True
            return b if a is True else None

        return run_implies

    def run_xor(f: _Focus) -> bool | None:
        a, b = left(f), right(f)
        return None if a is None or b is None else a != b

    return run_xor


def _member_name(node: dict[str, Any]) -> str | None:
    if node.get("type") != "MemberInvocation":
        return None
    ident = node["children"][0]
    return str(ident["text"]).strip("`") if ident.get("type") == "Identifier" else None


def _chain(node: dict[str, Any]) -> list[tuple[str, str, Any]] | None:
    """``a.b.where(x).exists().not()`` -> [("m","a",None), ("m","b",None), ("f","where",Functn),
    ("f","exists",Functn), ("f","not",Functn)]; None unless it starts with a member name."""
    out: list[tuple[str, str, Any]] = []
    while node.get("type") == "InvocationExpression":
        head, last = node["children"]
        if last.get("type") == "FunctionInvocation":
            functn = last["children"][0]
            out.append(("f", str(functn["children"][0]["text"]), functn))
        else:
            name = _member_name(last)
            if name is None:
                return None
            out.append(("m", name, None))
        node = head
    if node.get("type") != "TermExpression":
        return None
    term = node["children"][0]
    if term.get("type") != "InvocationTerm":
        return None
    name = _member_name(term["children"][0])
    if name is None:
        return None
    out.append(("m", name, None))
    return out[::-1]


def _arguments(functn: dict[str, Any]) -> list[dict[str, Any]]:
    children = functn["children"]
    return list(children[1]["children"]) if len(children) == 2 else []


def _literal(node: dict[str, Any]) -> tuple[Any] | None:
    """``('text',)`` / ``(3,)`` / ``(True,)`` for a literal or ``%ucum``; None otherwise."""
    node = _unparen(node)
    if node.get("type") != "TermExpression":
        return None
    term = node["children"][0]
    if term.get("type") == "ExternalConstantTerm":
        name = term["children"][0]["children"][0].get("text")
        return (_UCUM,) if name == "ucum" else None
    if term.get("type") != "LiteralTerm":
        return None
    lit = term["children"][0]
    text = lit.get("text")
    if not isinstance(text, str):
        return None
    kind = lit.get("type")
    if kind == "StringLiteral" and "\\" not in text and len(text) >= 2:
        return (text[1:-1],)
    if kind == "NumberLiteral":
        return (float(text) if "." in text else int(text),)
    if kind == "BooleanLiteral":
        return (text == "true",)
    return None


def _path(chain: list[tuple[str, str, Any]]) -> _Path | None:
    """Members and ``where(criteria)`` steps from the focus."""
    steps: list[tuple[str, Any]] = []
    for i, (kind, name, functn) in enumerate(chain):
        if kind == "m":
            if i > 0 and name in _OPAQUE_MEMBERS:
                return None
            steps.append(("m", name))
        elif name == "where" and len(args := _arguments(functn)) == 1:
            criteria = _direct(args[0])
            if criteria is None:
                return None
            steps.append(("w", criteria))
        else:
            return None
    first = steps[0][1] if steps and steps[0][0] == "m" else None

    def select(f: _Focus) -> list[_Item]:
        node = f.node
        if node is None:
            raise _Slow
        todo = steps
        if first == node.name and first not in node.members and f.value is f.resource:
            todo = steps[1:]  # "Appointment.status" on an Appointment
        items: list[_Item] = [(node, f.value)]
        for kind, arg in todo:
            if kind == "m":
                items = _members(items, arg)
            else:
                items = [
                    item
                    for item in items
                    if arg(_Focus(item[1], item[0], "", f.resource, f.root)) is True
                ]
        return items

    return select


def _members(items: list[_Item], name: str) -> list[_Item]:
    nodes = _model().nodes
    out: list[_Item] = []
    for node, value in items:
        if type(value) is not dict:
            continue
        if node is None:
            raise _Slow
        for key, element in node.members.get(name, ()):
            x = value.get(key)
            if x is None:
                if "_" + key in value:
                    raise _Slow  # a primitive with only an id / extensions
                continue
            for y in x if type(x) is list else (x,):
                if y is None:
                    raise _Slow
                if element.resource:
                    rt = y.get("resourceType") if type(y) is dict else None
                    out.append((nodes.get(rt) if isinstance(rt, str) else None, y))
                else:
                    out.append((element.child, y))
    return out


def _single(items: list[_Item]) -> Any:
    """The one value of a singleton (of a primitive with a value)."""
    value = items[0][1]
    if len(items) != 1 or value is None or isinstance(value, dict | list):
        raise _Slow
    return value


def _same_kind(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool)
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str)
    return isinstance(a, int | float) and isinstance(b, int | float)


_TESTS: dict[str, Callable[[list[_Item]], bool | None]] = {
    "exists": lambda items: bool(items),
    "empty": lambda items: not items,
    "hasValue": lambda items: (
        len(items) == 1 and items[0][1] is not None and not isinstance(items[0][1], dict | list)
    ),
}
_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}
_ZONE = re.compile(r"(?:Z|[+-]\d\d:\d\d)$")


def _direct(node: dict[str, Any]) -> _Runner | None:
    """A runner answering ``node`` on the JSON (raising _Slow on data it does not handle), or
    None when the expression has a form it does not know."""
    node = _unparen(node)
    kind = node.get("type")
    op = (node.get("terminalNodeText") or [""])[0]
    if kind in _OPERATORS:
        left, right = _direct(node["children"][0]), _direct(node["children"][1])
        return _logic(op, left, right) if left is not None and right is not None else None
    if kind == "EqualityExpression" and op in ("=", "!="):
        return _direct_equality(node, op == "!=")
    if kind == "InequalityExpression":
        return _direct_order(node, op)
    if kind == "MembershipExpression" and op == "in":
        return _direct_in(node)
    chain = _chain(node)
    if chain is None:
        return None
    n = len(chain)
    while n > 0 and chain[n - 1][0] == "f" and chain[n - 1][1] == "not":
        if _arguments(chain[n - 1][2]):
            return None
        n -= 1
    negate = (len(chain) - n) % 2 == 1
    if n == 0 or chain[n - 1][0] != "f":
        return None
    _, name, functn = chain[n - 1]
    args = _arguments(functn)
    test: Callable[[list[_Item]], bool | None]
    head = chain[: n - 1]
    if name in _TESTS and not args:
        test = _TESTS[name]
    elif name == "exists" and len(args) == 1:  # exists(criteria) = where(criteria).exists()
        head = [*head, ("f", "where", functn)]
        test = _TESTS["exists"]
    elif name == "startsWith" and len(args) == 1 and isinstance(lit := _literal(args[0]), tuple):
        prefix = lit[0]
        if not isinstance(prefix, str):
            return None

        def test(items: list[_Item]) -> bool | None:
            if not items:
                return None
            value = _single(items)
            if not isinstance(value, str):
                raise _Slow
            return value.startswith(prefix)

    else:
        return None
    select = _path(head) if head else None
    if select is None:
        return None

    def run(f: _Focus) -> bool | None:
        result = test(select(f))
        return result if result is None or not negate else not result

    return run


def _plain_path(node: dict[str, Any]) -> _Path | None:
    chain = _chain(_unparen(node))
    if chain is None or any(kind != "m" for kind, _, _ in chain):
        return None
    return _path(chain)


def _direct_equality(node: dict[str, Any], negate: bool) -> _Runner | None:
    left, right = node["children"]
    a, b = _direct(left), _direct(right)
    if a is not None and b is not None:  # extension.exists() != value.exists()

        def run_tests(f: _Focus) -> bool | None:
            x, y = a(f), b(f)
            return None if x is None or y is None else (x == y) != negate

        return run_tests
    select, lit = _plain_path(left), _literal(right)
    if select is None or lit is None:
        return None
    (want,) = lit

    def run(f: _Focus) -> bool | None:
        items = select(f)
        if not items:
            return None
        if len(items) > 1:
            return negate  # a collection of several is not equal to one value
        value = _single(items)
        if not _same_kind(value, want):
            raise _Slow
        return (value == want) != negate

    return run


def _direct_order(node: dict[str, Any], op: str) -> _Runner | None:
    """``start <= end`` (two date/time strings of the same precision and zone compare as
    text) and ``period >= 0`` (numbers)."""
    left, right = node["children"]
    a = _plain_path(left)
    if a is None:
        return None
    compare = _ORDER[op]
    lit = _literal(right)
    if lit is not None:
        (bound,) = lit
        if isinstance(bound, bool) or not isinstance(bound, int | float):
            return None

        def run_number(f: _Focus) -> bool | None:
            items = a(f)
            if not items:
                return None
            value = _single(items)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise _Slow
            return compare(value, bound)

        return run_number
    b = _plain_path(right)
    if b is None:
        return None

    def run_dates(f: _Focus) -> bool | None:
        xs, ys = a(f), b(f)
        if not xs or not ys:
            return None
        if len(xs) != 1 or len(ys) != 1:
            raise _Slow
        x, y = xs[0][1], ys[0][1]
        if type(x) is dict and type(y) is dict:
            return _compare_quantities(x, y, compare)
        if not (
            isinstance(x, str)
            and isinstance(y, str)
            and len(x) == len(y)
            and x[:4].isdigit()
            and y[:4].isdigit()
        ):
            raise _Slow
        zx, zy = _ZONE.search(x), _ZONE.search(y)
        if (zx is None) != (zy is None) or (zx is not None and zy is not None and zx[0] != zy[0]):
            raise _Slow
        return compare(x, y)

    return run_dates


def _compare_quantities(
    x: dict[str, Any], y: dict[str, Any], compare: Callable[[Any, Any], bool]
) -> bool | None:
    """``low <= high`` (rng-2), which fhirpathpy cannot do: Quantities in the same unit compare
    by value; other units give empty, as FHIRPath says of incomparable units (UCUM conversion,
    kg against g, is not attempted)."""
    vx, vy = x.get("value"), y.get("value")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (vx, vy)):
        return None
    if x.get("code") is not None or y.get("code") is not None:
        same = (x.get("system"), x.get("code")) == (y.get("system"), y.get("code"))
    else:
        same = x.get("unit") == y.get("unit")
    return compare(vx, vy) if same else None


def _direct_in(node: dict[str, Any]) -> _Runner | None:
    """``status in ('proposed' | 'cancelled')``: a path and a union of string literals."""
    select = _plain_path(node["children"][0])
    if select is None:
        return None
    words: set[str] = set()
    stack = [node["children"][1]]
    while stack:
        part = _unparen(stack.pop())
        if part.get("type") == "UnionExpression":
            stack.extend(part["children"])
            continue
        lit = _literal(part)
        if lit is None or not isinstance(lit[0], str):
            return None
        words.add(lit[0])

    def run(f: _Focus) -> bool | None:
        items = select(f)
        if not items:
            return None
        value = _single(items)
        if not isinstance(value, str):
            raise _Slow
        return value in words

    return run


# -- operands fhirpathpy evaluates, unless their leading path selects nothing ------------------

#: functions that give empty on an empty input
_EMPTY_TO_EMPTY = frozenset(
    {"where", "select", "first", "last", "tail", "skip", "take", "single", "trace", "substring",
     "startsWith", "endsWith", "contains", "matches", "replace", "length", "lower", "upper",
     "toString", "toInteger", "toDecimal", "ofType", "as", "not", "distinct", "repeat"}
)  # fmt: skip
#: functions whose result on an empty input does not depend on their arguments or the focus
_EMPTY_CONSTANT = _EMPTY_TO_EMPTY | {"exists", "empty", "count", "all", "allTrue", "allFalse",
                                     "anyTrue", "anyFalse", "isDistinct", "hasValue"}  # fmt: skip
#: binary operators that give empty when the operand on these sides is empty
_EMPTY_SIDES = {"=": (0, 1), "!=": (0, 1), "<": (0, 1), "<=": (0, 1), ">": (0, 1),
                ">=": (0, 1), "in": (0,), "contains": (1,)}  # fmt: skip


def _head(node: dict[str, Any], allowed: frozenset[str]) -> _Path | None:
    """The leading member path of ``a.b.f().g()`` when every function is in ``allowed``."""
    chain = _chain(_unparen(node))
    if chain is None:
        return None
    n = next((i for i, step in enumerate(chain) if step[0] == "f"), len(chain))
    if any(name not in allowed for _, name, _ in chain[n:]):
        return None
    return _path(chain[:n])


def _shortcut(node: dict[str, Any], slow: _Runner) -> _Runner | None:
    """``contained.where(...).empty()`` and ``reference.substring(1) in ...``: constant (or
    empty) when the leading path selects nothing, which is the common case; else fhirpathpy."""
    kind = node.get("type")
    op = (node.get("terminalNodeText") or [""])[0]
    if kind in ("EqualityExpression", "InequalityExpression", "MembershipExpression"):
        heads = [
            head
            for side in _EMPTY_SIDES.get(op, ())
            if (head := _head(node["children"][side], _EMPTY_TO_EMPTY)) is not None
        ]
        if not heads:
            return None

        def run_empty(f: _Focus) -> bool | None:
            try:
                if any(not head(f) for head in heads):
                    return None
            except _Slow:
                pass
            return slow(f)

        return run_empty
    head = _head(node, _EMPTY_CONSTANT)
    if head is None:
        return None
    constant: list[bool | None] = []

    def run_constant(f: _Focus) -> bool | None:
        try:
            if head(f):
                return slow(f)
        except _Slow:
            return slow(f)
        if not constant:
            constant.append(slow(_Focus({}, None, "Element", {}, {})))
        return constant[0]

    return run_constant


def _direct_operand(node: dict[str, Any], slow: _Runner) -> _Runner | None:
    direct = _direct(node)
    if direct is None:
        return _shortcut(node, slow)

    def run(f: _Focus) -> bool | None:
        try:
            return direct(f)
        except _Slow:
            return slow(f)

    return run


# --------------------------------------------------------------------------- the walk


@dataclass(slots=True)
class _Walk:
    invariants: bool
    cardinality: bool
    direct: bool = True  # False: every operand by fhirpathpy (to compare)
    issues: list[Issue] = field(default_factory=list)

    def resource(self, obj: dict[str, Any], path: str, root: dict[str, Any] | None) -> None:
        rtype = obj.get("resourceType")
        node = _model().nodes.get(rtype) if isinstance(rtype, str) else None
        if node is None:
            return  # ehr.validation reports an unknown resource type
        self.node(node, obj, path, obj, root if root is not None else obj)

    def node(
        self,
        node: _Node,
        obj: dict[str, Any],
        path: str,
        resource: dict[str, Any],
        root: dict[str, Any],
    ) -> None:
        if self.invariants and node.inv:
            focus = _Focus(obj, node, node.fp, resource, root)
            for rule in node.inv:
                self.evaluate(rule, focus, path)
        if self.cardinality:
            for name, keys in node.required:
                if not any(k in obj or "_" + k in obj for k in keys):
                    self.issues.append(
                        Issue(
                            "required",
                            f"missing required element {name!r} (min 1)",
                            expression=(f"{path}.{name}",),
                        )
                    )
        choices: set[str] | None = None
        for key, value in obj.items():
            element = node.elements.get(key)
            if element is None:
                if key[:1] == "_" and key[1:] in node.elements:
                    self.primitive_extensions(value, f"{path}.{key[1:]}", resource, root)
                continue  # resourceType, fhir_comments, or unknown (ehr.validation says so)
            where = f"{path}.{key}"
            if element.choice is not None:
                choices = choices if choices is not None else set()
                if element.choice in choices:
                    self.structure(f"only one type of {element.choice}[x] may be given", where)
                choices.add(element.choice)
            if type(value) is list:
                if not element.many:
                    self.structure("a single value is expected, not an array", where)
                    continue
                for i, item in enumerate(value):
                    if item is not None:
                        self.element(element, item, f"{where}[{i}]", resource, root)
            elif element.many:
                self.structure(f"an array is expected, not {_short(value)}", where)
            else:
                self.element(element, value, where, resource, root)

    def element(
        self,
        element: _Element,
        value: Any,
        path: str,
        resource: dict[str, Any],
        root: dict[str, Any],
    ) -> None:
        if self.invariants and element.inv:
            focus = _Focus(value, element.child, element.fp, resource, root)
            for rule in element.inv:
                self.evaluate(rule, focus, path)
        if type(value) is not dict:
            return
        if element.resource:
            # a contained resource keeps its container as %rootResource; a bundled one is a root
            contained = path.rsplit(".", 1)[-1].startswith("contained")
            self.resource(value, path, root if contained else None)
        elif element.child is not None:
            self.node(element.child, value, path, resource, root)

    def primitive_extensions(
        self, value: Any, path: str, resource: dict[str, Any], root: dict[str, Any]
    ) -> None:
        """``_birthDate`` / ``_given``: the id and extensions of primitives."""
        element_node = _model().nodes["Element"]
        items = value if type(value) is list else [value]
        for i, item in enumerate(items):
            if type(item) is dict:
                where = f"{path}[{i}]" if type(value) is list else path
                self.node(element_node, item, where, resource, root)

    def evaluate(self, rule: _Rule, focus: _Focus, path: str) -> None:
        if rule.run is None:
            return
        c = rule.constraint
        run = rule.run if self.direct else _compile(c.expression, False)[0]
        assert run is not None
        try:
            ok = run(focus) is not False
        except Exception as exc:  # fhirpathpy fails on unexpected shapes; never fatal here
            self.issues.append(
                Issue(
                    "processing",
                    f"{c.key}: could not be evaluated ({type(exc).__name__}: {_short(str(exc))})",
                    "warning",
                    (path,),
                )
            )
            return
        if not ok:
            self.issues.append(Issue("invariant", f"{c.key}: {c.human}", c.severity, (path,)))

    def structure(self, message: str, path: str) -> None:
        if self.cardinality:
            self.issues.append(Issue("structure", message, expression=(path,)))


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 100 else text[:97] + "..."


def check_resource(
    resource: dict[str, Any], *, invariants: bool = True, cardinality: bool = True
) -> list[Issue]:
    """Every invariant failure (and, with ``cardinality``, every missing required element and
    array/single mismatch) in ``resource`` and the resources it contains or bundles.

    Meant for a resource that :func:`ehr.validation.validate_resource` has seen: what is
    malformed JSON there (unknown elements, wrong primitive kinds) is skipped here.
    """
    return _check(resource, invariants, cardinality, direct=True)


def _check(
    resource: dict[str, Any], invariants: bool, cardinality: bool, *, direct: bool
) -> list[Issue]:
    walk = _Walk(invariants, cardinality, direct)
    rtype = resource.get("resourceType")
    walk.resource(resource, rtype if isinstance(rtype, str) else "Resource", None)
    return walk.issues
