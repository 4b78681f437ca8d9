// Patients as a nurse sees them (name, sex, age, record number) and identification: a scanned or
// typed wristband / card identifier -> the Patient and their current Encounter.

import { fhir } from '../common/smart.js';
import { t } from '../common/i18n.js';
import { humanName, entries } from '../common/ui.js';

export function patientName(p) {
  return humanName(p) || (p && p.id) || '';
}

export function genderText(p) {
  return t(`nurse.gender.${(p && p.gender) || 'unknown'}`);
}

export function ageYears(p, now = new Date()) {
  if (!p || !p.birthDate) return null;
  const [y, m = 1, d = 1] = p.birthDate.split('-').map(Number);
  let age = now.getFullYear() - y;
  if (now.getMonth() + 1 < m || (now.getMonth() + 1 === m && now.getDate() < d)) age -= 1;
  return age;
}

/**
 * The hospital record number (MRN) on the wristband: an identifier in a `/sid/mrn/<org>` system,
 * this hospital's (`org`) first.
 */
export function mrnOf(p, org) {
  const ids = ((p && p.identifier) || []).filter((x) => (x.system || '').includes('/sid/mrn/'));
  const i = ids.find((x) => org && x.system.endsWith(`/sid/mrn/${org}`)) || ids[0];
  return i ? i.value : '';
}

function refId(reference, type) {
  const r = (reference && reference.reference) || '';
  return r.startsWith(`${type}/`) ? r.slice(type.length + 1) : null;
}
export { refId };

/** A bundle's resources, in order. */
export const resources = (bundle) => entries(bundle);

/**
 * The `system|value` a scanned or typed text stands for. Scanners give `system|value`; a typed
 * bare number is looked up (FHIR token search without a system matches any system) among the
 * patients and admissions this nurse can see.
 */
async function qualify(text) {
  if (text.includes('|')) return text;
  const q = encodeURIComponent(text);
  for (const type of ['Patient', 'Encounter']) {
    const found = resources(await fhir(`${type}?identifier=${q}&_count=2`));
    if (found.length > 1) throw new Error(t('nurse.identify.many'));
    if (found.length === 1) {
      const id = (found[0].identifier || []).find((i) => i.value === text);
      if (id && id.system) return `${id.system}|${id.value}`;
    }
  }
  throw new Error(t('nurse.identify.none'));
}

/** {patient, encounter|null} for a scanned / typed identifier, through Patient/$identify. */
export async function identify(text) {
  const ident = await qualify(text.trim());
  const got = resources(await fhir(`Patient/$identify?identifier=${encodeURIComponent(ident)}`));
  const patient = got.find((r) => r.resourceType === 'Patient');
  if (!patient) throw new Error(t('nurse.identify.none'));
  return { patient, encounter: got.find((r) => r.resourceType === 'Encounter') || null, identifier: ident };
}

/**
 * The wristband text a nurse scanned during the medication double check, as `system|value`: a
 * bare number is qualified with the system of the current patient's identifier holding it (the
 * server then checks that it identifies the order's patient).
 */
export function wristbandIdentifier(text, patient) {
  const s = text.trim();
  if (s.includes('|')) return s;
  const id = ((patient && patient.identifier) || []).find((i) => i.value === s && i.system);
  return id ? `${id.system}|${id.value}` : null;
}
