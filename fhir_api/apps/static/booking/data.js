// What the booking app reads from the FHIR API: the directory (hospitals, departments, doctors),
// free slots ($find), and display names of referenced resources (cached per page load).

import {fhir} from '../common/smart.js';
import {entries, fmtDateTime, humanName, isoDay} from '../common/ui.js';

export const DEPARTMENT_SYSTEM = 'https://ehr.example.cn/fhir/CodeSystem/department';
export const HEALTH_CARD_SYSTEM = 'https://ehr.example.cn/fhir/sid/health-card';
export const BOOKING_EXT = 'https://ehr.example.cn/fhir/StructureDefinition/appointment-booking';
export const SLOT_NUMBER_EXT = 'https://ehr.example.cn/fhir/StructureDefinition/slot-number';
export const SLOT_SESSION_EXT = 'https://ehr.example.cn/fhir/StructureDefinition/slot-session';
export const HOLD_EXT = 'https://ehr.example.cn/fhir/StructureDefinition/slot-hold';
const NO_APPOINTMENTS = new Set(['20']); // emergency departments take no bookings

const cache = new Map();

function once(key, load) {
  if (!cache.has(key)) {
    const p = load();
    p.catch(() => cache.delete(key));
    cache.set(key, p);
  }
  return cache.get(key);
}

export function refId(ref, type) {
  const value = typeof ref === 'string' ? ref : (ref && ref.reference) || '';
  return value.startsWith(`${type}/`) ? value.slice(type.length + 1) : null;
}

export function ext(resource, url) {
  return ((resource && resource.extension) || []).find((e) => e.url === url) || null;
}

export function subExt(resource, url, sub) {
  const e = ext(resource, url);
  const part = e && (e.extension || []).find((x) => x.url === sub);
  if (!part) return null;
  const key = Object.keys(part).find((k) => k.startsWith('value'));
  return key ? part[key] : null;
}

export function deptCode(res) {
  for (const cc of [...(res.type || []), ...(res.serviceType || []), ...(res.specialty || [])]) {
    const c = (cc.coding || []).find((x) => x.system === DEPARTMENT_SYSTEM);
    if (c) return c.code;
  }
  return null;
}

async function all(path) {
  const out = [];
  let page = await fhir(path);
  for (let i = 0; page && i < 20; i += 1) {
    out.push(...entries(page));
    const next = (page.link || []).find((l) => l.relation === 'next');
    page = next ? await fhir(next.url) : null;
  }
  return out;
}

/** Hospitals first, then community centres. */
export function hospitals() {
  return once('orgs', async () => {
    const orgs = await all('Organization?_count=100');
    const rank = (o) => (JSON.stringify(o.type || []).includes('hospital') ? 0 : 1);
    return orgs.filter((o) => o.active !== false).sort((a, b) => rank(a) - rank(b) || a.id.localeCompare(b.id));
  });
}

/** Every bookable department (HealthcareService), optionally of one organization. */
export function departments(orgId) {
  return once(`hcs:${orgId || '*'}`, async () => {
    const q = orgId ? `&organization=Organization/${encodeURIComponent(orgId)}` : '';
    const list = await all(`HealthcareService?_count=200${q}`);
    return list.filter((s) => s.active !== false && !NO_APPOINTMENTS.has(deptCode(s)));
  });
}

/** The doctors (PractitionerRole) of a department. */
export function doctors(serviceId) {
  return once(`roles:${serviceId}`, async () => {
    const roles = await all(`PractitionerRole?service=HealthcareService/${encodeURIComponent(serviceId)}&_count=100`);
    return roles.filter((r) => r.active !== false);
  });
}

export function doctorName(role) {
  return (role && role.practitioner && role.practitioner.display) || (role && role.id) || '';
}

/** A readable name for a reference (Organization, Practitioner, PractitionerRole, …). */
export function nameOf(ref) {
  const value = typeof ref === 'string' ? ref : (ref && ref.reference) || '';
  if (ref && ref.display) return Promise.resolve(ref.display);
  if (!/^[A-Za-z]+\/[A-Za-z0-9\-.]{1,64}$/.test(value)) return Promise.resolve(value);
  return once(`name:${value}`, async () => {
    try {
      const res = await fhir(value);
      if (res.resourceType === 'PractitionerRole') return doctorName(res);
      if (res.name && typeof res.name === 'string') return res.name;
      return humanName(res) || value;
    } catch {
      return value;
    }
  });
}

/** Free slots ($find) for the next `days` days, tagged with their doctor. */
export async function freeSlots({service, roles, patient, days = 7}) {
  const start = isoDay();
  const end = isoDay(new Date(Date.now() + days * 86400000));
  const one = async (role) => {
    const q = new URLSearchParams({start, end, _count: '400', patient: `Patient/${patient}`});
    if (role) q.set('practitioner', `PractitionerRole/${role.id}`);
    else q.set('service', `HealthcareService/${service}`);
    const bundle = await fhir(`Appointment/$find?${q}`);
    return entries(bundle, 'Slot').map((slot) => ({slot, role}));
  };
  const lists = await Promise.all((roles && roles.length ? roles : [null]).map(one));
  return lists.flat().sort((a, b) => a.slot.start.localeCompare(b.slot.start));
}

/** Parameters body from {name: valueX object}. */
export function parameters(values) {
  return {
    resourceType: 'Parameters',
    parameter: Object.entries(values)
      .filter(([, v]) => v !== undefined && v !== null)
      .map(([name, v]) => ({name, ...v})),
  };
}

export const reference = (type, id) => ({valueReference: {reference: `${type}/${id}`}});

/**
 * Until when the patient may cancel or move a booking online (the server stamps it from the
 * hospital's policy; the server decides all the same): {key, when} for t(), or null.
 * `cutoff.until` while it is open; once closed, `cutoff.within` before it is booked (a hold),
 * `cutoff.passed` after.
 */
export function cutoffNote(appt) {
  const before = subExt(appt, BOOKING_EXT, 'cancelBefore');
  if (!before) return null;
  const when = fmtDateTime(before);
  if (Date.now() < Date.parse(before)) return {key: 'cutoff.until', when};
  return {key: appt.status === 'booked' ? 'cutoff.passed' : 'cutoff.within', when};
}

/** The Appointment's display facts: department, doctor, place, number, session. */
export async function describeAppointment(appt) {
  const actors = (appt.participant || []).map((p) => p.actor || {});
  const find = (type) => actors.find((a) => (a.reference || '').startsWith(`${type}/`));
  const dept = find('HealthcareService');
  const role = find('PractitionerRole');
  const loc = find('Location');
  const [deptName, doctor, place] = await Promise.all([
    dept ? nameOf(dept) : Promise.resolve(''),
    role ? nameOf(role) : Promise.resolve(''),
    loc ? nameOf(loc) : Promise.resolve(''),
  ]);
  return {
    dept: deptName || (appt.serviceType && appt.serviceType[0] && appt.serviceType[0].text) || '',
    doctor,
    place,
    number: subExt(appt, BOOKING_EXT, 'slotNumber'),
    session: subExt(appt, BOOKING_EXT, 'session'),
    org: subExt(appt, BOOKING_EXT, 'organization'),
    type: (appt.appointmentType && appt.appointmentType.text) || '',
  };
}
