// What the clinician typed, scanned or tapped into the "find patient" box, turned into FHIR
// Patient searches (http://hl7.org/fhir/R4/patient.html#search). Pure: no DOM, no network.
//
//   "Patient/123"            -> read Patient/123 (the exchange id, e.g. from a referral)
//   "system|value"           -> identifier=system|value, as typed
//   18-character citizen ID  -> identifier=urn:oid:2.16.156.10011.1.3|ID (the server matches it
//                               against the keyed hash it stores; the clear ID is never stored)
//   17-character card id     -> identifier=<health-card system>|CID (the one-card serial, read
//                               by a card reader that types it, or typed from the card)
//   Chinese text or letters  -> name=<text>
//   other (digits, MRN …)    -> identifier=<value> (any system: MRN, health record number …)
//                               and, when it could also be a name, name=<text>

export const CITIZEN_ID_SYSTEM = 'urn:oid:2.16.156.10011.1.3';
export const HEALTH_CARD_SYSTEM = 'https://ehr.example.cn/fhir/sid/health-card';

const CITIZEN_ID = /^\d{17}[\dX]$/;
const CROCKFORD = /^[0-9A-HJKMNP-TV-Z]{17}$/;
const CJK = /[\u3400-\u9fff]/;

/**
 * The searches to run for `input`, in order: [{kind, path, params}] where kind is one of
 * "id", "citizen-id", "card", "identifier", "name". `params` is a URLSearchParams-ready list.
 */
export function patientQueries(input, { count = 20 } = {}) {
  const text = String(input || '').trim().replace(/\s+/g, ' ');
  if (!text) return [];
  const summary = ['_count', String(count)];
  const direct = /^Patient\/([A-Za-z0-9\-.]{1,64})$/.exec(text);
  if (direct) return [{ kind: 'id', path: `Patient/${direct[1]}`, params: [] }];
  if (text.includes('|')) {
    return [{ kind: 'identifier', path: 'Patient', params: [['identifier', text], summary] }];
  }
  const compact = text.replace(/[\s-]/g, '').toUpperCase();
  if (CITIZEN_ID.test(compact)) {
    return [{ kind: 'citizen-id', path: 'Patient', params: [['identifier', `${CITIZEN_ID_SYSTEM}|${compact}`], summary] }];
  }
  if (CROCKFORD.test(compact) && /\d/.test(compact)) {
    return [{ kind: 'card', path: 'Patient', params: [['identifier', `${HEALTH_CARD_SYSTEM}|${compact}`], summary] }];
  }
  if (CJK.test(text) || /^[A-Za-z][A-Za-z ]*$/.test(text)) {
    return [{ kind: 'name', path: 'Patient', params: [['name', text], summary] }];
  }
  return [{ kind: 'identifier', path: 'Patient', params: [['identifier', text.replace(/\s/g, '')], summary] }];
}
