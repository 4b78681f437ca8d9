"""The ``ehr`` command (the application shell above every layer): ``serve``, ``migrate``, ``load`` and ``demo``.

This interface is relied on by operations scripts and the counter terminals; keep it stable:

* ``ehr serve --host H --port P [--workers N]`` serves the FHIR API at ``http://H:P/fhir``
  (and runs the audit shipper next to the workers: ``ehr audit ship``);
* ``EHR_DATABASE_URL`` selects the database (default: a SQLite file in ``EHR_DATA_DIR``);
* ``ehr migrate`` brings the schema up to date;
* ``ehr load PATH…`` loads resources, Bundles or NDJSON files (with a progress bar);
* ``ehr demo`` loads the deterministic demo city into the configured database.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from ehr.errors import FhirError
from ehr.settings import get_settings
from ehr.store import Store

if TYPE_CHECKING:
    from fhir_api.apps.demo_accounts import DemoAccount

__all__ = ["audit_shipper_command", "main"]


def _store() -> Store:
    return Store.from_settings()


def cmd_migrate(_: argparse.Namespace) -> int:
    store = _store()
    store.migrate()
    print(f"schema up to date: {store.engine.url.render_as_string(hide_password=True)}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    if not args.no_migrate:
        _store().migrate()
    os.environ.setdefault("EHR_BASE_URL", "")
    print(f"FHIR API at http://{args.host}:{args.port}/fhir (metadata: /fhir/metadata)")
    with _audit_shipper():
        uvicorn.run(
            "fhir_api.security:create_secure_app",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            log_level=args.log_level,
            access_log=args.access_log,
            timeout_graceful_shutdown=10,
        )
    return 0


def audit_shipper_command(parent: int) -> list[str]:
    """The command of an audit shipper that stops when the process ``parent`` is gone."""
    return [sys.executable, "-m", "fhir_api.cli", "audit", "ship", "--parent", str(parent)]


@contextmanager
def _audit_shipper() -> Iterator[None]:
    """Run the audit shipper (``ehr audit ship``, :mod:`ehr.security.shipper`) next to the
    workers, which then only spool their audit records (``EHR_SECURITY_AUDIT_SHIPPER=process``,
    unless set otherwise); restart it if it dies; stop it after the workers, so its last cycle
    ships their last records. Its own process group: a Ctrl-C meant for the server does not
    stop it before the workers. Not its own session: Linux shares the CPU between sessions
    first (``sched_autogroup``), so in a session of its own its niceness counted for nothing
    against the workers. (Niceness sets its share of contended cores; it does not make a woken
    request preempt it: bench/RESULTS.md, session 9.)"""
    from fhir_api.security import SecuritySettings

    os.environ.setdefault("EHR_SECURITY_AUDIT_SHIPPER", "process")
    if not SecuritySettings().shipped:
        yield
        return
    cmd = audit_shipper_command(os.getpid())
    procs = [subprocess.Popen(cmd, process_group=0)]
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(1.0):
            if procs[-1].poll() is not None:
                print("the audit shipper stopped; starting it again", file=sys.stderr)
                procs.append(subprocess.Popen(cmd, process_group=0))

    watcher = threading.Thread(target=watch, name="audit-shipper-watch", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        stop.set()
        watcher.join()
        procs[-1].terminate()
        try:
            procs[-1].wait(timeout=60)
        except subprocess.TimeoutExpired:
            procs[-1].kill()


def cmd_load(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ehr.loader import iter_files, load_paths

    store = _store()
    store.migrate()
    paths = [Path(p) for p in args.paths]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        print(f"no such file: {', '.join(missing)}", file=sys.stderr)
        return 2
    files = list(iter_files(paths))
    with tqdm(desc="resources", unit=" res", disable=args.quiet) as bar:
        bar.write(f"loading {len(files)} file(s)")
        total = load_paths(store, paths, progress=bar.update)
    print(f"loaded {total} resources")
    _analyze(store)
    _match_patients(store)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from appointments import install as install_appointments
    from appointments.demo import demo_policies, demo_schedules
    from appointments.slots import roll_window
    from ehr.demo import generate_city
    from ehr.loader import load_resources

    store = _store()
    store.migrate()
    key = get_settings().citizen_id_key.encode()
    resources = generate_city(seed=args.seed, citizens=args.citizens, id_key=key)
    if (
        not args.force
        and resources
        and store.exists(resources[0]["resourceType"], resources[0]["id"])
    ):
        print("demo city already loaded (use --force to load it again)")
        _demo_logins(store)
        return 0
    booking = demo_schedules(resources) + demo_policies(resources)
    with tqdm(total=len(resources), desc="demo city", unit=" res", disable=args.quiet) as bar:
        for i in range(0, len(resources), 500):
            chunk = resources[i : i + 500]
            load_resources(store, [(r, None) for r in chunk])
            bar.update(len(chunk))
    svc = install_appointments(store)
    load_resources(store, [(r, None) for r in booking])
    slots = sum(r.created for r in roll_window(svc).values())
    print(
        f"loaded the demo city: {len(resources)} resources (seed {args.seed}), "
        f"{len(booking)} schedules and booking policies, {slots} bookable slots"
    )
    _demo_logins(store)
    _analyze(store)
    _match_patients(store)
    return 0


def _analyze(store: Store) -> None:
    """Refresh PostgreSQL's planner statistics after a bulk load (autovacuum does it only
    later): on a fresh database without them, the search and EMPI candidate queries are planned
    as sequential scans until then."""
    if store.engine.dialect.name != "postgresql":
        return
    with store.engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE")


def _match_patients(store: Store) -> None:
    """With the EMPI on (``EHR_EMPI``), match the Patients just stored without it into golden
    records, as ``ehr serve`` does for every Patient written through it."""
    if not get_settings().empi:
        return
    from ehr.empi.service import backfill
    from ehr.empi.service import install as install_empi

    install_empi(store)
    print(f"regional patient index: {backfill(store)} Patient(s) matched into golden records")


def _demo_logins(store: Store) -> None:
    """The apps' demo accounts (created once) and their fixed passwords."""
    from fhir_api.apps.demo_accounts import ensure_demo_accounts
    from fhir_api.auth import AuthSettings
    from fhir_api.auth.config import account_store

    accounts = ensure_demo_accounts(store, account_store(store.engine, AuthSettings()))
    if accounts:
        print("demo logins for the apps at /app/ (booking, workstation, nurse):")
    for a in accounts:
        print(
            f"  {a.username:<14} {a.password:<14} {a.role:<13} {a.fhir_user}  {a.display_name}"
            f"{'  (' + a.note + ')' if a.note else ''}"
        )
    _demo_ward(store, accounts)


def _demo_ward(store: Store, accounts: list[DemoAccount]) -> None:
    """Inpatients on the demo nurse's ward, for the nurse station (created once)."""
    from fhir_api.apps.demo_ward import ensure_demo_ward

    nurse = next((a for a in accounts if a.role == "nurse"), None)
    citizens = tuple(a.fhir_user for a in accounts if a.role == "citizen")
    ward = ensure_demo_ward(store, nurse, exclude=citizens) if nurse is not None else None
    if ward is not None:
        beds = ", ".join(f"{a.bed_name} {a.name} ({a.mrn})" for a in ward.admissions)
        print(f"demo ward Location/{ward.ward} (demo.nurse): {beds}")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="ehr", description="Regional health-record exchange (FHIR R4)"
    )
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="serve the FHIR API at http://HOST:PORT/fhir")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--log-level", default="info")
    p.add_argument("--access-log", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--no-migrate", action="store_true", help="do not migrate the schema first")
    p.set_defaults(fn=cmd_serve)

    p = sub.add_parser("migrate", help="bring the database schema up to date")
    p.set_defaults(fn=cmd_migrate)

    p = sub.add_parser("load", help="load resources, Bundles or NDJSON from files or folders")
    p.add_argument("paths", nargs="+")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(fn=cmd_load)

    p = sub.add_parser("demo", help="load the deterministic demo city")
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument("--citizens", type=int, default=300)
    p.add_argument("--force", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(fn=cmd_demo)

    from .auth.cli import add_subcommands as auth_commands
    from .cards.cli import add_subcommands as card_commands
    from .empi_cli import add_subcommands as empi_commands
    from .reindex_cli import add_subcommands as reindex_commands
    from .security_cli import add_subcommands as security_commands

    auth_commands(sub)  # ehr users …, ehr clients …, ehr keys …
    card_commands(sub)  # ehr cards …
    empi_commands(sub)  # ehr empi backfill|status
    reindex_commands(sub)  # ehr reindex
    security_commands(sub)  # ehr audit verify|sync, ehr consent rebuild
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.fn(args))
    except FhirError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
