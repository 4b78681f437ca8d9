// SMART App Launch 2 (standalone launch) for the apps served under /app/: authorization code
// with PKCE S256 against this server's authorization server, endpoints discovered from
// /fhir/.well-known/smart-configuration. https://hl7.org/fhir/smart-app-launch/app-launch.html
//
//   const s = await login({clientId: 'booking-app', scope: 'openid fhirUser launch/patient ...'});
//   const patient = await fhir(`Patient/${s.patient}`);
//
// The token response is kept in sessionStorage (one browser tab, gone when it closes), never in
// localStorage. The id_token's claims are decoded for display only (not verified here: the API
// verifies the access token on every request).

const FHIR_BASE = '/fhir';
const SESSION_KEY = 'ehr.smart.session';
const PENDING_KEY = 'ehr.smart.pending';
const LANG_KEY = 'ehr.lang';

/** An error answer of the API (or of the token endpoint): HTTP status and readable text. */
export class FhirError extends Error {
  constructor(status, message, outcome = null) {
    super(message || `HTTP ${status}`);
    this.name = 'FhirError';
    this.status = status;
    this.outcome = outcome;
  }
}

function b64url(bytes) {
  let s = '';
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function randomString(n = 32) {
  return b64url(crypto.getRandomValues(new Uint8Array(n)));
}

async function s256(text) {
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(text));
  return b64url(new Uint8Array(digest));
}

function decodeJwt(jwt) {
  try {
    const part = jwt.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const json = decodeURIComponent(
      Array.from(atob(part), (c) => '%' + c.charCodeAt(0).toString(16).padStart(2, '0')).join(''),
    );
    return JSON.parse(json);
  } catch {
    return null;
  }
}

function readJson(storage, key) {
  try {
    return JSON.parse(storage.getItem(key) || 'null');
  } catch {
    return null;
  }
}

async function discover() {
  const resp = await fetch(`${FHIR_BASE}/.well-known/smart-configuration`, {
    headers: {Accept: 'application/json'},
  });
  if (!resp.ok) throw new FhirError(resp.status, 'SMART configuration not available');
  return resp.json();
}

/** The current session (token response and launch context), or null when absent or expired. */
export function session() {
  const s = readJson(sessionStorage, SESSION_KEY);
  if (!s || !s.accessToken) return null;
  if (s.expiresAt && s.expiresAt * 1000 <= Date.now() + 5000) return null;
  return s;
}

/** Forget the session in this tab (the next login() goes through the authorization server,
 * where the user may still be signed in: to choose another patient, say). */
export function logout() {
  sessionStorage.removeItem(SESSION_KEY);
  sessionStorage.removeItem(PENDING_KEY);
}

/**
 * Sign out for good (the "sign out" button; nurse stations and workstations are shared): forget
 * the session, revoke the access token (RFC 7009) and end the login session at the authorization
 * server (OpenID Connect RP-Initiated Logout), which sends the browser back to this page, where
 * the next person must enter their own password. Navigates away.
 */
export async function signOut() {
  const s = readJson(sessionStorage, SESSION_KEY);
  logout();
  const back = window.location.origin + window.location.pathname;
  let config = null;
  try {
    config = await discover();
  } catch {
    // the page reloads below either way; the server-side session then ends at its expiry
  }
  if (config && s && s.accessToken && config.revocation_endpoint) {
    await fetch(config.revocation_endpoint, {
      method: 'POST',
      headers: {'Content-Type': 'application/x-www-form-urlencoded'},
      body: new URLSearchParams({token: s.accessToken, client_id: s.clientId}),
    }).catch(() => null);
  }
  if (config && s && s.idToken && config.end_session_endpoint) {
    const query = new URLSearchParams({
      id_token_hint: s.idToken,
      client_id: s.clientId,
      post_logout_redirect_uri: back,
      ui_locales: localStorage.getItem(LANG_KEY) || 'zh-CN',
    });
    window.location.assign(`${config.end_session_endpoint}?${query}`);
  } else {
    window.location.assign(back);
  }
  return new Promise(() => {});
}

function sessionFrom(token, clientId) {
  const now = Math.floor(Date.now() / 1000);
  const claims = token.id_token ? decodeJwt(token.id_token) : null;
  return {
    clientId,
    accessToken: token.access_token,
    patient: token.patient || null,
    encounter: token.encounter || null,
    fhirUser: (claims && claims.fhirUser) || null,
    scope: token.scope || '',
    idTokenClaims: claims,
    idToken: token.id_token || null,
    expiresAt: now + (Number(token.expires_in) || 300),
    needPatientBanner: token.need_patient_banner !== false,
  };
}

function cleanUrl() {
  const url = new URL(window.location.href);
  for (const k of ['code', 'state', 'error', 'error_description', 'error_uri', 'iss']) {
    url.searchParams.delete(k);
  }
  window.history.replaceState(null, '', url.pathname + url.search + url.hash);
}

async function exchange(params, pending) {
  if (params.get('state') !== pending.state) {
    throw new FhirError(400, 'The sign-in answer does not match this tab (state mismatch)');
  }
  const body = new URLSearchParams({
    grant_type: 'authorization_code',
    code: params.get('code'),
    redirect_uri: pending.redirectUri,
    client_id: pending.clientId,
    code_verifier: pending.verifier,
  });
  const resp = await fetch(pending.tokenEndpoint, {
    method: 'POST',
    headers: {'Content-Type': 'application/x-www-form-urlencoded', Accept: 'application/json'},
    body,
  });
  const token = await resp.json().catch(() => ({}));
  if (!resp.ok || !token.access_token) {
    throw new FhirError(resp.status, token.error_description || token.error || 'token error');
  }
  return token;
}

/**
 * Sign in (SMART standalone launch). Resolves to the session
 * {accessToken, patient, fhirUser, scope, idTokenClaims, expiresAt}; when the user must first go
 * to the authorization server, the page navigates away and the promise never resolves.
 */
export async function login({clientId, scope, redirectPath} = {}) {
  const params = new URLSearchParams(window.location.search);
  const pending = readJson(sessionStorage, PENDING_KEY);
  if (params.has('error') && pending) {
    sessionStorage.removeItem(PENDING_KEY);
    cleanUrl();
    const err = new FhirError(401, params.get('error_description') || params.get('error'));
    err.code = params.get('error'); // OAuth error code, e.g. access_denied (the user said no)
    throw err;
  }
  if (params.has('code') && pending && pending.clientId === clientId) {
    sessionStorage.removeItem(PENDING_KEY);
    try {
      const token = await exchange(params, pending);
      const s = sessionFrom(token, clientId);
      sessionStorage.setItem(SESSION_KEY, JSON.stringify(s));
      return s;
    } finally {
      cleanUrl();
    }
  }
  const current = session();
  if (current && current.clientId === clientId) return current;

  const config = await discover();
  const verifier = randomString(48);
  const state = randomString(16);
  const redirectUri = window.location.origin + (redirectPath || window.location.pathname);
  sessionStorage.setItem(
    PENDING_KEY,
    JSON.stringify({clientId, state, verifier, redirectUri, tokenEndpoint: config.token_endpoint}),
  );
  const lang = localStorage.getItem(LANG_KEY) || 'zh-CN';
  const query = new URLSearchParams({
    response_type: 'code',
    client_id: clientId,
    redirect_uri: redirectUri,
    scope,
    state,
    aud: window.location.origin + FHIR_BASE,
    code_challenge: await s256(verifier),
    code_challenge_method: 'S256',
    ui_locales: lang,
  });
  window.location.assign(`${config.authorization_endpoint}?${query}`);
  return new Promise(() => {});
}

function outcomeText(body) {
  if (!body || body.resourceType !== 'OperationOutcome') return '';
  return (body.issue || [])
    .map((i) => i.diagnostics || (i.details && i.details.text) || i.code)
    .filter(Boolean)
    .join('; ');
}

/**
 * Call the FHIR API: `fhir('Patient/1')`, `fhir('Appointment/$book', {method: 'POST', body})`.
 * Returns the parsed JSON (null for an empty answer); throws FhirError otherwise.
 * An absolute URL (a Bundle's `next` link) is accepted when it is on this origin.
 */
export async function fhir(path, {method = 'GET', body, headers} = {}) {
  const s = session();
  if (!s) throw new FhirError(401, 'Not signed in');
  let url;
  if (/^https?:/.test(path)) {
    url = new URL(path);
    if (url.origin !== window.location.origin) throw new FhirError(400, 'foreign URL');
  } else {
    url = `${FHIR_BASE}/${String(path).replace(/^\/+/, '')}`;
  }
  const h = {Accept: 'application/fhir+json', Authorization: `Bearer ${s.accessToken}`};
  let payload;
  if (body !== undefined) {
    h['Content-Type'] = 'application/fhir+json';
    payload = typeof body === 'string' ? body : JSON.stringify(body);
  }
  // the API answers with Cache-Control: no-store, so no record (e.g. one read with
  // X-Break-Glass) stays in this browser's cache for a later request or user
  const resp = await fetch(url, {
    method,
    headers: {...h, ...(headers || {})},
    body: payload,
  });
  const text = await resp.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!resp.ok) {
    if (resp.status === 401) sessionStorage.removeItem(SESSION_KEY);
    throw new FhirError(resp.status, outcomeText(data) || `HTTP ${resp.status}`, data);
  }
  return resp.status === 204 ? null : data;
}
