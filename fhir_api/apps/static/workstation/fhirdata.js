// Reading FHIR R4 data the shared helpers (common/ui.js: humanName, codeText, entries, dates)
// do not cover: Parameters, references, codes, quantities, identifiers. Pure functions.

import {codeText} from '../common/ui.js';

/** The value of one Parameters.parameter (or part): valueX, resource or nested parts. */
export function paramValue(p) {
  if (!p) return undefined;
  for (const k of Object.keys(p)) if (k.startsWith('value')) return p[k];
  return p.resource !== undefined ? p.resource : p.part;
}

/** `{name: [param, …]}` of a Parameters resource, or of a parameter's `part`. */
export function paramsByName(paramsOrParts) {
  const list = Array.isArray(paramsOrParts) ? paramsOrParts : (paramsOrParts && paramsOrParts.parameter) || [];
  const out = {};
  for (const p of list) (out[p.name] = out[p.name] || []).push(p);
  return out;
}

/** The first value of parameter `name` (references give their `reference` string). */
export function param(paramsOrParts, name) {
  const got = paramsByName(paramsOrParts)[name];
  if (!got) return undefined;
  const v = paramValue(got[0]);
  return v && typeof v === 'object' && 'reference' in v ? v.reference : v;
}

/** "Patient/123" -> "123" when the type matches (also absolute URLs). */
export function refId(reference, type) {
  if (!reference) return null;
  const s = typeof reference === 'string' ? reference : reference.reference;
  if (!s) return null;
  const parts = s.split('/');
  const i = parts.lastIndexOf(type);
  return i >= 0 && i + 1 < parts.length ? parts[i + 1] : null;
}

/** The first code of a CodeableConcept in `system` (or any system). */
export function codeOf(cc, system) {
  for (const c of (cc && cc.coding) || []) if (!system || c.system === system) return c.code || null;
  return null;
}

/** A Quantity as "120 mmHg". */
export function quantityText(q) {
  if (!q || q.value === undefined || q.value === null) return '';
  const unit = q.unit || q.code || '';
  return unit ? `${q.value} ${unit}` : String(q.value);
}

/** Age in whole years on `today` (a Date) from a birthDate. */
export function ageYears(birthDate, today = new Date()) {
  if (!birthDate) return null;
  const [y, m, d] = String(birthDate).split('-').map(Number);
  let age = today.getFullYear() - y;
  const mm = today.getMonth() + 1;
  if (m && (mm < m || (mm === m && d && today.getDate() < d))) age -= 1;
  return age;
}

/** The visible identifiers of a Patient: [{label, value}] (masked ones show their mask). */
export function visibleIdentifiers(patient) {
  const out = [];
  for (const id of (patient && patient.identifier) || []) {
    const masked = (id.extension || []).find((e) => String(e.url).endsWith('identifier-masked-value'));
    const value = masked ? masked.valueString : id.value;
    if (!value) continue;
    out.push({ label: codeText(id.type) || id.system || '', system: id.system || '', value });
  }
  return out;
}
