"""Server-rendered HTML of the login, consent (with the clinician's patient picker) and error
pages: small, readable on a phone (viewport, 18px text, 48px touch targets), accessible (``lang``,
labelled fields, ``role=alert`` errors, visible focus), no script and no external resource
(``Content-Security-Policy: default-src 'none'``; ``frame-ancestors 'none'`` against
click-jacking of the consent button)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape

from starlette.responses import HTMLResponse

from .i18n import t

__all__ = ["consent_page", "error_page", "login_page", "message_page"]

HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}

CSS = """
*{box-sizing:border-box}
body{margin:0;font:18px/1.5 system-ui,-apple-system,"PingFang SC","Microsoft YaHei",sans-serif;
color:#1a1a1a;background:#f4f6f8}
main{max-width:28rem;margin:0 auto;padding:1rem}
.card{background:#fff;border-radius:12px;padding:1.25rem;box-shadow:0 1px 3px rgba(0,0,0,.12)}
h1{font-size:1.4rem;margin:.2rem 0 1rem}
label{display:block;font-weight:600;margin:.9rem 0 .3rem}
input[type=text],input[type=password],input[type=search]{width:100%;min-height:48px;
font-size:1rem;padding:.6rem .75rem;border:1px solid #8a949e;border-radius:8px}
button{width:100%;min-height:48px;font-size:1.05rem;border:0;border-radius:8px;margin-top:1rem;
cursor:pointer}
.primary{background:#0b5cad;color:#fff}.secondary{background:#e3e8ee;color:#1a1a1a}
:focus-visible{outline:3px solid #f0a500;outline-offset:2px}
.alert{background:#fdecea;color:#8a1c12;border-radius:8px;padding:.6rem .8rem;margin:.5rem 0}
ul.perm{padding-left:1.2rem}ul.perm li{margin:.3rem 0}
.pick label{font-weight:400;display:flex;gap:.6rem;align-items:center;min-height:48px;margin:0}
.pick input{width:1.4rem;height:1.4rem}
.muted{color:#555;font-size:.9rem}
header{display:flex;justify-content:space-between;align-items:center;padding:.5rem 0}
header a{color:#0b5cad;min-height:48px;display:inline-flex;align-items:center}
.linkbtn{background:none;color:#0b5cad;text-decoration:underline;width:auto;min-height:48px;
margin:0;padding:0}
"""


def _hidden(fields: Iterable[tuple[str, str]]) -> str:
    return "".join(
        f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">' for k, v in fields
    )


def _page(lang: str, title: str, body: str, switch_url: str, status: int = 200) -> HTMLResponse:
    html = (
        f'<!DOCTYPE html><html lang="{escape(lang)}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)} · {escape(t(lang, 'site'))}</title><style>{CSS}</style></head>"
        f"<body><main><header><span>{escape(t(lang, 'site'))}</span>"
        f'<a href="{escape(switch_url)}" lang="{"zh-CN" if lang == "en" else "en"}">'
        f"{escape(t(lang, 'other_lang'))}</a></header>"
        f'<div class="card"><h1>{escape(title)}</h1>{body}</div></main></body></html>'
    )
    return HTMLResponse(html, status_code=status, headers=HEADERS)


def _alert(text: str | None) -> str:
    return f'<p class="alert" role="alert">{escape(text)}</p>' if text else ""


def login_page(
    lang: str,
    *,
    action: str,
    csrf: str,
    next_url: str,
    switch_url: str,
    username: str = "",
    error: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    body = (
        f"<p>{escape(t(lang, 'login_intro'))}</p>{_alert(error)}"
        f'<form method="post" action="{escape(action)}" novalidate>'
        + _hidden([("csrf", csrf), ("next", next_url), ("lang", lang)])
        + f'<label for="username">{escape(t(lang, "username"))}</label>'
        f'<input type="text" id="username" name="username" autocomplete="username" '
        f'autocapitalize="none" spellcheck="false" required value="{escape(username)}">'
        f'<label for="password">{escape(t(lang, "password"))}</label>'
        '<input type="password" id="password" name="password" autocomplete="current-password" '
        "required>"
        f'<button type="submit" class="primary">{escape(t(lang, "login"))}</button></form>'
    )
    return _page(lang, t(lang, "login_title"), body, switch_url, status)


def consent_page(
    lang: str,
    *,
    action: str,
    logout_action: str,
    logout_next: str,
    app_name: str,
    user_name: str,
    permissions: Sequence[str],
    params: Sequence[tuple[str, str]],
    csrf: str,
    logout_csrf: str,
    switch_url: str,
    patient_label: str | None = None,
    picker: Sequence[tuple[str, str]] | None = None,
    picker_query: str | None = None,
    picker_search: bool = True,
    error: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    """``params`` are the authorization request's parameters (echoed as hidden fields);
    ``picker`` the (id, label) of patients to choose from when a clinician must pick one
    (with a search form), or a citizen whom the app is for: themselves or a family member they
    act for (``picker_search`` False: the list is complete)."""
    perms = "".join(f"<li>{escape(p)}</li>" for p in permissions)
    body = (
        f'<p class="muted">{escape(t(lang, "signed_in_as", name=user_name))}</p>'
        f"{_alert(error)}<p>{escape(t(lang, 'app_wants', app=app_name))}</p>"
        f'<ul class="perm">{perms}</ul>'
    )
    if patient_label:
        body += f"<p><strong>{escape(t(lang, 'patient'))}:</strong> {escape(patient_label)}</p>"
    choices = ""
    if picker is not None and picker_search:
        search_fields = [(k, v) for k, v in params if k not in ("patient_q", "lang")]
        body += (
            f'<form method="get" action="{escape(action)}" role="search">'
            + _hidden([*search_fields, ("lang", lang)])
            + f'<label for="patient_q">{escape(t(lang, "search_patient"))}</label>'
            f'<input type="search" id="patient_q" name="patient_q" '
            f'value="{escape(picker_query or "")}">'
            f'<button type="submit" class="secondary">{escape(t(lang, "search"))}</button></form>'
        )
    if picker is not None:
        if picker:
            items = "".join(
                f'<label><input type="radio" name="patient" value="{escape(pid)}" required>'
                f"{escape(label)}</label>"
                for pid, label in picker
            )
            legend = t(lang, "pick_patient" if picker_search else "pick_for_whom")
            choices = f'<fieldset class="pick"><legend>{escape(legend)}</legend>{items}</fieldset>'
        elif picker_query:
            body += f"<p>{escape(t(lang, 'no_patients'))}</p>"
    body += (
        f'<form method="post" action="{escape(action)}">'
        + _hidden([*[(k, v) for k, v in params if k != "lang"], ("csrf", csrf), ("lang", lang)])
        + choices
        + f'<button type="submit" name="decision" value="allow" class="primary">'
        f"{escape(t(lang, 'allow'))}</button>"
        f'<button type="submit" name="decision" value="deny" class="secondary">'
        f"{escape(t(lang, 'deny'))}</button></form>"
        f'<p class="muted">{escape(t(lang, "consent_note"))}</p>'
        f'<form method="post" action="{escape(logout_action)}">'
        + _hidden(
            [
                ("csrf", logout_csrf),
                ("lang", lang),
                ("next", logout_next),
            ]
        )
        + f'<button type="submit" class="linkbtn">{escape(t(lang, "not_you"))}</button></form>'
    )
    return _page(lang, t(lang, "consent_title"), body, switch_url, status)


def error_page(lang: str, detail: str, switch_url: str, status: int = 400) -> HTMLResponse:
    return _page(lang, t(lang, "error_title"), _alert(detail), switch_url, status)


def message_page(lang: str, title: str, switch_url: str) -> HTMLResponse:
    return _page(lang, title, "", switch_url)
