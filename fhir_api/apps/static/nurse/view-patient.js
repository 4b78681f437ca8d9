// The patient view (banner with name, sex, age, MRN and bed), reached from the worklist or by
// scanning / typing a wristband or card identifier.

import { fhir } from '../common/smart.js';
import { t } from '../common/i18n.js';
import { identify, patientName, genderText, mrnOf, refId } from './patients.js';
import { $, state, show, alertText, errorText, ageText } from './station.js';
import { loadOrders } from './view-meds.js';
import { loadRecent, clearVitalsMessages } from './view-vitals.js';

export async function openPatient(patient, encounter, bed) {
  await state.ready.catch(() => {});
  state.current = { patient, encounter, bed: bed || (await bedOf(encounter)) };
  renderPatientBanner();
  $('vitals-form').reset();
  clearVitalsMessages();
  $('admin-form').hidden = true;
  show('patient');
  $('patient-name').setAttribute('tabindex', '-1');
  $('patient-name').focus();
  await Promise.all([loadRecent(), loadOrders()]);
}

export function renderPatientBanner() {
  const { patient, encounter, bed: bedName } = state.current;
  $('patient-name').textContent = patientName(patient);
  const facts = [genderText(patient), ageText(patient)];
  const mrn = mrnOf(patient, state.org);
  if (mrn) facts.push(`${t('nurse.patient.mrn')} ${mrn}`);
  if (bedName) facts.push(`${t('nurse.patient.bed')} ${bedName}`);
  if (!encounter) facts.push(t('nurse.patient.noEncounter'));
  $('patient-facts').textContent = facts.filter(Boolean).join(' · ');
}

async function bedOf(encounter) {
  const locs = (encounter && encounter.location) || [];
  const current = locs.find((l) => l.status === 'active') || locs[locs.length - 1];
  if (!current) return '';
  const id = refId(current.location, 'Location');
  if (id && state.beds[id]) return state.beds[id];
  if (current.location.display) return current.location.display;
  try {
    const loc = await fhir(`Location/${id}`);
    return loc.name || id;
  } catch {
    return '';
  }
}

export async function onIdentify(ev) {
  ev.preventDefault();
  alertText('');
  const text = $('identifier').value.trim();
  if (!text) return;
  try {
    const { patient, encounter } = await identify(text);
    $('identifier').value = '';
    await openPatient(patient, encounter);
  } catch (err) {
    alertText(err && err.status ? errorText(err) : (err && err.message) || String(err));
    $('identifier').select();
  }
}
