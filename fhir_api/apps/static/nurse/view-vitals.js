// The vital-signs panel of the patient view: the form with live plausible-range warnings, saving
// through the outbox, and the recent readings.

import { fhir } from '../common/smart.js';
import { t } from '../common/i18n.js';
import { el } from '../common/ui.js';
import { newId } from './outbox.js';
import { patientName, resources } from './patients.js';
import { $, state, notice, alertText, errorText, submit, fmtTime, latest } from './station.js';
import { FIELDS, checkReadings, vitalsParameters, readingsText, serverWarnings, observationLine, unitLabel } from './vitals.js';

export async function loadRecent() {
  const p = state.current && state.current.patient;
  if (!p) return;
  const ul = $('vitals-recent');
  const fresh = latest('vitals');
  try {
    const got = resources(await fhir(`Observation?subject=Patient/${p.id}&category=vital-signs&_sort=-date&_count=10`));
    if (!fresh()) return;
    ul.replaceChildren(...(got.length
      ? got.map((o) => {
        const [label, value, when] = observationLine(o);
        return el('li', {}, el('span', {}, label), el('strong', {}, value), el('span', { class: 'muted' }, fmtTime(when)));
      })
      : [el('li', { class: 'muted' }, t('nurse.vitals.none'))]));
  } catch (err) {
    if (fresh()) ul.replaceChildren(el('li', { class: 'muted' }, errorText(err)));
  }
}

export function buildVitalsFields() {
  const box = $('vitals-fields');
  box.replaceChildren(...FIELDS.map(([kind, , step]) => {
    const r = state.rules.vitals[kind];
    const id = `v-${kind}`;
    return el('div', { class: 'field' },
      el('label', { for: id }, `${t(`nurse.vitals.${kind}`)} (${unitLabel(kind)})`),
      el('input', {
        id, name: kind, type: 'number', inputmode: 'decimal', step, min: '0',
        'aria-describedby': `${id}-hint ${id}-warn`,
        oninput: () => liveCheck(),
      }),
      el('span', { id: `${id}-hint`, class: 'hint' }, t('nurse.vitals.range', { low: r.low, high: r.high, unit: unitLabel(kind) })),
      el('span', { id: `${id}-warn`, class: 'warn', role: 'status' }),
    );
  }));
}

export function rawVitals() {
  const raw = {};
  for (const [kind] of FIELDS) raw[kind] = $(`v-${kind}`).value;
  return raw;
}

export function clearVitalsMessages() {
  state.confirmed = false;
  $('vitals-confirm').hidden = true;
  for (const [kind] of FIELDS) {
    const w = $(`v-${kind}`);
    if (!w) continue;
    $(`v-${kind}-warn`).textContent = '';
    w.removeAttribute('aria-invalid');
  }
}

/** Show each field's warning (or error) as the nurse types (a changed value needs a new look). */
function liveCheck({ edited = true } = {}) {
  const result = checkReadings(rawVitals(), state.rules);
  const { warnings, errors } = result;
  if (edited) {
    state.confirmed = false;
    $('vitals-confirm').hidden = true;
  }
  for (const [kind] of FIELDS) {
    const text = errors[kind] || warnings[kind] || '';
    $(`v-${kind}-warn`).textContent = text;
    if (errors[kind]) $(`v-${kind}`).setAttribute('aria-invalid', 'true');
    else $(`v-${kind}`).removeAttribute('aria-invalid');
  }
  return result;
}

export async function saveVitals(ev) {
  ev.preventDefault();
  notice('');
  alertText('');
  const { readings, warnings, errors } = liveCheck({ edited: false });
  const firstError = Object.keys(errors)[0];
  if (firstError) {
    $(`v-${firstError}`).focus();
    return;
  }
  if (!Object.keys(readings).length) {
    alertText(t('nurse.vitals.empty'));
    $(`v-${FIELDS[0][0]}`).focus();
    return;
  }
  if (Object.keys(warnings).length && !state.confirmed) {
    // implausible values are kept (the server never refuses them) but looked at twice
    state.confirmed = true;
    $('vitals-confirm').textContent = t('nurse.vitals.confirm');
    $('vitals-confirm').hidden = false;
    return;
  }
  const { patient, encounter } = state.current;
  const clientId = newId();
  const entry = {
    id: clientId,
    kind: 'vitals',
    path: `Patient/${patient.id}/$record-vitals`,
    body: vitalsParameters({
      clientId, readings, encounter: encounter && encounter.id, effective: new Date().toISOString(),
    }),
    summary: { patient: patientName(patient), values: readingsText(readings) },
  };
  const done = await submit(entry);
  if (done.sent) {
    const count = resources(done.value).filter((r) => r.resourceType === 'Observation').length;
    const extra = serverWarnings(done.value).map((w) => t('nurse.vitals.serverWarning', { text: w }));
    notice([t('nurse.vitals.saved', { count }), ...extra].join(' '));
    $('vitals-form').reset();
    clearVitalsMessages();
    loadRecent();
  } else if (done.queued) {
    notice(t('nurse.vitals.queued'));
    $('vitals-form').reset();
    clearVitalsMessages();
  } else {
    alertText(errorText(done.error));
  }
}
