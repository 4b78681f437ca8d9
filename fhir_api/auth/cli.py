"""``ehr users …``, ``ehr clients …`` and ``ehr keys …``: manage who may log in, which apps may
ask for tokens, and our signing keys. ``fhir_api.cli`` adds them with :func:`add_subcommands`.

Operations scripts rely on this interface; keep it stable:

* ``ehr users add USERNAME --role citizen|practitioner|nurse|admin [--fhir-user Patient/x]
  [--practitioner-role PractitionerRole/r] [--organization Organization/o] [--name NAME]
  [--locale zh-CN] [--password PW | --password -]`` (``-`` reads it from stdin; without
  ``--password`` a random one is made and printed);
* ``ehr users list``, ``ehr users disable USERNAME``, ``ehr users enable USERNAME``,
  ``ehr users passwd USERNAME [--password PW | -]``;
* ``ehr clients add NAME --scope "…" [--public] [--redirect-uri URI …] [--launch-uri URI …]
  [--jwks FILE | --jwks-uri URL] [--secret] [--grant-type G …] [--json]`` prints the client id
  on the first line and, for ``--secret``, the secret on the second (shown only this once);
* ``ehr clients list``, ``ehr clients remove CLIENT_ID``;
* ``ehr keys list``, ``ehr keys rotate``.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_subcommands"]


def _accounts() -> Any:
    from ehr.settings import get_settings
    from ehr.store import Store

    from .config import AuthSettings, account_store

    s = get_settings()
    store = Store(
        s.resolved_database_url(), pool_size=2, statement_timeout_ms=s.statement_timeout_ms
    )
    store.migrate()
    return account_store(store.engine, AuthSettings())


def _password(value: str | None) -> tuple[str, bool]:
    """(password, generated)."""
    if value == "-":
        line = sys.stdin.readline().rstrip("\n")
        if not line:
            raise ValueError("no password on standard input")
        return line, False
    if value:
        return value, False
    return secrets.token_urlsafe(12), True


def _when(us: int | None) -> str:
    from ehr.search.dates import us_to_instant

    return us_to_instant(us)[:19] if us else "-"


# -- users -------------------------------------------------------------------------------------
def cmd_users_add(args: argparse.Namespace) -> int:
    password, generated = _password(args.password)
    user = _accounts().users.add(
        args.username,
        role=args.role,
        password=password,
        fhir_user=args.fhir_user,
        practitioner_role=args.practitioner_role,
        organization=args.organization,
        display_name=args.name,
        locale=args.locale,
    )
    print(user.id)
    if generated:
        print(f"password: {password}")
    print(f"added {user.role} {user.username}", file=sys.stderr)
    return 0


def cmd_users_list(_: argparse.Namespace) -> int:
    for u in _accounts().users.list():
        state = "disabled" if u.disabled else ("locked" if u.locked_until else "active")
        print(
            "\t".join(
                [
                    u.username,
                    u.role,
                    u.fhir_user or "-",
                    u.organization or "-",
                    state,
                    _when(u.last_login),
                ]
            )
        )
    return 0


def _set_disabled(args: argparse.Namespace, disabled: bool) -> int:
    if not _accounts().users.set_disabled(args.username, disabled):
        print(f"no user {args.username!r}", file=sys.stderr)
        return 1
    print(f"{'disabled' if disabled else 'enabled'} {args.username}")
    return 0


def cmd_users_passwd(args: argparse.Namespace) -> int:
    password, generated = _password(args.password)
    if not _accounts().users.set_password(args.username, password):
        print(f"no user {args.username!r}", file=sys.stderr)
        return 1
    if generated:
        print(f"password: {password}")
    return 0


# -- clients -----------------------------------------------------------------------------------
def cmd_clients_add(args: argparse.Namespace) -> int:
    kinds = [bool(args.public), bool(args.secret), bool(args.jwks or args.jwks_uri)]
    if sum(kinds) != 1:
        print(
            "choose one kind of client: --public, --secret, or --jwks FILE / --jwks-uri URL",
            file=sys.stderr,
        )
        return 2
    client_type = (
        "public"
        if args.public
        else "confidential-symmetric"
        if args.secret
        else "confidential-asymmetric"
    )
    jwks = json.loads(Path(args.jwks).read_text()) if args.jwks else None
    new = _accounts().clients.add(
        args.name,
        scopes=args.scope,
        client_type=client_type,
        redirect_uris=args.redirect_uri or [],
        jwks=jwks,
        jwks_uri=args.jwks_uri,
        grant_types=args.grant_type or None,
        launch_uris=args.launch_uri or [],
    )
    c = new.client
    if args.json:
        out = {
            "client_id": c.client_id,
            "name": c.name,
            "type": c.type,
            "scope": c.scopes,
            "grant_types": list(c.grant_types),
            "redirect_uris": list(c.redirect_uris),
            "token_endpoint_auth_method": c.auth_method,
        }
        if new.secret:
            out["client_secret"] = new.secret
        print(json.dumps(out, ensure_ascii=False))
    else:
        print(c.client_id)
        if new.secret:
            print(new.secret)
    print(f"registered {c.type} client {c.name!r} ({' '.join(c.grant_types)})", file=sys.stderr)
    return 0


def cmd_clients_list(_: argparse.Namespace) -> int:
    for c in _accounts().clients.list():
        print("\t".join([c.client_id, c.name, c.type, " ".join(c.grant_types), c.scopes]))
    return 0


def cmd_clients_remove(args: argparse.Namespace) -> int:
    if not _accounts().clients.remove(args.client_id):
        print(f"no client {args.client_id!r}", file=sys.stderr)
        return 1
    print(f"removed {args.client_id}")
    return 0


# -- keys --------------------------------------------------------------------------------------
def cmd_keys_list(_: argparse.Namespace) -> int:
    for k in _accounts().keys.list():
        print(
            "\t".join(
                [
                    k.kid,
                    k.alg,
                    _when(k.created),
                    "retired " + _when(k.retired) if k.retired else "active",
                ]
            )
        )
    return 0


def cmd_keys_rotate(_: argparse.Namespace) -> int:
    kid = _accounts().keys.rotate()
    print(kid)
    return 0


def _guard(fn: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            return int(fn(args))
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2

    return run


def add_subcommands(subparsers: Any) -> None:
    """Add ``users``, ``clients`` and ``keys`` to the ``ehr`` command's subparsers."""
    users = subparsers.add_parser("users", help="manage users who log in")
    us = users.add_subparsers(dest="users_command", required=True)
    p = us.add_parser("add", help="add a user")
    p.add_argument("username")
    p.add_argument("--role", required=True, choices=["citizen", "practitioner", "nurse", "admin"])
    p.add_argument("--fhir-user", help="Patient/x for a citizen, Practitioner/y for a clinician")
    p.add_argument("--practitioner-role", help="PractitionerRole/r")
    p.add_argument("--organization", help="Organization/o")
    p.add_argument("--name", help="display name")
    p.add_argument("--locale", default="zh-CN")
    p.add_argument("--password", help="the password, or - to read it from stdin")
    p.set_defaults(fn=_guard(cmd_users_add))
    p = us.add_parser("list", help="list users")
    p.set_defaults(fn=_guard(cmd_users_list))
    p = us.add_parser("disable", help="disable a user (ends their sessions)")
    p.add_argument("username")
    p.set_defaults(fn=_guard(lambda a: _set_disabled(a, True)))
    p = us.add_parser("enable", help="enable a disabled user")
    p.add_argument("username")
    p.set_defaults(fn=_guard(lambda a: _set_disabled(a, False)))
    p = us.add_parser("passwd", help="set a user's password")
    p.add_argument("username")
    p.add_argument("--password", help="the password, or - to read it from stdin")
    p.set_defaults(fn=_guard(cmd_users_passwd))

    clients = subparsers.add_parser("clients", help="manage OAuth clients (apps, services)")
    cs = clients.add_subparsers(dest="clients_command", required=True)
    p = cs.add_parser("add", help="register a client; prints its id (and secret)")
    p.add_argument("name")
    p.add_argument(
        "--scope", required=True, help='allowed scopes, e.g. "launch/patient patient/*.rs"'
    )
    p.add_argument("--public", action="store_true", help="a public app (PKCE, no secret)")
    p.add_argument("--secret", action="store_true", help="confidential with a client secret")
    p.add_argument("--jwks", metavar="FILE", help="confidential with these public keys (JWKS)")
    p.add_argument("--jwks-uri", metavar="URL", help="confidential with keys at this URL")
    p.add_argument("--redirect-uri", action="append", metavar="URI")
    p.add_argument("--launch-uri", action="append", metavar="URI")
    p.add_argument(
        "--grant-type",
        action="append",
        choices=["authorization_code", "refresh_token", "client_credentials"],
    )
    p.add_argument("--json", action="store_true", help="print the registration as JSON")
    p.set_defaults(fn=_guard(cmd_clients_add))
    p = cs.add_parser("list", help="list clients")
    p.set_defaults(fn=_guard(cmd_clients_list))
    p = cs.add_parser("remove", help="remove a client and revoke its refresh tokens")
    p.add_argument("client_id")
    p.set_defaults(fn=_guard(cmd_clients_remove))

    keys = subparsers.add_parser("keys", help="our token signing keys")
    ks = keys.add_subparsers(dest="keys_command", required=True)
    p = ks.add_parser("list", help="list signing keys")
    p.set_defaults(fn=_guard(cmd_keys_list))
    p = ks.add_parser(
        "rotate", help="make a new signing key; old ones stay published until their tokens expire"
    )
    p.set_defaults(fn=_guard(cmd_keys_rotate))
