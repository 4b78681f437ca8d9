// The patient summary: banner, allergies up front, problems, medications, encounters and results
// with trend charts; the encounter note when there is a visit in progress.
//
// Everything comes from one FHIR search per section on the patient's compartment rather than
// Patient/$summary (an IPS document): each section loads, fails and is consent-filtered on its
// own, results need every Observation over time (the IPS keeps the latest), and the server
// refused $summary to consent-bound clinician tokens when this was written. Each search names
// the patient (`patient=`), which is also what lets the break-the-glass header apply to it.

import {fhir} from '../common/smart.js';
import {t} from '../common/i18n.js';
import {codeText, el, entries, fmtDate, fmtDateTime, humanName, render} from '../common/ui.js';
import {ageYears, visibleIdentifiers} from './fhirdata.js';
import * as glass from './glass.js';
import {glassBar, glassForm} from './glassview.js';
import {noteCard} from './note.js';
import {drawResults} from './trendview.js';

const enc = encodeURIComponent;

function status(code) {
  if (!code) return '';
  const key = `ws.status.${code}`;
  const text = t(key);
  return text === key ? code : text;
}

function clinical(cc) {
  return (cc && cc.coding && cc.coding[0] && cc.coding[0].code) || '';
}

/** GET with the patient's break-the-glass header (when one was asserted). */
function getter(pid) {
  return (path) => fhir(path, {headers: glass.headersFor(pid)});
}

/**
 * Show Patient/`pid` in `container`. `ctx.encounter`: the Encounter of the visit in progress
 * (from call-next); `ctx.onClose()`: back to the search. Resolves when drawn.
 */
let drawing = 0; // the latest showPatient call: an older one that finishes later draws nothing

export async function showPatient(container, pid, ctx = {}) {
  const mine = ++drawing;
  const get = getter(pid);
  render(container, el('p', {class: 'muted', role: 'status'}, t('ws.loading')));
  let patient;
  try {
    patient = await get(`Patient/${enc(pid)}`);
  } catch (err) {
    if (mine !== drawing) return;
    if (glass.isRestricted(err) && !glass.reasonFor(pid)) {
      render(container, glassForm(pid, () => showPatient(container, pid, ctx), ctx.onClose));
      container.querySelector('h2').focus();
      return;
    }
    glass.clear(pid);
    throw err;
  }
  const q = `patient=${enc(pid)}`;
  const [allergies, conditions, meds, encounters, observations, current] = await Promise.allSettled([
    get(`AllergyIntolerance?${q}&_count=100`),
    get(`Condition?${q}&_count=200`),
    get(`MedicationRequest?${q}&_count=200&_sort=-authoredon`),
    get(`Encounter?${q}&_count=20&_sort=-date`),
    get(`Observation?${q}&category=vital-signs,laboratory&_count=1000&_sort=date`),
    ctx.encounter ? get(`Encounter/${enc(ctx.encounter)}`) : get(`Encounter?${q}&status=in-progress&_count=1`),
  ]);
  if (mine !== drawing) return;
  const restricted = [allergies, conditions, meds, encounters, observations].some(
    (r) => r.status === 'rejected' && glass.isRestricted(r.reason),
  );
  let visit = null;
  if (current.status === 'fulfilled' && current.value) {
    visit = current.value.resourceType === 'Bundle' ? entries(current.value, 'Encounter')[0] || null : current.value;
  }
  const grid = el('div', {class: 'summary-grid'},
    section('problems', t('ws.problems'), problemList(conditions)),
    section('medications', t('ws.medications'), medicationList(meds)),
    section('encounters', t('ws.encounters'), encounterList(encounters)),
  );
  const results = el('section', {id: 'results', class: 'card', 'aria-labelledby': 'results-title'},
    el('h3', {id: 'results-title'}, t('ws.results')));
  render(container,
    banner(patient, visit, ctx.onClose),
    glassBar(pid, restricted, () => showPatient(container, pid, ctx)),
    allergyCard(allergies),
    visit ? noteCard(pid, visit) : el('p', {class: 'card muted', id: 'note-hint'}, t('ws.note.noEncounter')),
    grid,
    results,
  );
  // the heading takes the focus as soon as it is there (the charts below may take a while)
  container.querySelector('#patient-name').focus();
  if (observations.status === 'rejected') results.append(failed(observations));
  else await drawResults(results, observations.value);
}

function section(id, title, body) {
  return el('section', {id, class: 'card', 'aria-labelledby': `${id}-title`},
    el('h3', {id: `${id}-title`}, title), body);
}

function failed(settled) {
  return el('p', {class: 'muted'}, t('common.error', {message: settled.reason && settled.reason.message}));
}

function banner(p, visit, onClose) {
  const age = ageYears(p.birthDate);
  const facts = [
    t(`ws.gender.${p.gender || 'unknown'}`),
    age === null ? null : t('ws.patient.age', {age}),
    p.birthDate ? t('ws.patient.born', {date: fmtDate(p.birthDate)}) : null,
  ].filter(Boolean).join(' · ');
  return el('section', {class: 'card banner', 'aria-label': t('ws.patient.title')},
    el('div', {class: 'row'},
      el('h2', {id: 'patient-name', class: 'grow', tabindex: '-1'}, humanName(p) || `Patient/${p.id}`),
      onClose ? el('button', {type: 'button', onclick: onClose}, t('ws.patient.close')) : null),
    el('p', {class: 'facts'}, facts),
    el('ul', {class: 'ids small muted'},
      visibleIdentifiers(p).map((i) => el('li', {}, `${i.label}: ${i.value}`))),
    visit ? el('p', {class: 'small', id: 'visit'}, t('ws.patient.encounter', {
      status: status(visit.status), time: fmtDateTime((visit.period || {}).start)})) : null,
  );
}

// -- the lists ------------------------------------------------------------------------------------

function allergyCard(settled) {
  if (settled.status === 'rejected') return el('section', {class: 'card allergies'}, el('h3', {}, t('ws.allergies')), failed(settled));
  const list = entries(settled.value, 'AllergyIntolerance')
    .filter((a) => clinical(a.verificationStatus) !== 'entered-in-error' && clinical(a.verificationStatus) !== 'refuted');
  const active = list.filter((a) => !['inactive', 'resolved'].includes(clinical(a.clinicalStatus)));
  const none = active.length === 0;
  return el('section', {id: 'allergies', class: `card allergies${none ? ' none' : ''}`, 'aria-labelledby': 'allergies-title'},
    el('h3', {id: 'allergies-title'}, t('ws.allergies')),
    none ? el('p', {}, t('ws.allergies.none')) : el('ul', {class: 'list'}, active.map((a) => el('li', {},
      el('strong', {}, codeText(a.code)),
      a.criticality === 'high' ? el('span', {class: 'badge danger'}, t('ws.allergy.high')) : null,
      ' ',
      (a.reaction || []).flatMap((r) => (r.manifestation || []).map(codeText)).join('、'),
    ))));
}

function problemList(settled) {
  if (settled.status === 'rejected') return failed(settled);
  const rank = {active: 0, recurrence: 0, relapse: 0, remission: 1, inactive: 2, resolved: 2};
  const items = entries(settled.value, 'Condition')
    .filter((c) => clinical(c.verificationStatus) !== 'entered-in-error')
    .sort((a, b) => (rank[clinical(a.clinicalStatus)] ?? 1) - (rank[clinical(b.clinicalStatus)] ?? 1)
      || String(b.onsetDateTime || b.recordedDate || '').localeCompare(String(a.onsetDateTime || a.recordedDate || '')));
  if (!items.length) return el('p', {class: 'muted'}, t('ws.problems.none'));
  return el('ul', {class: 'list'}, items.map((c) => el('li', {},
    el('strong', {}, codeText(c.code)), ' ',
    el('span', {class: 'badge'}, status(clinical(c.clinicalStatus))), ' ',
    el('span', {class: 'muted small'}, fmtDate(c.onsetDateTime || c.recordedDate)))));
}

function medicationList(settled) {
  if (settled.status === 'rejected') return failed(settled);
  const all = entries(settled.value, 'MedicationRequest').filter((m) => m.status !== 'entered-in-error');
  const current = all.filter((m) => ['active', 'on-hold', 'draft'].includes(m.status));
  const earlier = all.filter((m) => !current.includes(m));
  const item = (m) => el('li', {},
    el('strong', {}, codeText(m.medicationCodeableConcept) || (m.medicationReference || {}).display || ''), ' ',
    el('span', {class: 'badge'}, status(m.status)),
    el('div', {class: 'small'}, ((m.dosageInstruction || [])[0] || {}).text || ''),
    el('div', {class: 'small muted'}, fmtDate(m.authoredOn)));
  return el('div', {},
    current.length ? el('ul', {class: 'list'}, current.map(item)) : el('p', {class: 'muted'}, t('ws.medications.none')),
    earlier.length ? el('details', {}, el('summary', {}, `${t('ws.status.completed')} / ${t('ws.status.stopped')} (${earlier.length})`),
      el('ul', {class: 'list'}, earlier.slice(0, 30).map(item))) : null);
}

function encounterList(settled) {
  if (settled.status === 'rejected') return failed(settled);
  const items = entries(settled.value, 'Encounter');
  if (!items.length) return el('p', {class: 'muted'}, t('ws.encounters.none'));
  return el('ul', {class: 'list'}, items.map((e) => el('li', {},
    el('strong', {}, fmtDate((e.period || {}).start)), ' ',
    codeText((e.type || [])[0]) || codeText(e.serviceType) || (e.class || {}).display || (e.class || {}).code || '', ' ',
    el('span', {class: 'badge'}, status(e.status)),
    (e.reasonCode || []).length ? el('div', {class: 'small'}, e.reasonCode.map(codeText).join('、')) : null,
    (e.serviceProvider || {}).display ? el('div', {class: 'small muted'}, e.serviceProvider.display) : null)));
}
