"""Handing the core over: how the audit shipper keeps out of the way of requests.

A request woken on a core where the (niced) shipper is busy may wait for it until the shipper
blocks or the next scheduler tick, up to 4 ms, however nice the shipper is. (Most likely
because the scheduler, EEVDF, runs a woken task at once only when it is *eligible*, and a
worker that has just served a request often is not: a woken task that had done no work did
not wait.) Neither niceness, nor ``SCHED_IDLE``, nor a shorter time slice
(``sched_attr.sched_runtime``) stopped those waits (``bench/RESULTS.md``, sessions 9-11); a
``sched_yield`` every few records does: the scheduler then picks the waiting request, and when
no one waits the call costs a system call.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import TypeVar

__all__ = ["paced"]

T = TypeVar("T")


def paced(items: Iterable[T], every: int) -> Iterable[T]:
    """``items``, yielding the core (``sched_yield``) after every ``every`` of them (0: never:
    ``items`` themselves, so a caller that never yields pays nothing)."""
    return _yielding(items, every) if every > 0 else items


def _yielding(items: Iterable[T], every: int) -> Iterator[T]:
    for i, item in enumerate(items, 1):
        yield item
        if not i % every:
            os.sched_yield()
