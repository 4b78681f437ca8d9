"""Helpers for the end-to-end browser tests (no tests here): the secured app on a real uvicorn
socket, a small demo city with the apps' demo logins, and Playwright driving Debian's Chromium.

    import pytest
    import e2e_support
    from e2e_support import E2E, sign_in
    e2e = e2e_support.e2e  # (and e2e_template): the fixtures, by name

    pytestmark = pytest.mark.e2e

    def test_something(e2e: E2E) -> None:
        page = e2e.page()                       # a phone-sized page (390 x 844, zh-CN)
        page.goto(e2e.url("/app/booking/"))
        sign_in(page, "demo.citizen")
        e2e.shot(page, "booking-home")          # test-artifacts/e2e/<test>-booking-home.png
        e2e.api("GET", "Appointment?patient=...", token=e2e.service_token())  # cross-check

The browser is ``/usr/bin/chromium`` (``EHR_CHROMIUM`` overrides it), never one downloaded by
``playwright install``. Without it, the tests are skipped with a loud reason, except under
``CI=true`` where they fail (``.ci/run`` installs Debian's ``chromium``).

The demo world: :func:`ehr.demo.generate_city` with a few citizens, its schedules and booking
policies, released slots, and :func:`fhir_api.apps.demo_accounts.ensure_demo_accounts`. It is
built once per test session (per xdist worker) into a SQLite file that every test copies, so a
test starts from the same state in well under a second. ``E2E_DATABASE=postgresql`` runs the
tests on PostgreSQL instead (the suite's test database, emptied and seeded for each test);
``e2e_world(db_url=…)`` seeds any database.

Every page's console errors and uncaught exceptions (a CSP violation is one) are collected in
``e2e.errors``; the fixture fails the test if any is left at the end (``e2e.errors.clear()`` to
accept expected ones).
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from test_api_support import free_port, settings
from test_auth_support import FAST_PASSWORDS

from ehr.store import Store
from fhir_api.apps.demo_accounts import DemoAccount, ensure_demo_accounts
from fhir_api.auth import AuthSettings
from fhir_api.auth.config import account_store
from fhir_api.auth.service_client import service_token
from fhir_api.security import SecuritySettings, create_secure_app

__all__ = [
    "CHROMIUM",
    "CHROMIUM_ARGS",
    "E2E",
    "PHONE",
    "TABLET",
    "e2e",
    "e2e_template",
    "live_server",
    "require_chromium",
    "seed_demo",
    "sign_in",
]

CHROMIUM = os.environ.get("EHR_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PHONE = {"width": 390, "height": 844}
TABLET = {"width": 1024, "height": 768}
DESKTOP = {"width": 1366, "height": 900}
ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(os.environ.get("E2E_ARTIFACTS", ROOT / "test-artifacts" / "e2e"))
#: generous waits: the CI machine is small and shared (a timing is never what a test checks)
ACTION_TIMEOUT_MS = 30_000
EXPECT_TIMEOUT_MS = 15_000
#: citizens of the e2e demo city (the parents of minors among them give the proxy case)
CITIZENS = int(os.environ.get("E2E_CITIZENS", "16"))


def require_chromium() -> None:
    """Skip (locally) or fail (``CI=true``) when Playwright or Debian's Chromium is missing."""
    problem = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        problem = "the Python package playwright is not installed (scripts/bootstrap)"
    if problem is None and not os.access(CHROMIUM, os.X_OK):
        problem = f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run does it)"
    if problem is None:
        return
    message = f"END-TO-END BROWSER TESTS NOT RUN: {problem}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


# -- the world ----------------------------------------------------------------------------------


def seed_demo(store: Store, citizens: int = CITIZENS) -> list[DemoAccount]:
    """Load a small demo city, its schedules, released slots and the demo logins into
    ``store`` (migrated here). Returns the demo accounts."""
    from appointments import install as install_appointments
    from appointments.demo import demo_policies, demo_schedules
    from appointments.slots import roll_window
    from ehr.demo import generate_city
    from ehr.loader import load_resources

    store.migrate()
    city = generate_city(citizens=citizens, id_key=settings().citizen_id_key.encode())
    load_resources(store, [(r, None) for r in city])
    svc = install_appointments(store)
    booking = demo_schedules(city) + demo_policies(city)
    load_resources(store, [(r, None) for r in booking])
    roll_window(svc)
    accounts = account_store(store.engine, AuthSettings(), FAST_PASSWORDS)
    return ensure_demo_accounts(store, accounts)


@dataclass(frozen=True)
class Template:
    path: Path
    accounts: tuple[DemoAccount, ...]


@pytest.fixture(scope="session")
def e2e_template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    """The seeded demo database, built once per session (worker): copied by every test."""
    require_chromium()
    path = tmp_path_factory.mktemp("e2e-template") / "demo.sqlite"
    store = Store(f"sqlite:///{path}")
    try:
        accounts = seed_demo(store)
    finally:
        store.dispose()
    return Template(path, tuple(accounts))


@contextmanager
def live_server(store: Store, tmp_path: Path, **security: Any) -> Iterator[str]:
    """``ehr serve``'s app (the secured one) on a real socket; yields its origin
    (``http://127.0.0.1:<port>``)."""
    values: dict[str, Any] = {"spool_dir": tmp_path / "spool", "audit_flush_ms": 20}
    values.update(security)
    app = create_secure_app(store, settings(), SecuritySettings(**values))
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


# -- the browser --------------------------------------------------------------------------------


@dataclass
class E2E:
    """One test's world: the live server, the demo accounts, and browser pages."""

    origin: str
    store: Store
    accounts: dict[str, DemoAccount]
    artifacts: Path
    test_name: str
    playwright: Any
    tmp_path: Path
    errors: list[str] = field(default_factory=list)
    contexts: list[Any] = field(default_factory=list)

    def url(self, path: str) -> str:
        return self.origin + path

    def page(self, viewport: dict[str, int] | None = None, *, locale: str = "zh-CN") -> Any:
        """A new page in a fresh browser profile (its own user-data dir: no shared storage)."""
        profile = self.tmp_path / f"profile-{len(self.contexts)}"
        ctx = self.playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
            headless=True,
            viewport=viewport or PHONE,
            locale=locale,
            timezone_id="Asia/Shanghai",
        )
        ctx.set_default_timeout(ACTION_TIMEOUT_MS)
        self.contexts.append(ctx)
        page = ctx.pages[0] if ctx.pages else ctx.new_page()

        def on_console(msg: Any) -> None:
            where = (msg.location or {}).get("url", "")
            if msg.type == "error" and not where.endswith("/favicon.ico"):
                self.errors.append(f"console: {msg.text} ({where})")

        page.on("console", on_console)
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        return page

    def shot(self, page: Any, name: str) -> Path:
        """Save a full-page PNG under the artifacts directory (``test-artifacts/e2e``)."""
        self.artifacts.mkdir(parents=True, exist_ok=True)
        path = self.artifacts / f"{self.test_name}-{name}.png"
        page.evaluate("window.scrollTo(0, 0)")  # sticky headers stay at the top of the image
        page.screenshot(path=str(path), full_page=True)
        return path

    def account(self, username: str) -> DemoAccount:
        return self.accounts[username]

    def service_token(self, scope: str = "system/*.rs") -> str:
        """A backend token (client credentials) from the live authorization server, to
        cross-check through the FHIR API what the pages did."""
        return service_token(
            self.store.engine, self.origin, scope, name="e2e cross-check",
            passwords=FAST_PASSWORDS,
        )  # fmt: skip

    def user_token(self, username: str, scope: str = "user/*.rs", **claims: Any) -> str:
        """An access token of a demo user, as the live authorization server would issue it
        (signed with its key), for API calls made "by someone else" during a test."""
        from ehr.accounts.tokens import sign_jwt

        acct = self.accounts[username]
        accounts = account_store(self.store.engine, AuthSettings(), FAST_PASSWORDS)
        user = accounts.users.by_username(username)
        assert user is not None
        alg, key = accounts.keys.signing_key()
        now = int(time.time())
        body: dict[str, Any] = {
            "iss": f"{self.origin}/auth",
            "aud": f"{self.origin}/fhir",
            "sub": user.id,
            "client_id": "e2e",
            "scope": scope,
            "iat": now,
            "exp": now + 600,
            "jti": uuid.uuid4().hex,
            "role": acct.role,
            "fhirUser": f"{self.origin}/fhir/{acct.fhir_user}",
        }
        if acct.practitioner_role:
            body["practitioner_role"] = acct.practitioner_role
        if acct.organization:
            body["organization"] = acct.organization
        body.update({k: v for k, v in claims.items() if v is not None})
        return sign_jwt(body, alg, key, typ="at+jwt")

    def api(self, method: str, path: str, token: str, **kwargs: Any) -> httpx.Response:
        """A FHIR API call (``path`` relative to ``/fhir``) with ``token``."""
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"}
        headers.update(kwargs.pop("headers", None) or {})
        return httpx.request(
            method, f"{self.origin}/fhir/{path.lstrip('/')}", headers=headers, **kwargs
        )


@contextmanager
def e2e_world(
    tmp_path: Path, test_name: str, *, template: Template | None = None, db_url: str | None = None
) -> Iterator[E2E]:
    """A live server on a copy of ``template`` (or on ``db_url``, seeded here) and Playwright."""
    require_chromium()
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=EXPECT_TIMEOUT_MS)

    if db_url is None:
        assert template is not None
        target = tmp_path / "e2e.sqlite"
        shutil.copyfile(template.path, target)
        store = Store(f"sqlite:///{target}")
        accounts = list(template.accounts)
    else:
        store = Store(db_url)
        accounts = seed_demo(store)
    try:
        with live_server(store, tmp_path) as origin, sync_playwright() as pw:
            world = E2E(
                origin,
                store,
                {a.username: a for a in accounts},
                ARTIFACTS,
                test_name,
                pw,
                tmp_path,
            )
            try:
                yield world
            finally:
                for ctx in world.contexts:
                    ctx.close()
    finally:
        store.dispose()


@pytest.fixture
def e2e(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[E2E]:
    """The e2e world of one test (a copy of the session's demo database); fails the test if a
    page logged an error (CSP violations included) that the test did not clear.

    ``E2E_DATABASE=postgresql``: on the suite's PostgreSQL test database instead (emptied and
    seeded for each test: slower)."""
    require_chromium()
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    if os.environ.get("E2E_DATABASE", "sqlite") == "postgresql":
        from conftest import _empty

        url: str = request.getfixturevalue("pg_database")
        _empty(url)
        world_cm = e2e_world(tmp_path, name, db_url=url)
    else:
        world_cm = e2e_world(tmp_path, name, template=request.getfixturevalue("e2e_template"))
    with world_cm as world:
        yield world
        errors = list(world.errors)
    if errors:
        pytest.fail("errors in the browser:\n" + "\n".join(errors), pytrace=False)


def sign_in(
    page: Any,
    username: str,
    password: str | None = None,
    *,
    patient: str | None = None,
    allow: bool = True,
) -> None:
    """Go through our authorization server's login and consent pages as a person would:
    type the user name and password, submit, pick ``patient`` when the page offers a choice
    (without one: the first, which is a citizen themselves), then allow."""
    from fhir_api.apps.demo_accounts import DEMO_PASSWORDS

    page.wait_for_url(re.compile(r"/auth/login"))
    page.fill("#username", username)
    page.fill("#password", password or DEMO_PASSWORDS[username])
    page.click("form button[type=submit]")
    page.wait_for_url(re.compile(r"/auth/authorize"))
    if patient is not None:
        page.check(f"input[name=patient][value='{patient}']")
    elif page.locator("input[name=patient]").count():
        page.locator("input[name=patient]").first.check()  # a citizen: the first is themselves
    page.click(f"button[name=decision][value={'allow' if allow else 'deny'}]")
