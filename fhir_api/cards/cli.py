"""``ehr cards …``: issue, revoke and list health cards; the issuer keys. ``fhir_api.cli`` adds
them with :func:`add_subcommands`.

* ``ehr cards issue PATIENT_ID [--kind iso-dep|sun] [--card-key FILE | --new-card-key FILE]
  [--uid HEX] [--replaces CID [--reason R]] [--json]``: prints the card id on the first line and,
  for an ISO-DEP card, the credential (the JWS to write into the card's NDEF file) on the
  second. ``--card-key``: the card's public key (JWK JSON or PEM) as read from the card;
  ``--new-card-key FILE``: make a key pair and write the *private* key to FILE (for an emulated
  or software card). A SUN tag needs ``--uid``; its personalisation keys are printed to stderr
  with ``--sun-keys`` only;
* ``ehr cards revoke CID [--reason lost|stolen|damaged|…]``: at once;
* ``ehr cards list [--patient ID] [--status active|revoked]``;
* ``ehr cards keys`` and ``ehr cards rotate-key``: the issuer keys (public JWKS also at
  ``{root}/.well-known/health-card-jwks.json``).

Every issue and revocation is audited (AuditEvent) like the API's.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["add_subcommands"]


@contextmanager
def _cards() -> Iterator[Any]:
    """The card service on the configured database (``EHR_DATABASE_URL``, ``EHR_CARD_*``)."""
    from ehr.cards.guard import CardIdentifierGuard
    from ehr.cards.service import CardService
    from ehr.settings import get_settings
    from ehr.store import Store

    s = get_settings()
    store = Store(
        s.resolved_database_url(), pool_size=2, statement_timeout_ms=s.statement_timeout_ms
    )
    try:
        store.migrate()
        CardIdentifierGuard.install(store)
        yield CardService.of(store)
    finally:
        store.dispose()


def _when(t: float | None) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M") if t else "-"


def _card_key(args: argparse.Namespace) -> dict[str, Any] | None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from ehr.cards.credential import card_public_jwk

    if args.new_card_key:
        private = ec.generate_private_key(ec.SECP256R1())
        target = Path(args.new_card_key)
        target.write_bytes(
            private.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        target.chmod(0o600)
        print(f"card private key written to {target}", file=sys.stderr)
        return card_public_jwk(private.public_key())
    if args.card_key:
        raw = Path(args.card_key).read_bytes()
        if raw.lstrip().startswith(b"{"):
            return dict(json.loads(raw))
        key = serialization.load_pem_public_key(raw)
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise ValueError("the card key must be an EC P-256 public key")
        return card_public_jwk(key)
    return None


def cmd_issue(args: argparse.Namespace) -> int:
    from ehr.cards.issuing import issue_card

    jwk = _card_key(args)
    if args.kind == "iso-dep" and jwk is None:
        print("an ISO-DEP card needs --card-key FILE (or --new-card-key FILE)", file=sys.stderr)
        return 2
    with _cards() as cards:
        issued = issue_card(
            cards.store,
            args.patient_id,
            kind=args.kind,
            card_public_jwk=jwk,
            uid=args.uid,
            replaces=args.replaces,
            reason=args.reason,
            cards=cards,
        )
        meta_read_key = cards.sun_keys().meta_read_key if issued.uid else b""
    if args.json:
        print(json.dumps(issued.as_json(), ensure_ascii=False))
    else:
        print(issued.cid)
        if issued.credential:
            print(issued.credential)
    if args.sun_keys and issued.sun_file_read_key is not None:
        print(f"K_SDMMetaRead {meta_read_key.hex()}", file=sys.stderr)
        print(f"K_SDMFileRead {issued.sun_file_read_key.hex()}", file=sys.stderr)
    print(f"issued {issued.kind} card {issued.cid} to Patient/{issued.patient_id}", file=sys.stderr)
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    from ehr.cards.issuing import revoke_card

    with _cards() as cards:
        before = cards.registry.get(args.cid)
        if before is None:
            print(f"no card {args.cid}", file=sys.stderr)
            return 1
        card = revoke_card(cards.store, args.cid, args.reason, cards=cards)
    if not before.active:
        print(f"card {card.cid} was revoked already ({_when(card.revoked)})", file=sys.stderr)
    else:
        print(f"revoked card {card.cid} of Patient/{card.patient_id} ({args.reason})")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    with _cards() as cards:
        rows = (
            cards.registry.of_patient(args.patient)
            if args.patient
            else cards.registry.all(status=args.status)
        )
    for c in rows:
        if args.status and c.status != args.status:
            continue
        print(
            "\t".join(
                [
                    c.cid,
                    f"Patient/{c.patient_id}",
                    c.kind,
                    c.status,
                    _when(c.issued),
                    _when(c.revoked) + (f" {c.revoke_reason}" if c.revoke_reason else ""),
                    c.replaced_by or "-",
                ]
            )
        )
    return 0


def cmd_keys(_: argparse.Namespace) -> int:
    with _cards() as cards:
        keys = cards.issuer_keys.listing()
    for k in keys:
        state = f"retired {_when(k.retired)}" if k.retired else "active"
        print("\t".join([k.kid, _when(k.created), state]))
    return 0


def cmd_rotate_key(_: argparse.Namespace) -> int:
    with _cards() as cards:
        print(cards.issuer_keys.rotate())
    return 0


def _guard(fn: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        from ehr.errors import FhirError

        try:
            return int(fn(args))
        except (ValueError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except FhirError as exc:
            print(f"error: {exc.diagnostics}", file=sys.stderr)
            return 1

    return run


def add_subcommands(subparsers: Any) -> None:
    cards = subparsers.add_parser("cards", help="health one-cards: issue, revoke, list")
    cs = cards.add_subparsers(dest="cards_command", required=True)

    p = cs.add_parser("issue", help="issue a card to a patient; prints its id (and credential)")
    p.add_argument("patient_id")
    p.add_argument("--kind", choices=["iso-dep", "sun"], default="iso-dep")
    p.add_argument("--card-key", metavar="FILE", help="the card's public key (JWK JSON or PEM)")
    p.add_argument("--new-card-key", metavar="FILE", help="make a card key pair (private -> FILE)")
    p.add_argument("--uid", help="a SUN tag's 7-byte UID (hex)")
    p.add_argument("--replaces", metavar="CID", help="the card this one replaces (revoked now)")
    p.add_argument("--reason", default="replaced", help="why the replaced card is revoked")
    p.add_argument("--sun-keys", action="store_true", help="print the tag's keys to stderr")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=_guard(cmd_issue))

    p = cs.add_parser("revoke", help="revoke a card at once (lost, stolen, damaged ...)")
    p.add_argument("cid")
    p.add_argument("--reason", default="lost")
    p.set_defaults(fn=_guard(cmd_revoke))

    p = cs.add_parser("list", help="list cards")
    p.add_argument("--patient", metavar="ID")
    p.add_argument("--status", choices=["active", "revoked"])
    p.set_defaults(fn=_guard(cmd_list))

    p = cs.add_parser("keys", help="list the card issuer keys")
    p.set_defaults(fn=_guard(cmd_keys))
    p = cs.add_parser("rotate-key", help="make a new issuer key (old ones stay published)")
    p.set_defaults(fn=_guard(cmd_rotate_key))
