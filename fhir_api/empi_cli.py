"""``ehr empi``: the regional patient index from the command line (issue 9).

    ehr empi backfill [--batch 200]   # match the Patients stored without the EMPI
    ehr empi status                   # golden records, sources without one, open reviews

``ehr serve`` matches every Patient written through it (``EHR_EMPI``, on by default). Patients
stored another way (``ehr load``, ``ehr demo``, or while ``EHR_EMPI=0``) have no golden record
and no blocking rows yet, so later registrations of the same citizen cannot find them:
``backfill`` matches them now, oldest first, exactly as live registrations would be
(:func:`ehr.empi.service.backfill`). It is safe to run again (it only picks up what is missing)
and while the server runs. :func:`add_subcommands` adds the command to the ``ehr`` parser.
"""

from __future__ import annotations

import argparse
from typing import Any

from ehr.empi.links import EMPI_SYSTEM
from ehr.empi.review import OPEN_STATUSES
from ehr.empi.service import backfill, install
from ehr.store import Store

__all__ = ["add_subcommands", "cmd_backfill", "cmd_status"]


def _store() -> Store:
    store = Store.from_settings()
    store.migrate()
    return store


def cmd_backfill(args: argparse.Namespace) -> int:
    store = _store()
    install(store)  # the citizen-ID key comes from the settings (EHR_CITIZEN_ID_KEY)
    done = backfill(store, batch=args.batch)
    print(f"matched {done} Patient(s) that had no golden record")
    _print_status(store)
    return 0


def _total(store: Store, rtype: str, *params: tuple[str, str]) -> int:
    return int(store.search(rtype, [*params, ("_summary", "count")]).total or 0)


def _print_status(store: Store) -> None:
    goldens = _total(store, "Patient", ("_tag", f"{EMPI_SYSTEM}|golden"))
    sources = _total(store, "Patient") - goldens
    reviews = _total(
        store, "Task", ("code", f"{EMPI_SYSTEM}|empi-review"), ("status", ",".join(OPEN_STATUSES))
    )
    print(f"{goldens} golden record(s) over {sources} source Patient(s); {reviews} open review(s)")


def cmd_status(_: argparse.Namespace) -> int:
    _print_status(_store())
    return 0


def add_subcommands(sub: Any) -> None:
    p = sub.add_parser("empi", help="the regional patient index: backfill, status")
    empi = p.add_subparsers(dest="empi_command", required=True)
    b = empi.add_parser("backfill", help="match the Patients stored without the EMPI")
    b.add_argument("--batch", type=int, default=200, help="Patients per transaction")
    b.set_defaults(fn=cmd_backfill)
    s = empi.add_parser("status", help="golden records, source Patients, open review tasks")
    s.set_defaults(fn=cmd_status)
