"""The store write hooks of the security layer.

Every write the store makes runs its hooks inside the write transaction, before any row is
written (:class:`ehr.store.WriteHook`). :class:`GuardHooks` puts one hook first and one last in
the store's list: the first checks a write against the current request's
:class:`~ehr.security.policy.Guard` (:data:`ehr.security.context.current_guard`), the last closes
it. A write made *by another hook* while it runs (a booking marking its Slot busy, the EMPI
updating links) happens between the two and is not checked: it is the domain service's own
work, done under its own rules, not the requester's. Outside a request (no guard) nothing is
checked.
"""

from __future__ import annotations

from ehr.store import PendingWrite, Store, WriteContext

from .context import current_guard

__all__ = ["GuardHooks"]

_STACK = "_ehr_security_writes"


class _Open:
    def __init__(self, owner: GuardHooks) -> None:
        self.owner = owner

    def before_write(self, ctx: WriteContext, write: PendingWrite) -> None:
        self.owner.keep_last()
        stack: list[int] = ctx.__dict__.setdefault(_STACK, [])
        if not stack:
            guard = current_guard.get()
            if guard is not None:
                guard.check_write(ctx, write)
        stack.append(id(write))


class _Close:
    def before_write(self, ctx: WriteContext, write: PendingWrite) -> None:
        stack: list[int] = ctx.__dict__.setdefault(_STACK, [])
        while stack and stack.pop() != id(write):
            pass


class GuardHooks:
    """The pair of hooks (see the module docstring)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.first = _Open(self)
        self.last = _Close()

    def keep_last(self) -> None:
        """Keep the closing hook last when others were appended after :meth:`install` (called
        while the store iterates its hooks: moving an element past the current position keeps
        every hook run exactly once)."""
        hooks = self.store.hooks
        if hooks and hooks[-1] is not self.last:
            hooks.remove(self.last)  # type: ignore[arg-type]
            hooks.append(self.last)

    @classmethod
    def install(cls, store: Store) -> GuardHooks:
        for h in store.hooks:
            if isinstance(h, _Open):
                return h.owner
        pair = cls(store)
        store.hooks.insert(0, pair.first)
        store.hooks.append(pair.last)
        return pair
