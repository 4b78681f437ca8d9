// Vital signs: the fields of the bedside form, plausible-range checks (warnings, never a
// refusal: the record is the nurse's) and the Parameters body of Patient/{id}/$record-vitals.
// Ranges come from rules.json (mirrored from appointments/vitals.py; the server checks again and
// its warnings are shown too).

import { t } from '../common/i18n.js';
import { codeText } from '../common/ui.js';

/** Form fields in bedside order: [kind, unit shown, input step]. */
export const FIELDS = [
  ['body-temperature', '℃', '0.1'],
  ['heart-rate', '/min', '1'],
  ['respiratory-rate', '/min', '1'],
  ['systolic', 'mmHg', '1'],
  ['diastolic', 'mmHg', '1'],
  ['oxygen-saturation', '%', '1'],
  ['body-weight', 'kg', '0.1'],
];

export function unitLabel(kind) {
  const f = FIELDS.find((x) => x[0] === kind);
  if (!f) return '';
  return f[1] === '/min' ? t('nurse.unit.perMin') : f[1];
}

/** The warning for one value (a number) or null. */
export function rangeWarning(kind, value, rules) {
  const r = rules.vitals[kind];
  if (!r || value === null || Number.isNaN(value)) return null;
  if (value >= r.low && value <= r.high) return null;
  return t('nurse.vitals.implausible', {
    label: t(`nurse.vitals.${kind}`), value, unit: unitLabel(kind), low: r.low, high: r.high,
  });
}

/**
 * Check the raw form values ({kind: string}). Returns {readings, warnings, errors}:
 * readings as the operation wants them ({kind: number} and blood-pressure: [sys, dia]),
 * warnings per kind (plausibility), errors (blocking: not a number, half a blood pressure).
 */
export function checkReadings(raw, rules) {
  const readings = {};
  const warnings = {};
  const errors = {};
  const nums = {};
  for (const [kind] of FIELDS) {
    const text = (raw[kind] ?? '').toString().trim().replace(',', '.');
    if (!text) continue;
    const v = Number(text);
    if (!Number.isFinite(v)) {
      errors[kind] = t('nurse.vitals.notNumber', { label: t(`nurse.vitals.${kind}`) });
      continue;
    }
    nums[kind] = v;
    const w = rangeWarning(kind, v, rules);
    if (w) warnings[kind] = w;
  }
  const sys = nums.systolic;
  const dia = nums.diastolic;
  if ((sys === undefined) !== (dia === undefined)) {
    errors[sys === undefined ? 'systolic' : 'diastolic'] = t('nurse.vitals.bpPair');
  } else if (sys !== undefined) {
    readings['blood-pressure'] = [sys, dia];
    if (dia >= sys && !warnings.diastolic) warnings.diastolic = t('nurse.vitals.bpOrder');
  }
  for (const [kind, v] of Object.entries(nums)) {
    if (kind !== 'systolic' && kind !== 'diastolic') readings[kind] = v;
  }
  return { readings, warnings, errors };
}

/** Parameters for Patient/{id}/$record-vitals (http.py vitals_op). */
export function vitalsParameters({ clientId, readings, encounter, effective }) {
  const parameter = [{ name: 'clientId', valueString: clientId }];
  if (encounter) parameter.push({ name: 'encounter', valueReference: { reference: `Encounter/${encounter}` } });
  if (effective) parameter.push({ name: 'effective', valueDateTime: effective });
  for (const [kind, value] of Object.entries(readings)) {
    const values = Array.isArray(value) ? value : [value];
    parameter.push({
      name: 'reading',
      part: [{ name: 'kind', valueCode: kind }, ...values.map((v) => ({ name: 'value', valueDecimal: v }))],
    });
  }
  return { resourceType: 'Parameters', parameter };
}

/** A short text of readings for the pending list: "体温 36.8, 血压 120/80". */
export function readingsText(readings) {
  return Object.entries(readings)
    .map(([k, v]) => `${t(`nurse.vitals.${k}`)} ${Array.isArray(v) ? v.join('/') : v}`)
    .join(', ');
}

/** Warnings the server returned (the OperationOutcome entry of the result Bundle). */
export function serverWarnings(bundle) {
  const out = [];
  for (const e of (bundle && bundle.entry) || []) {
    const r = e.resource || {};
    if (r.resourceType !== 'OperationOutcome') continue;
    for (const i of r.issue || []) if (i.diagnostics) out.push(i.diagnostics);
  }
  return out;
}

/** A UCUM unit as people write it. */
export function unitText(q) {
  const code = q && (q.code || q.unit);
  const shown = { Cel: '℃', 'mm[Hg]': 'mmHg', '/min': t('nurse.unit.perMin'), 'kg/m2': 'kg/m²' };
  return shown[code] || (q && q.unit) || '';
}

/** One line of a stored vital-sign Observation: [label, value text, time]. */
export function observationLine(o) {
  const label = codeText(o.code);
  let value = '';
  if (o.valueQuantity) value = `${o.valueQuantity.value} ${unitText(o.valueQuantity)}`.trim();
  else if (o.component) {
    value = o.component.map((c) => c.valueQuantity?.value).join('/');
    const unit = unitText(o.component[0]?.valueQuantity);
    if (unit) value += ` ${unit}`;
  }
  return [label, value, o.effectiveDateTime || ''];
}
