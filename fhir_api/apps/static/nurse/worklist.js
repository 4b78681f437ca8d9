// The ward worklist: which wards this nurse works on (their PractitionerRole's locations, then
// the wards of their organization) and Location/{ward}/$ward-worklist grouped per patient.

import { fhir } from '../common/smart.js';
import { codeText } from '../common/ui.js';
import { resources, refId } from './patients.js';

const isWard = (loc) =>
  ((loc.physicalType && loc.physicalType.coding) || []).some((c) => c.code === 'wa');

/**
 * The wards the signed-in nurse may pick ([{id, name}], their own first) and their
 * organizations (ids).
 */
export async function wardsOf(practitionerRef) {
  const roles = practitionerRef
    ? resources(await fhir(`PractitionerRole?practitioner=${encodeURIComponent(practitionerRef)}&_count=20`))
    : [];
  const own = roles.flatMap((r) => (r.location || []).map((l) => refId(l, 'Location')).filter(Boolean));
  const orgs = [...new Set(roles.map((r) => refId(r.organization, 'Organization')).filter(Boolean))];
  const seen = new Map();
  if (own.length) {
    for (const loc of resources(await fhir(`Location?_id=${own.join(',')}`))) {
      if (isWard(loc)) seen.set(loc.id, loc);
    }
  }
  for (const org of orgs) {
    for (const loc of resources(await fhir(`Location?organization=Organization/${org}&_count=200`))) {
      if (isWard(loc) && !seen.has(loc.id)) seen.set(loc.id, loc);
    }
  }
  return { wards: [...seen.values()].map((l) => ({ id: l.id, name: l.name || l.id })), orgs };
}

/** Bed names of a ward: {locationId: name}. */
export async function bedNames(ward) {
  const out = {};
  for (const loc of resources(await fhir(`Location?partof=Location/${ward}&_count=500`))) {
    out[loc.id] = loc.name || loc.id;
  }
  return out;
}

/**
 * The worklist as [{encounter, patient, tasks, bed}]: the operation answers a Bundle with each
 * Encounter followed by its Patient and its due Tasks, the most urgent patient first.
 */
export async function worklist(ward, horizonHours, beds) {
  const got = resources(await fhir(`Location/${ward}/$ward-worklist?horizon=${horizonHours}`));
  const items = [];
  for (const r of got) {
    if (r.resourceType === 'Encounter') {
      const locs = (r.location || []).map((l) => refId(l.location, 'Location')).filter(Boolean);
      const bedId = locs.find((l) => beds[l]) || null;
      items.push({ encounter: r, patient: null, tasks: [], bed: bedId ? beds[bedId] : '' });
    } else if (items.length && r.resourceType === 'Patient') {
      items[items.length - 1].patient = r;
    } else if (items.length && r.resourceType === 'Task') {
      items[items.length - 1].tasks.push(r);
    }
  }
  return items;
}

export function taskText(task) {
  return task.description || codeText(task.code) || task.id;
}

export function taskDue(task) {
  return (task.executionPeriod && task.executionPeriod.start) || null;
}
