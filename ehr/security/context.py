"""The security decision of the request being served, for code that runs deep inside it.

The HTTP layer sets :data:`current_guard` (and :data:`ehr.search.engine.ambient_restriction`)
once a request is authorized; the store's write hooks and conditional matches read them, in
whatever worker thread the store call runs (context variables follow ``anyio.to_thread``).
Writes the server makes on its own behalf (audit, break-glass notices) run :func:`unguarded`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from ehr.search.engine import ambient_restriction

__all__ = ["current_guard", "unguarded"]

#: the :class:`ehr.security.guard.Guard` of the current request (None: no HTTP request, e.g. the
#: command line, a loader, a background worker: nothing is enforced there)
current_guard: ContextVar[Any] = ContextVar("current_guard", default=None)


@contextmanager
def unguarded() -> Iterator[None]:
    """Run the server's own work (not the requester's) without the request's restrictions."""
    g = current_guard.set(None)
    a = ambient_restriction.set(None)
    try:
        yield
    finally:
        ambient_restriction.reset(a)
        current_guard.reset(g)
