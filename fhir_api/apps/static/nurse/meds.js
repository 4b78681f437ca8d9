// Medication administration with the double check (MedicationRequest/{id}/$administer): the
// nurse scans the wristband and the drug; a high-alert drug (ATC prefixes in rules.json) also
// names the second nurse who checked (双人核对). The server checks all of it again.

import { fhir } from '../common/smart.js';
import { t } from '../common/i18n.js';
import { humanName, codeText } from '../common/ui.js';
import { resources, refId } from './patients.js';

export async function activeOrders(patientId) {
  return resources(
    await fhir(`MedicationRequest?subject=Patient/${patientId}&status=active&_count=50`),
  );
}

function concept(mr) {
  return mr.medicationCodeableConcept || null;
}

export function drugName(mr) {
  const c = concept(mr);
  if (c) return codeText(c);
  return mr.medicationReference?.display || mr.medicationReference?.reference || mr.id;
}

export function doseText(mr) {
  const di = (mr.dosageInstruction || [])[0] || {};
  const q = di.doseAndRate?.[0]?.doseQuantity;
  return [q ? `${q.value} ${q.unit || q.code || ''}`.trim() : '', di.text || ''].filter(Boolean).join(' · ');
}

export function isHighAlert(mr, rules) {
  const c = concept(mr);
  return ((c && c.coding) || []).some(
    (cd) => cd.system === 'http://www.whocc.no/atc' && rules.highAlertAtc.some((p) => (cd.code || '').startsWith(p)),
  );
}

/** [{id, name}] of the other nurses of the signed-in nurse's organizations (possible checkers). */
export async function colleagues(practitionerRef) {
  if (!practitionerRef) return [];
  const mine = resources(await fhir(`PractitionerRole?practitioner=${encodeURIComponent(practitionerRef)}&_count=20`));
  const orgs = [...new Set(mine.map((r) => refId(r.organization, 'Organization')).filter(Boolean))];
  const out = new Map();
  for (const org of orgs) {
    const got = resources(
      await fhir(`PractitionerRole?organization=Organization/${org}&_include=PractitionerRole:practitioner&_count=200`),
    );
    const people = new Map(got.filter((r) => r.resourceType === 'Practitioner').map((p) => [p.id, p]));
    for (const role of got.filter((r) => r.resourceType === 'PractitionerRole')) {
      const nurse = (role.code || []).some((c) => (c.coding || []).some((x) => /nurse/.test(x.code || '')));
      const pid = refId(role.practitioner, 'Practitioner');
      if (!nurse || !pid || `Practitioner/${pid}` === practitionerRef || out.has(pid)) continue;
      out.set(pid, { id: pid, name: humanName(people.get(pid)) || role.practitioner.display || pid });
    }
  }
  return [...out.values()];
}

/** Parameters for MedicationRequest/{id}/$administer (http.py administer_op). */
export function administerParameters({ clientId, patientIdentifier, drugCode, verifier, effective }) {
  const parameter = [
    { name: 'clientId', valueString: clientId },
    { name: 'patientIdentifier', valueString: patientIdentifier },
    { name: 'drugCode', valueString: drugCode },
  ];
  if (verifier) parameter.push({ name: 'verifier', valueReference: { reference: `Practitioner/${verifier}` } });
  if (effective) parameter.push({ name: 'effective', valueDateTime: effective });
  return { resourceType: 'Parameters', parameter };
}

/**
 * What a refused administration means, in the page's language: the server's double-check
 * answers (409, English diagnostics) are recognised; anything else is shown as the server said.
 */
export function explainRefusal(err) {
  const text = (err && err.message) || String(err);
  if (err && err.status === 409) {
    if (text.includes('(wrong patient)')) return t('nurse.meds.wrongPatient');
    if (text.includes('(wrong drug)')) return t('nurse.meds.wrongDrug');
    if (text.includes('双人核对')) return t('nurse.meds.needVerifier');
  }
  return t('nurse.error', { text });
}
