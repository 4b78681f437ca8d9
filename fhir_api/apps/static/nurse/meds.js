// Medication administration with the double check (MedicationRequest/{id}/$administer): the
// nurse scans the wristband and the drug; for a high-alert drug (ATC prefixes in rules.json) the
// second nurse signs the check on this tablet with her own user name and password (双人核对):
// POST /auth/witness answers with a witness assertion (5 minutes, for this order only, one
// administration), sent as `verifierAssertion`. The server checks all of it again.

import { fhir, session, FhirError } from '../common/smart.js';
import { t, lang } from '../common/i18n.js';
import { codeText } from '../common/ui.js';
import { resources } from './patients.js';

const WITNESS_URL = '/auth/witness';

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

/** What the second nurse's signature is for: giving this order (checked by the server). */
export function witnessPurpose(mr) {
  return `administer:MedicationRequest/${mr.id}`;
}

/**
 * The second nurse signs the double check of `mr` (POST /auth/witness, with this nurse's access
 * token). Resolves to {token, name, purpose, expiresAt}; throws FhirError (status 0: no network)
 * whose message is the server's, in the page's language. The password is only sent, never kept.
 */
export async function signWitness(mr, username, password) {
  const s = session();
  if (!s) throw new FhirError(401, t('nurse.error.auth'));
  const purpose = witnessPurpose(mr);
  let resp;
  try {
    resp = await fetch(WITNESS_URL, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json', Authorization: `Bearer ${s.accessToken}` },
      body: JSON.stringify({ username, password, purpose, lang: lang() }),
    });
  } catch {
    throw new FhirError(0, t('nurse.witness.offline'));
  }
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) {
    const err = new FhirError(resp.status, body.error_description || `HTTP ${resp.status}`);
    err.code = body.error;
    throw err;
  }
  return {
    token: body.witness_token,
    name: body.display_name,
    purpose,
    expiresAt: Date.now() + (body.expires_in || 0) * 1000,
  };
}

/** Parameters for MedicationRequest/{id}/$administer (http.py administer_op). */
export function administerParameters({ clientId, patientIdentifier, drugCode, witness, effective }) {
  const parameter = [
    { name: 'clientId', valueString: clientId },
    { name: 'patientIdentifier', valueString: patientIdentifier },
    { name: 'drugCode', valueString: drugCode },
  ];
  if (witness) parameter.push({ name: 'verifierAssertion', valueString: witness });
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
    // an expired (5 minutes: a record queued offline too long), reused or invalid signature
    if (text.includes("second nurse's signature")) return t('nurse.meds.witnessInvalid');
    if (text.includes('双人核对')) return t('nurse.meds.needVerifier');
  }
  return t('nurse.error', { text });
}
