"""``ehr reindex``: rebuild the search index with a progress bar (see :mod:`ehr.search.reindex`).

    ehr reindex                      # every resource
    ehr reindex --type Observation   # one type
    ehr reindex --param URL          # the types a (custom) SearchParameter applies to
    ehr reindex --resume             # continue the latest unfinished job of that scope
    ehr reindex --job ID             # continue that job
    ehr reindex --list               # recent jobs and their progress
    ehr reindex --chunk 1000         # resources per transaction (default 500)

Interrupting it (Ctrl-C) leaves the job paused after its last committed chunk; ``--resume``
continues from there. :func:`add_subcommands` adds the command to the ``ehr`` parser.
"""

from __future__ import annotations

import argparse
from typing import Any

from ehr.search.reindex import (
    DEFAULT_CHUNK,
    ReindexStatus,
    create_job,
    find_resumable,
    job_status,
    list_jobs,
    run_job,
)
from ehr.store import Store

__all__ = ["add_subcommands", "cmd_reindex"]


def _describe(job: ReindexStatus) -> str:
    scope = ", ".join(job.rtypes) if job.rtypes else "all types"
    if job.param_url:
        scope += f" (for {job.param_url})"
    total = "?" if job.total is None else str(job.total)
    rate = f", {job.rate:,.0f}/s" if job.rate else ""
    return f"{job.id}  {job.status:<9} {job.done}/{total}{rate}  {scope}"


def cmd_reindex(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    store = Store.from_settings()
    store.migrate()
    if args.list:
        for listed in list_jobs(store):
            print(_describe(listed))
        return 0
    job: ReindexStatus | None
    if args.job:
        job = job_status(store, args.job)
    elif args.resume:
        job = find_resumable(store, rtype=args.rtype, param_url=args.param_url)
        if job is None:
            print("no unfinished reindex of that scope: starting a new one")
    else:
        job = None
        pending = find_resumable(store, rtype=args.rtype, param_url=args.param_url)
        if pending is not None:
            print(f"note: job {pending.id} of the same scope is unfinished (--resume continues it)")
    if job is None:
        job = create_job(store, rtype=args.rtype, param_url=args.param_url, chunk=args.chunk)
    if job.status not in ("queued", "running", "paused", "failed"):
        print(_describe(job))
        return 0
    bar = tqdm(
        total=job.total, initial=job.done, desc="reindex", unit=" res", disable=args.quiet,
        dynamic_ncols=True,
    )  # fmt: skip

    def progress(status: ReindexStatus) -> None:
        if status.total is not None and status.done > (bar.total or 0):
            bar.total = status.done
        bar.update(status.done - bar.n)
        if status.rate:
            bar.set_postfix(rate=f"{status.rate:,.0f}/s")

    try:
        final = run_job(store, job.id, progress=progress)
    except KeyboardInterrupt:
        bar.close()
        print(f"\ninterrupted: job {job.id} is paused; `ehr reindex --resume` continues it")
        return 130
    finally:
        store.dispose()
    bar.close()
    print(_describe(final))
    return 0 if final.status == "done" else 1


def add_subcommands(subparsers: Any) -> None:
    """Add ``reindex`` to the ``ehr`` command's subparsers."""
    p = subparsers.add_parser(
        "reindex", help="rebuild the search index (resumable, with progress)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument("--type", dest="rtype", metavar="TYPE", help="only this resource type")
    p.add_argument(
        "--param", dest="param_url", metavar="URL",
        help="only the types this SearchParameter (by url) applies to",
    )  # fmt: skip
    p.add_argument(
        "--resume", action="store_true", help="continue the unfinished job of this scope"
    )
    p.add_argument("--job", metavar="ID", help="continue this job")
    p.add_argument("--chunk", type=int, default=DEFAULT_CHUNK, help="resources per transaction")
    p.add_argument("--list", action="store_true", help="show recent jobs and exit")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(fn=cmd_reindex)
