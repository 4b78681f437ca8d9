"""Batch and transaction Bundles (http://hl7.org/fhir/R4/http.html#transaction).

Transaction: all or nothing, in one database transaction. Entries are processed in the order the
spec gives (DELETE, POST, PUT/PATCH, GET). Before anything is written:

* every POST entry gets its new id (or, with ``ifNoneExist``, the id of the one match), and every
  conditional PUT its target, so ``urn:uuid:`` / ``urn:oid:`` fullUrls map to ``Type/id``;
* conditional references (``Patient?identifier=…``) are resolved by search: exactly one match is
  required (none: 404, several: 412);
* every ``reference`` in every resource (contained resources and extensions included) that
  points at a mapped fullUrl is rewritten.

An error in any entry rolls everything back and answers with that entry named
(``Bundle.entry[i]``). Batch: each entry is its own transaction and gets its own response
(status, location, etag, or an OperationOutcome); entries may not refer to each other.
"""

from __future__ import annotations

import base64
import copy
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import orjson

from ehr.errors import BadRequest, FhirError, Issue, NotFound, PayloadTooLarge, PreconditionFailed
from ehr.store import Store, WriteContext, WriteResult, check_type, parse_condition
from ehr.validation import check_id

__all__ = ["EntryRequest", "process_bundle"]

_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}
_STATUS = {
    "created": "201 Created",
    "updated": "200 OK",
    "existing": "200 OK",
    "deleted": "204 No Content",
}


@dataclass
class EntryRequest:
    """One Bundle entry's request, parsed."""

    index: int
    method: str
    rtype: str | None
    rid: str | None
    vid: str | None
    query: str | None
    resource: dict[str, Any] | None
    full_url: str | None
    if_match: int | None = None
    if_none_exist: str | None = None
    target_id: str | None = None  # pre-assigned / resolved id for POST and conditional PUT
    new_id: bool = False  # a conditional PUT that matched nothing, with the client's id
    existing: bool = False
    response: dict[str, Any] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"Bundle.entry[{self.index}]"


def _parse_url(url: str, base: str | None) -> tuple[str | None, str | None, str | None, str | None]:
    """``Type``, ``Type/id``, ``Type/id/_history/v``, ``Type?query`` -> (type, id, vid, query)."""
    if base and url.startswith(base.rstrip("/") + "/"):
        url = url[len(base.rstrip("/")) + 1 :]
    path, _, query = url.partition("?")
    parts = [p for p in path.split("/") if p]
    rtype = parts[0] if parts else None
    rid = parts[1] if len(parts) > 1 else None
    vid = parts[3] if len(parts) > 3 and parts[2] == "_history" else None
    return rtype, rid, vid, (query if "?" in url else None)


def _etag_version(value: Any) -> int | None:
    if value is None:
        return None
    s = str(value).strip()
    if s.startswith("W/"):
        s = s[2:]
    s = s.strip('"')
    try:
        return int(s)
    except ValueError as exc:
        raise BadRequest(f'Invalid ifMatch {value!r}: expected W/"<version>"') from exc


def _parse_entries(
    bundle: dict[str, Any], base: str | None, max_entries: int
) -> list[EntryRequest]:
    entries = bundle.get("entry") or []
    if not isinstance(entries, list):
        raise BadRequest("Bundle.entry must be an array", "structure")
    if len(entries) > max_entries:
        raise PayloadTooLarge(
            f"Bundle has {len(entries)} entries; this server accepts at most {max_entries} per Bundle",
            "too-costly",
        )
    out = []
    for i, e in enumerate(entries):
        where = f"Bundle.entry[{i}]"
        req = e.get("request") if isinstance(e, dict) else None
        if not isinstance(req, dict) or not req.get("method") or not req.get("url"):
            raise BadRequest(
                f"{where}: request.method and request.url are required", expression=[where]
            )
        method = str(req["method"]).upper()
        if method not in _ORDER:
            raise BadRequest(
                f"{where}: unsupported method {method}", "not-supported", expression=[where]
            )
        rtype, rid, vid, query = _parse_url(str(req["url"]), base)
        resource = e.get("resource")
        if method in ("POST", "PUT") and not isinstance(resource, dict):
            raise BadRequest(f"{where}: {method} needs a resource", expression=[where])
        if method == "POST" and resource is not None:
            rtype = rtype or resource.get("resourceType")
        out.append(
            EntryRequest(
                index=i,
                method=method,
                rtype=rtype,
                rid=rid,
                vid=vid,
                query=query,
                resource=resource,
                full_url=e.get("fullUrl"),
                if_match=_etag_version(req.get("ifMatch")),
                if_none_exist=req.get("ifNoneExist"),
            )
        )
    return out


def _rewrite(node: Any, mapping: dict[str, str]) -> Any:
    """Replace mapped references everywhere (Reference.reference, contained, extensions)."""
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k == "reference" and isinstance(v, str) and v in mapping:
                out[k] = mapping[v]
            else:
                out[k] = _rewrite(v, mapping)
        return out
    if isinstance(node, list):
        return [_rewrite(v, mapping) for v in node]
    return node


def _conditional_refs(node: Any, found: set[str]) -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            if (
                k == "reference"
                and isinstance(v, str)
                and "?" in v
                and not v.startswith(("urn:", "#", "http"))
            ):
                found.add(v)
            else:
                _conditional_refs(v, found)
    elif isinstance(node, list):
        for v in node:
            _conditional_refs(v, found)


def _response(w: WriteResult | None, base: str | None) -> dict[str, Any]:
    if w is None:
        return {"status": "204 No Content"}
    resp: dict[str, Any] = {
        "status": _STATUS[w.outcome],
        "etag": w.etag,
        "lastModified": w.last_modified,
    }
    if w.outcome != "deleted":
        prefix = f"{base.rstrip('/')}/" if base else ""
        resp["location"] = f"{prefix}{w.rtype}/{w.rid}/_history/{w.version}"
    return resp


def _patch_body(e: EntryRequest) -> tuple[str, Any]:
    r = e.resource or {}
    if r.get("resourceType") == "Parameters":
        return "fhirpath", r
    if r.get("resourceType") == "Binary" and "json-patch" in str(r.get("contentType", "")):
        try:
            return "json", orjson.loads(base64.b64decode(r.get("data", "")))
        except (ValueError, orjson.JSONDecodeError) as exc:
            raise BadRequest(f"{e.where}: Binary.data is not a JSON Patch document") from exc
    raise BadRequest(f"{e.where}: PATCH needs a Parameters (FHIRPath Patch) or a JSON Patch Binary")


class _Run:
    def __init__(
        self, ctx: WriteContext, base: str | None, read: Callable[..., dict[str, Any]] | None
    ):
        self.ctx = ctx
        self.base = base
        self.read = read

    def resolve_targets(self, entries: list[EntryRequest], mapping: dict[str, str]) -> None:
        self.ctx.repo.prefetch(
            (e.rtype, e.rid)
            for e in entries
            if e.method == "PUT" and e.rtype and e.rid and e.query is None
        )
        for e in entries:
            if e.method == "POST":
                assert e.resource is not None and e.rtype is not None
                check_type(e.rtype)
                if e.if_none_exist:
                    params = parse_condition(e.if_none_exist)
                    self.ctx.lock_condition(e.rtype, params)
                    found = self.ctx.match(e.rtype, params)
                    if len(found) > 1:
                        raise PreconditionFailed(
                            f"{e.where}: ifNoneExist '{e.if_none_exist}' matches several {e.rtype}",
                            "multiple-matches",
                        )
                    if found:
                        e.target_id, e.existing = found[0].rid, True
                e.target_id = e.target_id or str(uuid.uuid4())
            elif e.method == "PUT" and e.query is not None and e.rtype:
                check_type(e.rtype)
                params = parse_condition(e.query)
                self.ctx.lock_condition(e.rtype, params)
                found = self.ctx.match(e.rtype, params)
                if len(found) > 1:
                    raise PreconditionFailed(
                        f"{e.where}: '{e.query}' matches several {e.rtype}", "multiple-matches"
                    )
                assert e.resource is not None
                e.target_id = found[0].rid if found else (e.resource.get("id") or str(uuid.uuid4()))
                e.new_id = not found and bool(e.resource.get("id"))
            elif e.method == "PUT" and e.rtype and e.rid:
                e.target_id = e.rid
            if e.full_url and e.target_id and e.rtype:
                mapping[e.full_url] = f"{e.rtype}/{e.target_id}"

    def resolve_conditional_refs(
        self, entries: list[EntryRequest], mapping: dict[str, str]
    ) -> None:
        refs: set[str] = set()
        for e in entries:
            if e.resource is not None:
                _conditional_refs(e.resource, refs)
        if not refs:
            return
        conn, engine = self.ctx.conn, self.ctx.store.search_engine
        matched: dict[str, int] = {}
        for ref in sorted(refs):
            rtype, _, query = ref.partition("?")
            check_type(rtype)
            found = engine.match(conn, rtype, parse_qsl(query, keep_blank_values=True), limit=2)
            if not found:
                raise NotFound(f"Conditional reference '{ref}' matches no resource", "not-found")
            if len(found) > 1:
                raise PreconditionFailed(
                    f"Conditional reference '{ref}' matches several resources", "multiple-matches"
                )
            matched[ref] = found[0]
        rids = {
            row.pk: row.rid for row in self.ctx.repo.current_by_pks(set(matched.values()))
        }  # one query
        for ref, pk in matched.items():
            mapping[ref] = f"{ref.partition('?')[0]}/{rids[pk]}"

    def execute(self, e: EntryRequest) -> dict[str, Any]:
        ctx = self.ctx
        if e.method == "DELETE":
            if not e.rtype:
                raise BadRequest(f"{e.where}: DELETE needs a resource type")
            check_type(e.rtype)
            if e.query is not None:
                ws = ctx.conditional_delete(e.rtype, e.query)
                return _response(ws[0] if ws else None, self.base)
            if not e.rid:
                raise BadRequest(f"{e.where}: DELETE needs Type/id or Type?search")
            return _response(ctx.delete(e.rtype, e.rid, if_match=e.if_match), self.base)
        if e.method == "POST":
            assert e.rtype and e.target_id and e.resource is not None
            if e.existing:
                cur = ctx.repo.current(e.rtype, e.target_id)
                assert cur is not None
                return {
                    "status": "200 OK",
                    "etag": f'W/"{cur.version}"',
                    "location": f"{e.rtype}/{e.target_id}/_history/{cur.version}",
                }
            if e.resource.get("resourceType") != e.rtype:
                raise BadRequest(f"{e.where}: resource type does not match request.url {e.rtype}")
            ctx.store.validator(e.resource, expected_type=e.rtype)
            return _response(ctx.insert_with_id(e.rtype, e.target_id, e.resource), self.base)
        if e.method == "PUT":
            if not e.rtype or not e.target_id:
                raise BadRequest(f"{e.where}: PUT needs Type/id or Type?search")
            check_type(e.rtype)
            check_id(e.target_id)
            body = dict(e.resource or {})
            if e.query is not None:
                body.setdefault("id", e.target_id)
            if e.new_id:  # as Store.conditional_update: never overwrites what did not match
                if e.if_match is not None:
                    raise PreconditionFailed(f"{e.where}: no {e.rtype} matches '{e.query}'")
                return _response(ctx.create_with_id(e.rtype, e.target_id, body), self.base)
            return _response(ctx.update(e.rtype, e.target_id, body, if_match=e.if_match), self.base)
        if e.method == "PATCH":
            if not e.rtype:
                raise BadRequest(f"{e.where}: PATCH needs a resource type")
            check_type(e.rtype)
            kind, doc = _patch_body(e)
            if e.query is not None:
                return _response(
                    ctx.conditional_patch(e.rtype, e.query, kind, doc, if_match=e.if_match),
                    self.base,
                )
            if not e.rid:
                raise BadRequest(f"{e.where}: PATCH needs Type/id or Type?search")
            return _response(ctx.patch(e.rtype, e.rid, kind, doc, if_match=e.if_match), self.base)
        # GET / HEAD
        if self.read is None:
            raise BadRequest(f"{e.where}: GET entries are not supported here", "not-supported")
        return self.read(ctx, e)


def _error_entry(exc: FhirError) -> dict[str, Any]:
    return {"response": {"status": f"{exc.status}", "outcome": exc.outcome()}}


def _name_entry(exc: FhirError, e: EntryRequest) -> FhirError:
    """Prefix the failing entry to the error (``Bundle.entry[i]``) without changing its status."""
    issues = [
        Issue(
            i.code,
            i.diagnostics
            if i.diagnostics.startswith("Bundle.entry[")
            else f"{e.where}: {i.diagnostics}",
            i.severity,
            (e.where, *i.expression),
        )
        for i in exc.issues
    ]
    named = copy.copy(exc)  # keeps the subclass (Conflict, Unprocessable, ...)
    named.issues = issues
    named.diagnostics = issues[0].diagnostics
    named.expression = issues[0].expression
    named.args = (str(named),)
    return named


def process_bundle(
    store: Store,
    bundle: Any,
    *,
    base: str | None = None,
    max_entries: int = 10_000,
    read: Callable[[WriteContext, EntryRequest], dict[str, Any]] | None = None,
    check_entry: Callable[[EntryRequest], None] | None = None,
) -> dict[str, Any]:
    """Process a batch or transaction Bundle; returns the response Bundle (as a dict).

    ``read(ctx, entry)`` answers GET entries (the HTTP layer supplies it: read, vread, search);
    it returns a Bundle entry (``resource`` and ``response``). ``check_entry(entry)`` is called
    for every entry before any work (authorization); raising refuses the entry (transaction: the
    whole Bundle).
    """
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise BadRequest("POST to the base needs a Bundle", "invalid")
    kind = bundle.get("type")
    if kind not in ("transaction", "batch"):
        raise BadRequest(f"Bundle.type must be transaction or batch, not {kind!r}", "invalid")
    entries = _parse_entries(bundle, base, max_entries)
    if check_entry is not None and kind == "transaction":
        for e in entries:
            try:
                check_entry(e)
            except FhirError as exc:
                raise _name_entry(exc, e) from exc
    if kind == "transaction":
        return _transaction(store, entries, base, read)
    return _batch(store, entries, base, read, check_entry)


def _transaction(
    store: Store,
    entries: list[EntryRequest],
    base: str | None,
    read: Callable[..., dict[str, Any]] | None,
) -> dict[str, Any]:
    seen: set[str] = set()
    for e in entries:
        if e.full_url:
            if e.full_url in seen:
                raise BadRequest(f"{e.where}: duplicate fullUrl {e.full_url}", expression=[e.where])
            seen.add(e.full_url)
    ordered = sorted(entries, key=lambda e: (_ORDER[e.method], e.index))
    with store.write() as ctx:
        run = _Run(ctx, base, read)
        mapping: dict[str, str] = {}
        current: EntryRequest | None = None
        try:
            run.resolve_targets([e for e in ordered if e.method in ("POST", "PUT")], mapping)
            run.resolve_conditional_refs(ordered, mapping)
            if mapping:
                for e in ordered:
                    if e.resource is not None:
                        e.resource = _rewrite(e.resource, mapping)
            for e in ordered:
                current = e
                e.response = run.execute(e)
        except FhirError as exc:
            raise (_name_entry(exc, current) if current else exc) from exc
    return {
        "resourceType": "Bundle",
        "type": "transaction-response",
        "entry": [
            e.response if "response" in e.response else {"response": e.response} for e in entries
        ],
    }


def _batch(
    store: Store,
    entries: list[EntryRequest],
    base: str | None,
    read: Callable[..., dict[str, Any]] | None,
    check_entry: Callable[[EntryRequest], None] | None,
) -> dict[str, Any]:
    out: list[dict[str, Any]] = [{} for _ in entries]
    for e in sorted(entries, key=lambda e: (_ORDER[e.method], e.index)):
        try:
            if check_entry is not None:
                check_entry(e)
            with store.write() as ctx:
                run = _Run(ctx, base, read)
                if e.method in ("POST", "PUT"):
                    run.resolve_targets([e], {})
                resp = run.execute(e)
            out[e.index] = resp if "response" in resp else {"response": resp}
        except FhirError as exc:
            out[e.index] = _error_entry(exc)
    return {"resourceType": "Bundle", "type": "batch-response", "entry": out}
