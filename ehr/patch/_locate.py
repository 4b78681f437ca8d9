"""Find where in a resource's JSON the elements selected by a FHIRPath expression live, for
FHIRPath Patch (http://hl7.org/fhir/R4/fhirpatch.html).

fhirpathpy evaluates the expression (with the R4 model, so ``Patient.deceased`` finds
``deceasedBoolean``). Its public ``evaluate`` returns copies, so we ask for its raw result nodes
instead and map each back to a location, a tuple of JSON keys and list indexes from the root:

* an object (or list) result is the very object of the tree: it is found by identity in an index
  of the tree built just before evaluating (the tree is a private copy without shared objects);
* a primitive result is found through the node's ``propName`` (``Patient.name[0].given[1]``),
  checked against the value there;
* when ``propName`` is missing or wrong (a member after a function, as in
  ``Patient.extension('url').value``) the trailing member is resolved on the located parents.

A primitive's extension object (``_birthDate``) counts as that primitive (``birthDate``).
Syntax is checked strictly (fhirpathpy's own parser ignores syntax errors).
"""

from __future__ import annotations

import re
from typing import Any

from antlr4 import CommonTokenStream, InputStream
from antlr4.error.ErrorListener import ErrorListener
from antlr4.tree.Tree import ParseTreeWalker
from fhirpathpy import apply_parsed_path
from fhirpathpy.engine.nodes import ResourceNode
from fhirpathpy.models import models
from fhirpathpy.parser.ASTPathListener import ASTPathListener
from fhirpathpy.parser.generated.FHIRPathLexer import FHIRPathLexer
from fhirpathpy.parser.generated.FHIRPathParser import FHIRPathParser

__all__ = [
    "Loc",
    "NotLocatable",
    "PathEvalError",
    "PathSyntaxError",
    "choice_key",
    "compile_path",
    "get",
    "locate",
    "split_member",
]

Loc = tuple[str | int, ...]
Ast = dict[str, Any]

_R4 = models["r4"]
_PROP_PART = re.compile(r"([A-Za-z][A-Za-z0-9]*)(?:\[(\d+)\])?")


class PathSyntaxError(ValueError):
    """The expression is not valid FHIRPath, or uses a function we cannot evaluate."""


class PathEvalError(ValueError):
    """Evaluating the expression on this resource failed."""


class NotLocatable(ValueError):
    """The expression selects something that is not an element of the resource."""


class _Raise(ErrorListener):  # type: ignore[misc]
    def syntaxError(
        self, recognizer: Any, offending: Any, line: int, column: int, msg: str, e: Any
    ) -> None:  # noqa: N802
        raise PathSyntaxError(f"column {column + 1}: {msg}")


def compile_path(expression: Any) -> Ast:
    """Parse a FHIRPath expression into fhirpathpy's AST, raising on any syntax error."""
    if not isinstance(expression, str) or not expression.strip():
        raise PathSyntaxError("the path must be a non-empty string")
    listener = _Raise()
    lexer = FHIRPathLexer(InputStream(expression))
    lexer.removeErrorListeners()
    lexer.addErrorListener(listener)
    parser = FHIRPathParser(CommonTokenStream(lexer))
    parser.removeErrorListeners()
    parser.addErrorListener(listener)
    try:
        tree = parser.entireExpression()
    except PathSyntaxError:
        raise
    except Exception as exc:  # the lexer's own recognition errors
        raise PathSyntaxError(str(exc) or type(exc).__name__) from exc
    ast_listener = ASTPathListener()
    ParseTreeWalker().walk(ast_listener, tree)
    entire = ast_listener.parentStack[0]["children"][0]
    return {"children": [entire["children"][0]]}


def _evaluate(root: dict[str, Any], ast: Ast) -> list[Any]:
    try:
        result = apply_parsed_path(root, ast, {}, _R4, {"returnRawData": True})
    except Exception as exc:
        message = str(exc) or type(exc).__name__
        if message.startswith("Not implemented"):
            raise PathSyntaxError(message) from exc
        raise PathEvalError(message) from exc
    return result if isinstance(result, list) else [result]


def get(root: Any, loc: Loc) -> Any:
    node = root
    for step in loc:
        node = node[step]
    return node


def choice_key(node: dict[str, Any], name: str) -> str | None:
    """The key of ``name`` in ``node``: itself, or the one ``name[x]`` key (``valueQuantity``)."""
    if name in node:
        return name
    n = len(name)
    keys = [k for k in node if k.startswith(name) and len(k) > n and k[n].isupper()]
    return keys[0] if len(keys) == 1 else None


def _identity_index(root: Any) -> dict[int, Loc]:
    index: dict[int, Loc] = {}
    stack: list[tuple[Any, Loc]] = [(root, ())]
    while stack:
        node, loc = stack.pop()
        if isinstance(node, dict):
            index[id(node)] = loc
            stack.extend((v, (*loc, k)) for k, v in node.items())
        elif isinstance(node, list):
            index[id(node)] = loc
            stack.extend((v, (*loc, i)) for i, v in enumerate(node))
    return index


def _from_prop_name(root: dict[str, Any], prop: Any, data: Any) -> Loc | None:
    if not isinstance(prop, str) or not prop:
        return None
    parts = prop.split(".")
    if parts[0] != root.get("resourceType"):
        return None
    node: Any = root
    loc: list[str | int] = []
    for part in parts[1:]:
        m = _PROP_PART.fullmatch(part)
        if m is None or not isinstance(node, dict):
            return None
        key = choice_key(node, m.group(1))
        if key is None:
            return None
        node = node[key]
        loc.append(key)
        if m.group(2) is not None:
            i = int(m.group(2))
            if not isinstance(node, list) or i >= len(node):
                return None
            node = node[i]
            loc.append(i)
    if isinstance(node, dict | list) or type(node) is not type(data) or node != data:
        return None
    return tuple(loc)


def _unshadow(loc: Loc) -> Loc:
    """``_birthDate`` (a primitive's id/extension) stands for ``birthDate``."""
    for pos in (len(loc) - 1, len(loc) - 2):
        if pos >= 0 and isinstance(loc[pos], str) and str(loc[pos]).startswith("_"):
            if pos == len(loc) - 2 and not isinstance(loc[-1], int):
                continue
            return (*loc[:pos], str(loc[pos])[1:], *loc[pos + 1 :])
    return loc


def _identifier(node: Ast) -> str | None:
    """The name of a MemberInvocation node."""
    if node.get("type") != "MemberInvocation":
        return None
    ident = (node.get("children") or [{}])[0]
    text = ident.get("text") if ident.get("type") == "Identifier" else None
    return text.strip("`") if isinstance(text, str) else None


def split_member(ast: Ast) -> tuple[Ast | None, str, int | None] | None:
    """Split ``<head>.<name>`` or ``<head>.<name>[n]`` into (head AST or None for the root,
    name, n); None when the expression does not end with a member name."""
    expr = ast["children"][0]
    index: int | None = None
    if expr.get("type") == "IndexerExpression":
        target, idx = expr["children"]
        literal = idx
        while literal.get("children") and literal.get("type") != "NumberLiteral":
            literal = literal["children"][0]
        if literal.get("type") != "NumberLiteral" or not str(literal.get("text", "")).isdigit():
            return None
        index = int(literal["text"])
        expr = target
    kind = expr.get("type")
    if kind == "InvocationExpression":
        head, last = expr["children"]
        name = _identifier(last)
        return (({"children": [head]}, name, index)) if name else None
    if kind == "TermExpression":
        term = expr["children"][0]
        if term.get("type") == "InvocationTerm":
            name = _identifier(term["children"][0])
            if name:
                return None, name, index
    return None


def _member_locations(root: dict[str, Any], ast: Ast) -> list[Loc] | None:
    split = split_member(ast)
    if split is None:
        return None
    head, name, index = split
    if head is None:
        if name == root.get("resourceType"):
            return [()]
        parents: list[Loc] = [()]
    else:
        parents = locate(root, head)
    found: list[Loc] = []
    for parent in parents:
        node = get(root, parent)
        key = choice_key(node, name) if isinstance(node, dict) else None
        if key is None:
            continue
        value = node[key]
        if isinstance(value, list):
            found.extend((*parent, key, i) for i, v in enumerate(value) if v is not None)
        elif value is not None:
            found.append((*parent, key))
    if index is not None:
        return [found[index]] if index < len(found) else []
    return found


def locate(root: dict[str, Any], ast: Ast) -> list[Loc]:
    """The locations, in document order of the result, of the elements ``ast`` selects."""
    nodes = _evaluate(root, ast)
    index: dict[int, Loc] | None = None
    found: list[Loc] = []
    unresolved = False
    for node in nodes:
        if isinstance(node, dict) and node.get("$status") == "error":
            raise PathEvalError(str(node.get("$error", "evaluation failed")))
        if not isinstance(node, ResourceNode):
            raise NotLocatable("the path selects a computed value, not an element")
        data = node.data
        if data is None:
            continue
        if isinstance(data, dict | list):
            if index is None:
                index = _identity_index(root)
            loc = index.get(id(data))
            if loc is None:
                raise NotLocatable("the path selects something outside this resource")
        else:
            maybe = _from_prop_name(root, node.propName, data)
            if maybe is None:
                unresolved = True
                continue
            loc = maybe
        loc = _unshadow(loc)
        if loc not in found:
            found.append(loc)
    if unresolved:
        fallback = _member_locations(root, ast)
        if fallback is None:
            raise NotLocatable("cannot tell where in the resource the selected value is")
        return fallback
    return found
