// What the nurse station's views share: the page state, messages, switching views and sending a
// submission through the outbox.

import { login } from '../common/smart.js';
import { t } from '../common/i18n.js';
import { fmtDateTime, announce, alertMessage } from '../common/ui.js';
import { ageYears } from './patients.js';

export const SCOPE = 'openid fhirUser user/*.crus';
export const $ = (id) => document.getElementById(id);
export const fmtTime = fmtDateTime;

export const state = {
  me: null, // "Practitioner/x"
  org: null, // the nurse's hospital (Organization id)
  ready: Promise.resolve(), // the wards (and so `org`) are known
  rules: null,
  outbox: null,
  beds: {},
  current: null, // {patient, encounter, bed}
  order: null, // the MedicationRequest being given
  witness: null, // the second nurse's signature for `order`: {token, name, order, expiresAt}
  confirmed: false, // the nurse has seen the range warnings and saves anyway
};

export const notice = (text) => announce(text);
export const alertText = (text) => alertMessage(text);

/** A guard for a list's loads: the latest load of `name` renders, an older one that answers
 * after it does not (opening a patient, then switching language, starts two loads of the same
 * list; the older one, re-rendering it late, would swap the buttons under the nurse's finger). */
const loads = {};
export function latest(name) {
  const n = (loads[name] = (loads[name] || 0) + 1);
  return () => loads[name] === n;
}

export function errorText(err) {
  if (err && err.status === 401) {
    $('relogin').hidden = false; // the token expired: sign in again (the outbox is kept)
    return t('nurse.error.auth');
  }
  return t('nurse.error', { text: (err && err.message) || String(err) });
}

export function signIn() {
  return login({ clientId: 'nurse-app', scope: SCOPE, redirectPath: '/app/nurse/' });
}

export function show(view) {
  notice('');
  alertText('');
  for (const v of ['worklist', 'identify', 'patient']) $(`view-${v}`).hidden = v !== view;
  for (const tab of document.querySelectorAll('[role="tab"]')) {
    const on = tab.dataset.view === view;
    tab.setAttribute('aria-selected', String(on));
    tab.tabIndex = on || (view === 'patient' && tab.dataset.view === 'worklist') ? 0 : -1;
  }
  if (view === 'identify') $('identifier').focus();
}

/** Queue a submission and try to send it at once. Returns {sent, value, error, queued}. */
export async function submit(entry) {
  state.outbox.add(entry);
  const results = await state.outbox.flush();
  const r = results.get(entry.id);
  if (r && r.ok) return { sent: true, value: r.value };
  if (r && !r.retry) {
    // refused at once (e.g. the double check failed): the nurse sees why here and now
    state.outbox.discard(entry.id);
    return { sent: false, error: r.error };
  }
  if (r && r.error && r.error.status === 401) alertText(errorText(r.error));
  return { sent: false, queued: true };
}

export function ageText(p) {
  const a = ageYears(p);
  return a === null ? '' : t('nurse.patient.age', { age: a });
}
