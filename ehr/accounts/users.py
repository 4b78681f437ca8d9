"""Users and password logins, rate-limited per account and per client IP.

Roles: ``citizen`` (linked to their Patient), ``practitioner`` and ``nurse`` (linked to a
Practitioner, their PractitionerRole and Organization), ``admin``.

Login throttling (OWASP "Blocking Brute Force Attacks"):

* per account: after ``max_failures`` consecutive failures the account is locked for
  ``lockout_s``; a success resets the count. Unknown user names are counted the same way (in
  ``login_throttle`` under ``user:<name>``), so a lockout does not reveal whether a name exists;
* per client IP: more than ``max_ip_failures`` failures within ``ip_window_s`` lock that IP out
  for ``lockout_s``; successes do not reset it (one valid account cannot launder guesses).

A locked login is refused without checking the password. Every check runs the argon2
verification (on a dummy hash for an unknown name), so timing shows nothing either.
"""

from __future__ import annotations

import unicodedata
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from ._db import US, now_us, read_tx, write_tx
from .passwords import Passwords
from .tables import login_throttle, users

__all__ = ["ROLES", "LoginPolicy", "LoginResult", "User", "Users", "normalize_username"]

ROLES = ("citizen", "practitioner", "nurse", "admin")


def normalize_username(name: str) -> str:
    return unicodedata.normalize("NFKC", name).strip().casefold()


@dataclass(frozen=True)
class User:
    id: str
    username: str
    role: str
    fhir_user: str | None = None
    practitioner_role: str | None = None
    organization: str | None = None
    display_name: str | None = None
    locale: str | None = None
    disabled: bool = False
    failed_logins: int = 0
    locked_until: int | None = None
    last_login: int | None = None

    @property
    def patient_id(self) -> str | None:
        """The Patient id of a citizen (``fhir_user`` ``Patient/x``)."""
        if self.fhir_user and self.fhir_user.startswith("Patient/"):
            return self.fhir_user.split("/", 1)[1]
        return None


@dataclass(frozen=True)
class LoginPolicy:
    max_failures: int = 5
    lockout_s: int = 900
    max_ip_failures: int = 20
    ip_window_s: int = 900


@dataclass(frozen=True)
class LoginResult:
    """``status`` is ok | invalid | locked; ``user`` is set only when ok."""

    status: str
    user: User | None = None
    retry_after_s: int = 0


def _user(row: Any) -> User:
    return User(
        id=row.id,
        username=row.username,
        role=row.role,
        fhir_user=row.fhir_user,
        practitioner_role=row.practitioner_role,
        organization=row.organization,
        display_name=row.display_name,
        locale=row.locale,
        disabled=bool(row.disabled),
        failed_logins=row.failed_logins,
        locked_until=row.locked_until,
        last_login=row.last_login,
    )


class Users:
    def __init__(
        self, engine: Engine, passwords: Passwords, policy: LoginPolicy | None = None
    ) -> None:
        self.engine = engine
        self.passwords = passwords
        self.policy = policy or LoginPolicy()

    # -- management --------------------------------------------------------------------------
    def add(
        self,
        username: str,
        *,
        role: str,
        password: str | None = None,
        fhir_user: str | None = None,
        practitioner_role: str | None = None,
        organization: str | None = None,
        display_name: str | None = None,
        locale: str | None = "zh-CN",
    ) -> User:
        """Create a user; ValueError for a bad role/reference or a name already taken."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        name = normalize_username(username)
        if not name or len(name) > 150 or any(c.isspace() for c in name):
            raise ValueError("user name must be 1-150 characters without spaces")
        for label, ref, rtypes in (
            ("fhir-user", fhir_user, ("Patient", "Practitioner", "RelatedPerson", "Person")),
            ("practitioner-role", practitioner_role, ("PractitionerRole",)),
            ("organization", organization, ("Organization",)),
        ):
            if ref is not None and (
                ref.count("/") != 1 or ref.split("/")[0] not in rtypes or not ref.split("/")[1]
            ):
                raise ValueError(f"--{label} must look like {rtypes[0]}/<id>, not {ref!r}")
        if role == "citizen" and not (fhir_user or "").startswith("Patient/"):
            raise ValueError("a citizen must be linked to their Patient (--fhir-user Patient/x)")
        user_id = str(uuid.uuid4())
        row: dict[str, Any] = {
            "id": user_id,
            "username": name,
            "password_hash": self.passwords.hash(password) if password else None,
            "role": role,
            "fhir_user": fhir_user,
            "practitioner_role": practitioner_role,
            "organization": organization,
            "display_name": display_name,
            "locale": locale,
            "disabled": False,
            "failed_logins": 0,
            "created": now_us(),
        }
        try:
            with write_tx(self.engine) as conn:
                conn.execute(insert(users).values(**row))
        except IntegrityError as exc:
            raise ValueError(f"user name {name!r} is taken") from exc
        found = self.get(user_id)
        assert found is not None
        return found

    def get(self, user_id: str) -> User | None:
        with read_tx(self.engine) as conn:
            row = conn.execute(select(users).where(users.c.id == user_id)).first()
        return _user(row) if row else None

    def by_username(self, username: str) -> User | None:
        with read_tx(self.engine) as conn:
            row = conn.execute(
                select(users).where(users.c.username == normalize_username(username))
            ).first()
        return _user(row) if row else None

    def list(self) -> Sequence[User]:
        with read_tx(self.engine) as conn:
            rows = conn.execute(select(users).order_by(users.c.username)).all()
        return [_user(r) for r in rows]

    def set_disabled(self, username: str, disabled: bool = True) -> bool:
        with write_tx(self.engine) as conn:
            res = conn.execute(
                update(users)
                .where(users.c.username == normalize_username(username))
                .values(disabled=disabled)
            )
        return bool(res.rowcount)

    def set_password(self, username: str, password: str) -> bool:
        with write_tx(self.engine) as conn:
            res = conn.execute(
                update(users)
                .where(users.c.username == normalize_username(username))
                .values(
                    password_hash=self.passwords.hash(password), failed_logins=0, locked_until=None
                )
            )
        return bool(res.rowcount)

    # -- login -------------------------------------------------------------------------------
    def authenticate(self, username: str, password: str, ip: str | None) -> LoginResult:
        """Check a password login under the throttling rules (see the module docstring)."""
        now = now_us()
        name = normalize_username(username)[:150]
        with read_tx(self.engine) as conn:
            row = conn.execute(select(users).where(users.c.username == name)).first()
            locked = [self._locked_until(conn, f"ip:{ip}", now)] if ip else []
            if row is None:
                locked.append(self._locked_until(conn, f"user:{name}", now))
            elif row.locked_until and row.locked_until > now:
                locked.append(row.locked_until)
        until = max((t for t in locked if t), default=0)
        ok = self.passwords.verify(row.password_hash if row is not None else None, password)
        if until > now:
            return LoginResult("locked", retry_after_s=max(1, (until - now) // US))
        if ok and row is not None and not row.disabled:
            with write_tx(self.engine) as conn:
                values: dict[str, Any] = {
                    "failed_logins": 0,
                    "locked_until": None,
                    "last_login": now,
                }
                if self.passwords.needs_rehash(row.password_hash):
                    values["password_hash"] = self.passwords.hash(password)
                conn.execute(update(users).where(users.c.id == row.id).values(**values))
            user = self.get(row.id)
            assert user is not None
            return LoginResult("ok", user)
        self._record_failure(row.id if row is not None else None, name, ip, now)
        return LoginResult("invalid")

    def _locked_until(self, conn: Connection, key: str, now: int) -> int | None:
        row = conn.execute(
            select(login_throttle.c.locked_until).where(login_throttle.c.key == key)
        ).first()
        return row.locked_until if row and row.locked_until and row.locked_until > now else None

    def _record_failure(self, user_id: str | None, name: str, ip: str | None, now: int) -> None:
        p = self.policy
        lock = now + p.lockout_s * US
        with write_tx(self.engine) as conn:
            if user_id is not None:
                conn.execute(
                    update(users)
                    .where(users.c.id == user_id)
                    .values(failed_logins=users.c.failed_logins + 1)
                )
                count = conn.execute(
                    select(users.c.failed_logins).where(users.c.id == user_id)
                ).scalar_one()
                if count >= p.max_failures:
                    conn.execute(
                        update(users)
                        .where(users.c.id == user_id)
                        .values(locked_until=lock, failed_logins=0)
                    )
            else:
                self._bump(conn, f"user:{name}", now, 10**12, p.max_failures, lock)
            if ip:
                self._bump(conn, f"ip:{ip}", now, p.ip_window_s * US, p.max_ip_failures, lock)

    @staticmethod
    def _bump(conn: Connection, key: str, now: int, window: int, limit: int, lock: int) -> None:
        t = login_throttle
        row = conn.execute(select(t).where(t.c.key == key)).first()
        if row is None:
            try:
                with conn.begin_nested():
                    conn.execute(insert(t).values(key=key, failures=0, window_start=now))
            except IntegrityError:
                pass
            row = conn.execute(select(t).where(t.c.key == key)).one()
        failures = row.failures + 1
        start = row.window_start
        if now - start > window:
            failures, start = 1, now
        values: dict[str, Any] = {"failures": failures, "window_start": start}
        if failures >= limit:
            values.update(locked_until=lock, failures=0, window_start=now)
        conn.execute(update(t).where(t.c.key == key).values(**values))
