// The nurse station (tablet): ward worklist, patient identification, vital signs with
// plausible-range warnings, medication administration with the double check, and an outbox
// that keeps every submission while the ward Wi-Fi is down. SMART app `nurse-app`; it speaks
// only the FHIR API and the ward operations, with the nurse's own token.
//
// Modules: station.js (shared state and helpers), view-worklist.js, view-patient.js,
// view-vitals.js, view-meds.js; outbox.js, and the FHIR logic in worklist.js, patients.js,
// vitals.js, meds.js.

import { fhir, session, signOut } from '../common/smart.js';
import { t, register, applyI18n } from '../common/i18n.js';
import { el, langToggle } from '../common/ui.js';
import { explainRefusal } from './meds.js';
import { MESSAGES } from './messages.js';
import { Outbox } from './outbox.js';
import { patientName } from './patients.js';
import { $, state, show, notice, alertText, errorText, signIn, fmtTime } from './station.js';
import { loadOrders, giveMedication, renderWitness, openWitnessDialog, closeWitnessDialog, onWitnessSubmit } from './view-meds.js';
import { renderPatientBanner, onIdentify } from './view-patient.js';
import { loadRecent, buildVitalsFields, rawVitals, saveVitals } from './view-vitals.js';
import { loadWards, loadWorklist } from './view-worklist.js';

register(MESSAGES);

const RETRY_MS = 15000;

// The station is wired as the page loads, so that a tap made while it still signs in and loads
// its rules is not lost: a tab switches at once; what needs the signed-in station (a form sent,
// a list loaded) waits for it.
let markStarted;
const started = new Promise((resolve) => {
  markStarted = resolve;
});

/** A handler that runs ``fn`` once the station has started (a form's own submission, which
 * would reload the page, is stopped at once). */
function whenStarted(fn) {
  return (ev) => {
    if (ev && ev.type === 'submit') ev.preventDefault();
    started.then(() => fn(ev)).catch((e) => alertText(errorText(e)));
  };
}

const reloadWorklist = whenStarted(() => loadWorklist());
const flushWhenStarted = whenStarted(() => flushNow());

// -- the outbox ---------------------------------------------------------------------------------

function sendEntry(entry) {
  return fhir(entry.path, { method: 'POST', body: entry.body });
}

function renderNet() {
  const online = navigator.onLine !== false;
  $('net').textContent = online ? t('nurse.online') : t('nurse.offline');
  $('net').classList.toggle('off', !online);
}

function renderPending() {
  const list = state.outbox ? state.outbox.entries() : [];
  const badge = $('pending-toggle');
  badge.hidden = list.length === 0;
  badge.textContent = t('nurse.pending.count', { count: list.length });
  badge.classList.toggle('has-failed', list.some((e) => e.state === 'failed'));
  const ul = $('pending-list');
  ul.replaceChildren(
    ...list.map((e) => {
      const what = t(`nurse.pending.${e.kind}`, e.summary || {});
      const row = el('li', { class: `pending-${e.state}` },
        el('span', { class: 'state' }, t(`nurse.pending.state.${e.state}`)),
        el('span', { class: 'what' }, what),
        el('span', { class: 'when' }, fmtTime(e.created)),
      );
      if (e.state === 'failed') {
        row.append(
          el('span', { class: 'err' }, explainRefusal({ status: e.status, message: e.error || '' })),
          el('button', { type: 'button', class: 'danger', onclick: () => {
            if (window.confirm(t('nurse.pending.discardConfirm'))) state.outbox.discard(e.id);
          } }, t('nurse.pending.discard')),
        );
      }
      return row;
    }),
  );
  $('pending').hidden = list.length === 0;
  // a refused record would be refused again: only what waits can be retried
  $('pending-retry').hidden = !list.some((e) => e.state !== 'failed');
}

/** After a flush: tell what got through; refresh what it changed. */
function afterFlush(results) {
  let sent = 0;
  for (const r of results.values()) if (r.ok) sent += 1;
  if (sent) {
    notice(t('nurse.pending.sent', { count: sent }));
    if (state.current) {
      loadRecent();
      loadOrders();
    }
  }
  return results;
}

async function flushNow() {
  const results = await state.outbox.flush();
  for (const r of results.values()) if (r.error && r.error.status === 401) alertText(errorText(r.error));
  return afterFlush(results);
}

// -- start --------------------------------------------------------------------------------------

function wire() {
  langToggle($('lang'));
  window.addEventListener('langchange', relabel);
  $('logout').addEventListener('click', () => {
    if (state.outbox && state.outbox.entries().length) {
      alertText(t('nurse.pending.logoutBlocked'));
      $('pending').focus?.();
      return;
    }
    signOut();
  });
  const tabs = [...document.querySelectorAll('[role="tab"]')];
  for (const tab of tabs) {
    tab.addEventListener('click', () => {
      show(tab.dataset.view);
      if (tab.dataset.view === 'worklist') reloadWorklist();
    });
    // arrow keys move between tabs (WAI-ARIA tabs pattern)
    tab.addEventListener('keydown', (ev) => {
      if (ev.key !== 'ArrowRight' && ev.key !== 'ArrowLeft') return;
      const next = tabs[(tabs.indexOf(tab) + (ev.key === 'ArrowRight' ? 1 : tabs.length - 1)) % tabs.length];
      next.focus();
      next.click();
    });
  }
  $('pending-toggle').addEventListener('click', () => $('pending-list').focus());
  $('relogin').addEventListener('click', () => signIn());
  $('pending-list').setAttribute('tabindex', '-1');
  $('pending-retry').addEventListener('click', flushWhenStarted);
  $('ward-form').addEventListener('submit', reloadWorklist);
  $('ward').addEventListener('change', reloadWorklist);
  $('identify-form').addEventListener('submit', whenStarted(onIdentify));
  $('patient-close').addEventListener('click', () => {
    show('worklist');
    reloadWorklist();
  });
  $('vitals-form').addEventListener('submit', whenStarted(saveVitals));
  $('admin-form').addEventListener('submit', whenStarted(giveMedication));
  $('admin-cancel').addEventListener('click', () => {
    $('admin-form').hidden = true;
    state.witness = null;
  });
  $('admin-witness-sign').addEventListener('click', openWitnessDialog);
  $('witness-form').addEventListener('submit', whenStarted(onWitnessSubmit));
  $('witness-cancel').addEventListener('click', closeWitnessDialog);
  $('witness-dialog').addEventListener('close', () => {
    $('witness-password').value = '';
  });
  window.addEventListener('online', () => {
    renderNet();
    flushWhenStarted();
  });
  window.addEventListener('offline', renderNet);
  setInterval(() => {
    if (state.outbox && state.outbox.pending && navigator.onLine !== false) flushNow();
  }, RETRY_MS);
}

/** Re-render what JavaScript wrote, in the new language. */
function relabel() {
  notice('');
  renderNet();
  renderPending();
  const who = session();
  $('who').textContent = t('nurse.signedInAs', { name: state.name || (who && who.fhirUser) || '' });
  if (state.rules) {
    const values = state.current ? rawVitals() : null;
    buildVitalsFields();
    if (values) for (const [k, v] of Object.entries(values)) $(`v-${k}`).value = v;
  }
  if (state.order && !$('admin-verify').hidden) renderWitness();
  if (state.current) {
    renderPatientBanner();
    loadRecent();
    loadOrders();
  }
  if (!$('view-worklist').hidden) started.then(() => loadWorklist()).catch(() => {});
}

async function start() {
  applyI18n();
  const s = await signIn();
  if (!s) return; // redirected to the authorization server
  const fu = s.fhirUser || '';
  state.me = fu.includes('Practitioner/') ? fu.slice(fu.indexOf('Practitioner/')) : null;
  // the wards (and this hospital, whose MRN the banner shows) load from here on: a wristband
  // scanned meanwhile waits for them (`openPatient` awaits `state.ready`)
  state.ready = loadWards();
  state.rules = await (await fetch('rules.json')).json();
  state.outbox = new Outbox({ owner: state.me || 'nurse', send: sendEntry, onChange: renderPending });
  buildVitalsFields();
  renderNet();
  renderPending();
  markStarted();
  if (state.me) {
    try {
      const me = await fhir(state.me);
      state.name = patientName(me);
    } catch {
      state.name = state.me;
    }
  }
  $('who').textContent = t('nurse.signedInAs', { name: state.name || fu });
  try {
    await state.ready;
    await loadWorklist();
  } catch (err) {
    alertText(errorText(err));
  }
  if (state.outbox.pending) flushNow();
}

wire();
start().catch((err) => alertText(errorText(err)));
