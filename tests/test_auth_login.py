"""The login page and the login rules: readable on a phone in Chinese and English, CSRF
protected, rate-limited per account and per IP (without revealing which user names exist),
argon2 hashes, no open redirect, disabled accounts locked out of running sessions too."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlalchemy import select
from test_auth_support import PASSWORD, auth_app, browser, citizen, field, login

from ehr.accounts.tables import users
from ehr.store import Store


def test_login_page_is_chinese_by_default_with_an_english_switch(store: Store) -> None:
    a = auth_app(store)
    tc = browser(a.app)
    zh = tc.get("/auth/login")
    assert zh.status_code == 200
    page = zh.text
    assert '<html lang="zh-CN">' in page
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    assert '<label for="username">用户名</label>' in page and 'id="username"' in page
    assert (
        '<label for="password">密码</label>' in page and 'autocomplete="current-password"' in page
    )
    assert "min-height:48px" in page  # touch targets
    assert zh.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in zh.headers["content-security-policy"]
    assert "ehr_auth_csrf" in zh.headers["set-cookie"] and "HttpOnly" in zh.headers["set-cookie"]
    switch = re.search(r'<a href="([^"]+)" lang="en">English</a>', page)
    assert switch is not None and "lang=en" in switch.group(1)
    en = tc.get("/auth/login?lang=en")
    assert '<html lang="en">' in en.text and "User name" in en.text and ">中文</a>" in en.text
    # the choice sticks (cookie)
    assert '<html lang="en">' in tc.get("/auth/login").text


def test_login_needs_the_csrf_token(store: Store) -> None:
    a = auth_app(store)
    user, _ = citizen(a)
    tc = browser(a.app)
    tc.get("/auth/login")
    r = tc.post(
        "/auth/login", data={"username": user.username, "password": PASSWORD, "csrf": "guess"}
    )
    assert r.status_code == 400 and "ehr_auth_session" not in r.headers.get("set-cookie", "")
    other = browser(a.app)  # a token from another browser does not fit this one's cookie
    token = field(other.get("/auth/login").text, "csrf")
    r = tc.post(
        "/auth/login", data={"username": user.username, "password": PASSWORD, "csrf": token}
    )
    assert r.status_code == 400
    assert login(tc, user.username).status_code == 200  # signed in, no next: a message page


def test_passwords_are_stored_as_argon2id_hashes(store: Store) -> None:
    a = auth_app(store)
    user, _ = citizen(a)
    with store.read_conn() as c:
        stored = c.execute(select(users.c.password_hash).where(users.c.id == user.id)).scalar_one()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored


def test_an_account_locks_after_repeated_failures(store: Store) -> None:
    a = auth_app(store, max_failed_logins=3, lockout_s=600)
    user, _ = citizen(a)
    tc = browser(a.app)
    for _ in range(3):
        r = login(tc, user.username, "wrong password")
        assert r.status_code == 401 and "用户名或密码不正确" in r.text
    r = login(tc, user.username)  # even the right password is refused now
    assert r.status_code == 429 and "10 分钟" in r.text
    assert "ehr_auth_session" not in r.headers.get("set-cookie", "")
    # a user name that does not exist locks the same way: no way to tell them apart
    for _ in range(3):
        assert login(tc, "nobody.here", "x").status_code == 401
    assert login(tc, "nobody.here", "x").status_code == 429
    # the lock ends
    with store.engine.begin() as c:
        c.execute(users.update().values(locked_until=1))
    assert login(tc, user.username).status_code == 200


def test_one_ip_is_locked_out_after_many_failures_across_accounts(store: Store) -> None:
    a = auth_app(store, max_failed_logins=100, max_ip_failures=4, ip_window_s=600)
    user, _ = citizen(a)
    tc = browser(a.app)
    for i in range(4):
        assert login(tc, f"guess{i}", "x").status_code == 401
    r = login(tc, user.username)
    assert r.status_code == 429
    # a success elsewhere does not launder the count (another IP is fine)
    assert a.accounts.users.authenticate(user.username, PASSWORD, "10.1.2.3").status == "ok"
    assert a.accounts.users.authenticate(user.username, PASSWORD, "testclient").status == "locked"


def test_a_successful_login_resets_the_account_counter(store: Store) -> None:
    a = auth_app(store, max_failed_logins=3)
    user, _ = citizen(a)
    accounts = a.accounts.users
    assert accounts.authenticate(user.username, "bad", "ip1").status == "invalid"
    assert accounts.authenticate(user.username, "bad", "ip1").status == "invalid"
    ok = accounts.authenticate(user.username.upper(), PASSWORD, "ip1")  # names are case-folded
    assert ok.status == "ok" and ok.user is not None and ok.user.last_login
    assert accounts.authenticate(user.username, "bad", "ip1").status == "invalid"
    assert accounts.authenticate(user.username, "bad", "ip1").status == "invalid"
    assert accounts.authenticate(user.username, PASSWORD, "ip1").status == "ok"


def test_next_only_goes_back_to_our_authorize_endpoint(store: Store) -> None:
    a = auth_app(store)
    user, _ = citizen(a)
    for target in (
        "https://evil.example/phish",
        "//evil.example/x",
        "/fhir/Patient",
        "/auth/authorize/../../x",
        "javascript:alert(1)",
    ):
        tc = browser(a.app)
        r = login(tc, user.username, next_url=target)
        assert r.status_code == 200 and "location" not in r.headers, target
    tc = browser(a.app)
    r = login(tc, user.username, next_url="/auth/authorize?client_id=x")
    assert r.status_code == 303 and r.headers["location"] == "/auth/authorize?client_id=x"


def test_disabling_a_user_ends_their_session(store: Store) -> None:
    from test_auth_support import authorize_params, pkce, public_app

    a = auth_app(store)
    user, _ = citizen(a)
    cid = public_app(a)
    tc = browser(a.app)
    assert login(tc, user.username).status_code == 200
    params = authorize_params(cid, "launch/patient patient/*.rs", pkce()[1])
    assert tc.get("/auth/authorize", params=params).status_code == 200  # consent page
    assert a.accounts.users.set_disabled(user.username)
    r = tc.get("/auth/authorize", params=params)
    assert r.status_code == 303 and "/auth/login" in r.headers["location"]
    assert login(tc, user.username).status_code == 401


def test_logout(store: Store) -> None:
    from test_auth_support import authorize_params, pkce, public_app

    a = auth_app(store)
    user, _ = citizen(a)
    cid = public_app(a)
    tc = browser(a.app)
    login(tc, user.username)
    params = authorize_params(cid, "launch/patient patient/*.rs", pkce()[1])
    consent = tc.get("/auth/authorize", params=params)
    logout_form = consent.text.split('action="http://localhost/auth/logout"')[1]
    csrf = re.search(r'name="csrf" value="([^"]+)"', logout_form)
    nxt = re.search(r'name="next" value="([^"]+)"', logout_form)
    assert csrf and nxt
    import html

    r = tc.post("/auth/logout", data={"csrf": csrf.group(1), "next": html.unescape(nxt.group(1))})
    assert r.status_code == 303
    assert (
        tc.get(r.headers["location"]).headers["location"].startswith("http://localhost/auth/login")
    )


def test_an_apps_sign_out_ends_the_login_session(store: Store) -> None:
    """OIDC RP-Initiated Logout: on a shared device the next person gets the login page, not
    the previous user's consent page. The id_token proves the request; the redirect must be
    registered; a forged or foreign hint ends nothing."""
    from urllib.parse import parse_qs, urlsplit

    from test_auth_support import REDIRECT, authorize_params, exchange, get_code, pkce, public_app

    a = auth_app(store)
    user, _ = citizen(a)
    other, _ = citizen(a, "li.na")
    cid = public_app(a)
    tc = browser(a.app)
    verifier, challenge = pkce()
    params = authorize_params(cid, "openid fhirUser launch/patient patient/*.rs", challenge)
    code = get_code(tc, params, user.username)["code"][0]
    id_token = exchange(tc, code, verifier, cid).json()["id_token"]
    discovery = tc.get("/auth/.well-known/openid-configuration").json()
    assert discovery["end_session_endpoint"] == "http://localhost/auth/end-session"

    def signed_in(client: TestClient) -> bool:
        r = client.get("/auth/authorize", params=authorize_params(cid, "openid", pkce()[1]))
        return r.status_code == 200  # the consent page; 303 to the login page when signed out

    assert signed_in(tc)
    # refused: no hint, a forged one, a redirect the app did not register
    forged = id_token[:-4] + ("AAAA" if not id_token.endswith("AAAA") else "BBBB")
    for query in ({}, {"id_token_hint": forged},
                  {"id_token_hint": id_token, "post_logout_redirect_uri": "https://evil.example/"}):  # fmt: skip
        r = tc.get("/auth/end-session", params=query)
        assert r.status_code == 400 and "ehr_auth_session" not in r.headers.get("set-cookie", "")
    assert signed_in(tc)
    # another user's session is not ended by this hint
    tc2 = browser(a.app)
    login(tc2, other.username)
    assert tc2.get("/auth/end-session", params={"id_token_hint": id_token}).status_code == 200
    assert signed_in(tc2)
    # the app's sign-out: back to the app with its state; the next sign-in asks for a password
    r = tc.get("/auth/end-session", params={"id_token_hint": id_token, "client_id": cid,
                                            "post_logout_redirect_uri": REDIRECT, "state": "s1"})  # fmt: skip
    assert r.status_code == 303
    back = urlsplit(r.headers["location"])
    assert back._replace(query="").geturl() == REDIRECT and parse_qs(back.query) == {
        "state": ["s1"]
    }
    assert not signed_in(tc)
