// The clinician workstation (SMART on FHIR app, client "workstation-app"): sign in, find a
// patient (name, identifier, card) or take one from today's clinic, read the summary, break the
// glass where consent restricts, call the next patient and write the visit's note.
//
// Views are chosen by the address fragment, so Back works and a record can be reopened:
//   #/                 find + today's clinic
//   #/patient/{id}     the patient's summary (with ?encounter={id} for the visit in progress)

import {fhir, login, signOut} from '../common/smart.js';
import {applyI18n, register, t} from '../common/i18n.js';
import {alertMessage, el, entries, fmtDate, humanName, isoDay, langToggle, render, showError} from '../common/ui.js';
import {loadClinic} from './clinic.js';
import {refId, visibleIdentifiers} from './fhirdata.js';
import {patientQueries} from './find.js';
import * as glass from './glass.js';
import {MESSAGES} from './messages.js';
import {showPatient} from './summary.js';

register(MESSAGES);

const CLIENT_ID = 'workstation-app';
const SCOPE = 'openid fhirUser user/*.crus';
const $ = (id) => document.getElementById(id);

let me = {practitioner: null, name: ''};

function go(hash) {
  if (window.location.hash === hash) route();
  else window.location.hash = hash;
}

function openPatient(pid, encounter) {
  go(`#/patient/${encodeURIComponent(pid)}${encounter ? `?encounter=${encodeURIComponent(encounter)}` : ''}`);
}

async function route() {
  const m = /^#\/patient\/([^?]+)(?:\?encounter=(.+))?$/.exec(window.location.hash);
  const patient = $('patient');
  alertMessage('');
  if (!m) {
    patient.hidden = true;
    render($('patient-body'));
    return;
  }
  patient.hidden = false;
  try {
    await showPatient($('patient-body'), decodeURIComponent(m[1]), {
      encounter: m[2] ? decodeURIComponent(m[2]) : null,
      onClose: () => go('#/'),
    });
  } catch (err) {
    render($('patient-body'));
    showError(err);
  }
}

// -- find -----------------------------------------------------------------------------------------

function resultItem(p) {
  const ids = visibleIdentifiers(p).slice(0, 2).map((i) => i.value).join(' · ');
  const name = humanName(p) || `Patient/${p.id}`;
  return el('li', {},
    el('span', {class: 'grow'},
      el('strong', {}, name), ' ',
      el('span', {class: 'small'}, [t(`ws.gender.${p.gender || 'unknown'}`), p.birthDate ? fmtDate(p.birthDate) : null].filter(Boolean).join(' · ')),
      ids ? el('div', {class: 'small muted'}, ids) : null),
    el('button', {type: 'button', class: 'open-patient', dataset: {patient: p.id},
      'aria-label': t('ws.find.open', {name}), onclick: () => openPatient(p.id)}, t('ws.clinic.open')));
}

let lastFound = null; // the last result list, redrawn when the language changes

function showFound(list) {
  lastFound = list;
  const out = $('find-results');
  if (!list) {
    render(out);
    return;
  }
  render(out,
    el('p', {class: list.length ? 'small' : 'muted', role: 'status'}, list.length ? t('ws.find.count', {n: list.length}) : t('ws.find.none')),
    list.length ? el('ul', {class: 'list results-list'}, list.map(resultItem)) : null);
}

async function find(text) {
  const queries = patientQueries(text);
  if (!queries.length) return;
  if (queries[0].kind === 'id') {
    showFound(null);
    openPatient(queries[0].path.split('/')[1]);
    return;
  }
  render($('find-results'), el('p', {class: 'muted'}, t('ws.loading')));
  const found = new Map();
  for (const q of queries) {
    const bundle = await fhir(`${q.path}?${new URLSearchParams(q.params)}`);
    for (const p of entries(bundle, 'Patient')) found.set(p.id, p);
  }
  const list = [...found.values()];
  if (list.length === 1 && queries[0].kind !== 'name') {
    showFound(null);
    openPatient(list[0].id); // a card tap or an identifier names one patient: open the record
    return;
  }
  showFound(list);
}

// -- start ------------------------------------------------------------------------------------------

async function start() {
  applyI18n();
  langToggle($('lang'));
  $('logout').addEventListener('click', () => {
    glass.clear();
    signOut();
  });
  let s;
  try {
    s = await login({clientId: CLIENT_ID, scope: SCOPE});
  } catch (err) {
    $('booting').hidden = true;
    showError(err);
    return;
  }
  me.practitioner = refId(s.fhirUser, 'Practitioner');
  $('booting').hidden = true;
  $('app').hidden = false;
  if (me.practitioner) {
    fhir(`Practitioner/${encodeURIComponent(me.practitioner)}`)
      .then((p) => { me.name = humanName(p); $('who').textContent = t('ws.signedIn', {name: me.name}); })
      .catch(() => {});
  }
  $('find-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    find($('find-q').value).catch(showError);
  });
  document.addEventListener('keydown', (ev) => {
    const typing = /^(INPUT|TEXTAREA|SELECT)$/.test(document.activeElement && document.activeElement.tagName);
    if (ev.key === '/' && !typing && !ev.ctrlKey && !ev.metaKey && !ev.altKey) {
      ev.preventDefault();
      $('find-q').focus();
      $('find-q').select(); // a card reader's typing replaces the last search
    }
  });
  const day = isoDay();
  const clinic = () => {
    $('clinic-date').textContent = fmtDate(day, {weekday: true});
    return loadClinic($('clinic-body'), {
      practitioner: me.practitioner,
      day,
      onOpen: (e) => openPatient(e.patient, e.encounter),
    }).catch(showError);
  };
  $('clinic-refresh').addEventListener('click', clinic);
  window.addEventListener('ws:visit-finished', clinic);
  window.addEventListener('hashchange', route);
  window.addEventListener('langchange', () => {
    if (me.name) $('who').textContent = t('ws.signedIn', {name: me.name});
    if (lastFound) showFound(lastFound);
    clinic();
    route();
  });
  clinic();
  await route();
  if (!window.location.hash) $('find-q').focus();
}

start();
