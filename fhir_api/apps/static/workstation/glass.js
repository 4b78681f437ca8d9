// Break-the-glass (emergency access), as the server implements it (fhir_api/security):
// a clinician states a reason and sends it with each request that names the patient, in the
// header `X-Break-Glass: <percent-encoded UTF-8 reason>`. The server then lifts the treatment
// and consent rules for that patient for that request only, audits the access with purpose of
// use BTG and tells the patient. Without it, what consent hides answers like a resource that
// does not exist (404) and some operations answer 403.
//
// The reason lives in memory only (this tab, this patient): it is never stored, and it is
// gone on reload or sign-out, so emergency access has to be asserted again.

const reasons = new Map(); // patient id -> reason

export const HEADER = 'X-Break-Glass';

export function setReason(patientId, reason) {
  const r = String(reason || '').trim();
  if (!patientId || !r) throw new Error('A break-the-glass reason is required');
  reasons.set(patientId, r.slice(0, 500));
}

export function reasonFor(patientId) {
  return reasons.get(patientId) || null;
}

export function clear(patientId) {
  if (patientId) reasons.delete(patientId);
  else reasons.clear();
}

/** The request headers that carry the break-the-glass reason for `patientId` (or none). */
export function headersFor(patientId) {
  const r = reasons.get(patientId);
  return r ? { [HEADER]: encodeURIComponent(r) } : {};
}

/**
 * Whether an error of reading a patient we were sent to (from the clinic list, a queue call or
 * an exchange id) means "restricted": 404 (not visible to you: consent or no care relationship)
 * or 403 (refused by the access policy).
 */
export function isRestricted(err) {
  const status = err && typeof err.status === 'number' ? err.status : 0;
  return status === 403 || status === 404;
}
