"""``ehr audit …`` and ``ehr consent …``: check the audit trail, bring it up to date, rebuild the
consent rules. ``fhir_api.cli`` adds them with :func:`add_subcommands`.

Operations scripts may rely on this interface; keep it stable:

* ``ehr audit verify [--json]``: recompute the hash chain and compare the AuditEvent resources
  with it; prints a summary line (and the problems) and exits 0 when intact, 1 when not. The
  head hash it prints can be recorded elsewhere (a ticket, a notary) as a checkpoint: a later
  run that reports another hash for the same row number means the log was rewritten;
* ``ehr audit sync``: replay the spool of crashed server processes into the chain and store
  every chained event as an AuditEvent resource (the server does both on its own; this is for
  after an outage or before an audit);
* ``ehr audit ship``: the audit shipper (:mod:`ehr.security.shipper`): moves the records the
  workers spool into the chain until stopped (SIGTERM), then ships what is left. ``ehr serve``
  runs it on its own; run it yourself next to workers started another way with
  ``EHR_SECURITY_AUDIT_SHIPPER=process``;
* ``ehr consent rebuild``: rebuild the consent rules from the Consent resources (after a bulk
  load made without the server's hooks).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
from typing import Any

__all__ = [
    "add_subcommands",
    "cmd_audit_ship",
    "cmd_audit_sync",
    "cmd_audit_verify",
    "cmd_consent_rebuild",
]


def _store() -> Any:
    from ehr.store import Store

    store = Store.from_settings()
    store.migrate()
    return store


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from ehr.security import verify_audit_chain

    report = verify_audit_chain(_store())
    if args.json:
        # ("rows": events, as before blocks; "head_seq", "materialized", "blocks": blocks)
        print(json.dumps(dataclasses.asdict(report), indent=2))
    else:
        print(report.summary())
        for p in report.problems:
            print(f"  {p}", file=sys.stderr)
    return 0 if report.ok else 1


def cmd_audit_sync(_: argparse.Namespace) -> int:
    from ehr.security import AuditTrail
    from ehr.security.shipper import Shipper
    from ehr.settings import get_settings
    from fhir_api.security import SecuritySettings, spool_dir

    store = _store()
    spool = spool_dir(store, SecuritySettings(), get_settings())
    trail = AuditTrail(store, spool_dir=spool, materialize="never")  # replays at start
    shipper = Shipper(trail, spool)
    try:
        shipper.cycle(force=True)  # what the workers of an ``ehr serve`` spooled
        trail.sync()
    finally:
        shipper.close()
        trail.close()
    print(f"audit trail up to date: {trail.lag()} event(s) left to store")
    return 0


def cmd_audit_ship(args: argparse.Namespace) -> int:
    from ehr.definitions import search_parameters
    from ehr.security.shipper import run_shipper
    from ehr.security.visibility import patient_compartment
    from ehr.settings import get_settings
    from fhir_api.app import settle_collector
    from fhir_api.security import SecuritySettings, audit_trail, spool_dir

    store = _store()
    config, settings = SecuritySettings(), get_settings()
    trail = audit_trail(store, config, settings, shipper=True)
    search_parameters(), patient_compartment()  # (loaded now: they live as long as it)
    # niced, the shipper takes a small share of contended cores (at 16 connections the reads
    # per second rose, and the shipper kept up); a request woken on a core it holds can still
    # wait for it, up to a scheduler tick (bench/RESULTS.md, sessions 7 and 9): so it also
    # yields the core every few records it handles (ehr.security.scheduling)
    with contextlib.suppress(OSError):
        os.nice(config.audit_shipper_nice)
    run_shipper(
        trail, spool_dir(store, config, settings), parent=args.parent, settle=settle_collector
    )
    return 0


def cmd_consent_rebuild(_: argparse.Namespace) -> int:
    from ehr.security import rebuild_consent_rules

    n = rebuild_consent_rules(_store())
    print(f"consent rules rebuilt: {n} rule(s)")
    return 0


def add_subcommands(subparsers: Any) -> None:
    """Add ``audit`` and ``consent`` to the ``ehr`` command's subparsers."""
    audit = subparsers.add_parser("audit", help="the tamper-evident audit trail")
    sub = audit.add_subparsers(dest="audit_command", required=True)
    p = sub.add_parser("verify", help="check the hash chain and the AuditEvents against it")
    p.add_argument("--json", action="store_true", help="machine-readable report")
    p.set_defaults(fn=cmd_audit_verify)
    p = sub.add_parser("sync", help="replay the spool and store every event as an AuditEvent")
    p.set_defaults(fn=cmd_audit_sync)
    p = sub.add_parser(
        "ship", help="move the workers' spooled records into the chain until stopped"
    )
    p.add_argument("--parent", type=int, help="stop when this process is gone (ehr serve)")
    p.set_defaults(fn=cmd_audit_ship)

    consent = subparsers.add_parser("consent", help="patient privacy consent rules")
    sub = consent.add_subparsers(dest="consent_command", required=True)
    p = sub.add_parser("rebuild", help="rebuild the rules from the Consent resources")
    p.set_defaults(fn=cmd_consent_rebuild)
