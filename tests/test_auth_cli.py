"""``ehr users …``, ``ehr clients …`` and ``ehr keys …`` as operations scripts use them: the
client id alone on the first line of ``ehr clients add`` (the secret on the second)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from test_auth_support import client_key

from ehr.accounts import AccountStore
from ehr.settings import get_settings
from ehr.storage.db import make_engine
from fhir_api.auth import AuthSettings
from fhir_api.auth.cli import add_subcommands
from fhir_api.auth.config import account_store

Run = Callable[..., tuple[int, list[str], str]]


@pytest.fixture
def ehr(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Run]:
    """Run ``ehr ARGS`` (the auth subcommands) against the test database; returns
    (exit code, stdout lines, stderr)."""
    monkeypatch.setenv("EHR_DATABASE_URL", db_url)
    monkeypatch.setenv("EHR_AUTH_ARGON2_TIME_COST", "1")  # cheap hashes keep the suite fast
    monkeypatch.setenv("EHR_AUTH_ARGON2_MEMORY_KIB", "64")
    get_settings.cache_clear()
    parser = argparse.ArgumentParser(prog="ehr")
    add_subcommands(parser.add_subparsers(dest="command", required=True))

    def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str], str]:
        capsys.readouterr()
        args = parser.parse_args(list(argv))
        code = int(args.fn(args))
        out = capsys.readouterr()
        return code, out.out.splitlines(), out.err

    yield run
    get_settings.cache_clear()


def test_clients_add_prints_the_id_and_the_secret(
    ehr: Run, db_url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    run = ehr
    code, out, _ = run(
        capsys,
        "clients",
        "add",
        "掌上医院",
        "--scope",
        "launch/patient patient/*.rs openid fhirUser",
        "--public",
        "--redirect-uri",
        "https://app.example.cn/callback",
    )
    assert code == 0 and len(out) == 1 and len(out[0]) == 32
    public_id = out[0]
    code, out, _ = run(
        capsys, "clients", "add", "lab gateway", "--scope", "system/Observation.cru", "--secret"
    )
    assert code == 0 and len(out) == 2
    secret_id, secret = out
    key, jwks = client_key("ES384")
    jwks_file = tmp_path / "terminal.jwks.json"
    jwks_file.write_text(json.dumps(jwks))
    code, out, _ = run(
        capsys,
        "clients",
        "add",
        "counter 1",
        "--scope",
        "system/Patient.rs",
        "--jwks",
        str(jwks_file),
        "--json",
    )
    assert code == 0
    reg = json.loads(out[0])
    assert reg["type"] == "confidential-asymmetric" and reg["grant_types"] == ["client_credentials"]
    assert reg["token_endpoint_auth_method"] == "private_key_jwt" and "client_secret" not in reg

    accounts = AccountStore(db_url)
    pub = accounts.clients.get(public_id)
    assert pub is not None and pub.type == "public" and pub.name == "掌上医院"
    assert pub.grant_types == ("authorization_code", "refresh_token")
    sym = accounts.clients.get(secret_id)
    assert sym is not None and sym.check_secret(secret) and not sym.check_secret(secret + "x")
    code, out, _ = run(capsys, "clients", "list")
    assert {line.split("\t")[0] for line in out} == {public_id, secret_id, reg["client_id"]}
    code, out, _ = run(capsys, "clients", "remove", public_id)
    assert code == 0 and accounts.clients.get(public_id) is None
    accounts.engine.dispose()


def test_clients_add_refuses_inconsistent_registrations(
    ehr: Run, capsys: pytest.CaptureFixture[str]
) -> None:
    run = ehr
    bad = [
        ["x", "--scope", "patient/*.rs"],  # no kind
        ["x", "--scope", "patient/*.rs", "--public"],  # no redirect URI: no grant possible
        [
            "x",
            "--scope",
            "patient/Observation.xyz",
            "--public",
            "--redirect-uri",
            "https://a.cn/cb",
        ],
        ["x", "--scope", "patient/*.rs", "--public", "--redirect-uri", "http://a.cn/cb"],  # http
        ["x", "--scope", "system/*.rs", "--public", "--secret"],
        ["x", "--scope", "system/*.rs", "--jwks-uri", "http://keys.example.cn/jwks"],
    ]
    for argv in bad:
        code, out, err = run(capsys, "clients", "add", *argv)
        assert code == 2 and out == [], argv
        assert err


def test_users_add_list_disable(ehr: Run, db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    run = ehr
    code, out, _ = run(
        capsys,
        "users",
        "add",
        "Zhang.Wei",
        "--role",
        "citizen",
        "--fhir-user",
        "Patient/p1",
        "--password",
        "s3cret-pass",
        "--name",
        "张伟",
    )
    assert code == 0 and len(out) == 1
    code, out, _ = run(
        capsys,
        "users",
        "add",
        "dr.li",
        "--role",
        "practitioner",
        "--fhir-user",
        "Practitioner/d1",
        "--organization",
        "Organization/h1",
        "--practitioner-role",
        "PractitionerRole/r1",
    )
    assert code == 0 and out[1].startswith("password: ")
    generated = out[1].split(": ", 1)[1]
    code, _, err = run(
        capsys,
        "users",
        "add",
        "zhang.wei",
        "--role",
        "citizen",
        "--fhir-user",
        "Patient/p2",
        "--password",
        "x",
    )
    assert code == 2 and "taken" in err
    code, _, err = run(capsys, "users", "add", "w", "--role", "citizen", "--password", "x")
    assert code == 2 and "Patient" in err
    accounts = account_store(make_engine(db_url), AuthSettings())  # the same (cheap) hasher
    assert accounts.users.authenticate("zhang.wei", "s3cret-pass", None).status == "ok"
    assert accounts.users.authenticate("dr.li", generated, None).status == "ok"
    code, out, _ = run(capsys, "users", "list")
    rows = {line.split("\t")[0]: line.split("\t") for line in out}
    assert rows["zhang.wei"][1:4] == ["citizen", "Patient/p1", "-"]
    assert rows["dr.li"][1:4] == ["practitioner", "Practitioner/d1", "Organization/h1"]
    assert run(capsys, "users", "disable", "zhang.wei")[0] == 0
    assert accounts.users.authenticate("zhang.wei", "s3cret-pass", None).status == "invalid"
    assert run(capsys, "users", "disable", "nobody")[0] == 1
    accounts.engine.dispose()


def test_keys_rotate(ehr: Run, db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    run = ehr
    first = run(capsys, "keys", "rotate")[1][0]
    second = run(capsys, "keys", "rotate")[1][0]
    assert first != second
    code, out, _ = run(capsys, "keys", "list")
    assert [line.split("\t")[0] for line in out] == [first, second]
    assert "retired" in out[0] and out[1].endswith("active")
    accounts = AccountStore(db_url)
    assert {k["kid"] for k in accounts.keys.jwks()["keys"]} == {first, second}
    accounts.engine.dispose()
