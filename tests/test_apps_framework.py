"""The apps' framework without a browser: /app/ files and their headers, the apps' OAuth
clients (idempotent registration, loopback redirect URIs with any port), the demo logins."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from test_api_support import settings
from test_auth_support import FAST_PASSWORDS

from ehr.store import Store
from fhir_api.apps import APP_CLIENTS, CSP, ensure_clients, redirect_uris
from fhir_api.auth import AuthSettings
from fhir_api.auth.config import account_store
from fhir_api.auth.models import OAuthClient
from fhir_api.security import SecuritySettings, create_secure_app


def _client(store: Store, tmp_path: Path) -> TestClient:
    app = create_secure_app(store, settings(), SecuritySettings(spool_dir=tmp_path / "spool"))
    return TestClient(app, base_url="http://127.0.0.1:8123")


def test_pages_are_served_with_a_strict_csp_and_revalidation(store: Store, tmp_path: Path) -> None:
    with _client(store, tmp_path) as tc:
        r = tc.get("/app/common/smart.js")
        assert r.status_code == 200
        assert r.headers["content-type"].startswith(("text/javascript", "application/javascript"))
        assert r.headers["content-security-policy"] == CSP
        assert "script-src 'self'" in CSP and "unsafe-inline" not in CSP
        assert r.headers["cache-control"] == "no-cache"
        assert r.headers["referrer-policy"] == "no-referrer"
        assert "export async function login" in r.text
        again = tc.get("/app/common/smart.js", headers={"If-None-Match": r.headers["etag"]})
        assert again.status_code == 304
        assert again.headers["content-security-policy"] == CSP
        # a folder serves its index.html; no token is needed for the pages themselves
        page = tc.get("/app/booking/")
        assert page.status_code == 200 and "<html" in page.text
        assert page.headers["content-security-policy"] == CSP
        missing = tc.get("/app/booking/nothing-here.js")
        assert missing.status_code == 404
        assert missing.headers["content-security-policy"] == CSP
        # the FHIR API still wants a token
        assert tc.get("/fhir/Patient").status_code == 401


def test_pages_have_no_inline_script_or_style() -> None:
    static = Path(__file__).resolve().parent.parent / "fhir_api" / "apps" / "static"
    pages = list(static.rglob("*.html"))
    assert pages
    for html in pages:
        text = html.read_text(encoding="utf-8")
        for tag in text.split("<script")[1:]:
            assert "src=" in tag.split(">", 1)[0], f"inline script in {html}"
        assert "<style" not in text and " style=" not in text, f"inline style in {html}"
        assert " on" not in text.replace(" one", "").split("<body", 1)[-1].split("=")[0]


def test_app_clients_are_registered_once_and_kept_up_to_date(store: Store, tmp_path: Path) -> None:
    accounts = account_store(store.engine, AuthSettings(), FAST_PASSWORDS)
    _client(store, tmp_path)  # create_app registers them
    for app in APP_CLIENTS:
        c = accounts.clients.get(app.client_id)
        assert c is not None and c.type == "public"
        assert "authorization_code" in c.grant_types
        assert list(c.redirect_uris) == redirect_uris(app.folder)
    assert ensure_clients(accounts) == []  # idempotent
    # EHR_BASE_URL adds its origin (and only that one)
    changed = ensure_clients(accounts, "https://ehr.example.cn/fhir")
    assert changed == [a.client_id for a in APP_CLIENTS]
    booking = accounts.clients.get("booking-app")
    assert booking is not None
    assert "https://ehr.example.cn/app/booking/" in booking.redirect_uris


def test_loopback_redirect_uris_match_with_any_port_and_nothing_else(
    store: Store, tmp_path: Path
) -> None:
    accounts = account_store(store.engine, AuthSettings(), FAST_PASSWORDS)
    ensure_clients(accounts, "https://ehr.example.cn/fhir")
    record = accounts.clients.get("booking-app")
    assert record is not None
    c = OAuthClient(record)
    for ok in (
        "http://127.0.0.1:8080/app/booking/",
        "http://127.0.0.1:51234/app/booking/",
        "http://localhost:3000/app/booking/",
        "http://[::1]:8080/app/booking/",
        "https://ehr.example.cn/app/booking/",
    ):
        assert c.check_redirect_uri(ok), ok
    for bad in (
        "http://127.0.0.1:8080/app/workstation/",  # another app's page
        "http://127.0.0.1:8080/app/booking/?x=1",
        "https://127.0.0.1:8080/app/booking/",  # not the registered scheme
        "http://127.0.0.2:8080/app/booking/",
        "http://evil.example:8080/app/booking/",
        "https://ehr.example.cn:8443/app/booking/",  # a port counts off loopback
        "http://user@127.0.0.1:8080/app/booking/",
        "http://127.0.0.1:99999/app/booking/",
        "http://127.0.0.1:8080/app/booking/#frag",
    ):
        assert not c.check_redirect_uri(bad), bad
