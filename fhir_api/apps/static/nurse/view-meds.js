// The medication panel of the patient view: active orders, and giving one with the double check.
// A high-alert drug needs the second nurse's signature first (the dialog: her own user name and
// password on this tablet, POST /auth/witness); it is kept in memory for this order only, sent
// with the administration and then forgotten (one signature, one administration). The password
// field is emptied as soon as it has been read.

import { t } from '../common/i18n.js';
import { el } from '../common/ui.js';
import { activeOrders, drugName, doseText, isHighAlert, signWitness, administerParameters, explainRefusal } from './meds.js';
import { newId } from './outbox.js';
import { patientName, wristbandIdentifier } from './patients.js';
import { $, state, notice, alertText, errorText, submit, latest } from './station.js';

/** The signature in hand, if it is for `mr` and has a margin before it expires. */
function witnessFor(mr) {
  const w = state.witness;
  return w && mr && w.order === mr.id && w.expiresAt - 15000 > Date.now() ? w : null;
}

/** "核对人：…" (or "not yet confirmed") under the form of a high-alert order. */
export function renderWitness() {
  const w = witnessFor(state.order);
  const line = $('admin-witness');
  line.textContent = w ? t('nurse.meds.witnessBy', { name: w.name }) : t('nurse.meds.witnessNone');
  line.classList.toggle('ok', Boolean(w));
  $('admin-witness-sign').textContent = t(w ? 'nurse.meds.witnessAgain' : 'nurse.meds.witnessSign');
}

function forgetWitness() {
  state.witness = null;
  if (!$('admin-verify').hidden) renderWitness();
}

export async function loadOrders() {
  const p = state.current && state.current.patient;
  const ul = $('meds');
  if (!p) return;
  const fresh = latest('orders');
  try {
    const orders = await activeOrders(p.id);
    if (!fresh()) return;
    ul.replaceChildren(...(orders.length
      ? orders.map((mr) => el('li', {},
        el('span', { class: 'drug' }, drugName(mr)),
        el('span', { class: 'muted' }, doseText(mr)),
        isHighAlert(mr, state.rules) ? el('span', { class: 'tag' }, t('nurse.meds.highAlert')) : '',
        el('button', {
          type: 'button', class: 'primary',
          'aria-label': t('nurse.meds.giveWhat', { drug: drugName(mr) }),
          onclick: () => startAdministration(mr),
        }, t('nurse.meds.give')),
      ))
      : [el('li', { class: 'muted' }, t('nurse.meds.none'))]));
  } catch (err) {
    if (fresh()) ul.replaceChildren(el('li', { class: 'muted' }, errorText(err)));
  }
}

function startAdministration(mr) {
  notice('');
  alertText('');
  if (!state.order || state.order.id !== mr.id) state.witness = null;
  state.order = mr;
  const form = $('admin-form');
  form.reset();
  $('admin-title').textContent = t('nurse.meds.giveWhat', { drug: drugName(mr) });
  const high = isHighAlert(mr, state.rules);
  $('admin-alert').hidden = !high;
  $('admin-verify').hidden = !high;
  if (high) renderWitness();
  form.hidden = false;
  $('admin-wristband').focus();
}

// -- the second nurse's signature ----------------------------------------------------------------

export function openWitnessDialog() {
  const mr = state.order;
  if (!mr) return;
  $('witness-form').reset();
  $('witness-error').textContent = '';
  $('witness-what').textContent = t('nurse.witness.what', { drug: drugName(mr), patient: patientName(state.current.patient) });
  $('witness-dialog').showModal();
  $('witness-username').focus();
}

export function closeWitnessDialog() {
  $('witness-password').value = '';
  $('witness-dialog').close();
  $('admin-witness-sign').focus();
}

export async function onWitnessSubmit(ev) {
  ev.preventDefault();
  const mr = state.order;
  const username = $('witness-username').value.trim();
  const password = $('witness-password').value;
  $('witness-password').value = ''; // read once, never kept
  const error = $('witness-error');
  error.textContent = '';
  if (!username || !password) {
    error.textContent = t('nurse.witness.missing');
    $(username ? 'witness-password' : 'witness-username').focus();
    return;
  }
  const button = $('witness-submit');
  button.disabled = true;
  try {
    const signed = await signWitness(mr, username, password);
    state.witness = { ...signed, order: mr.id };
    $('witness-dialog').close();
    renderWitness();
    notice(t('nurse.meds.witnessBy', { name: signed.name }));
    $('admin-witness-sign').focus();
  } catch (err) {
    if (err && err.status === 401 && err.code === 'invalid_token') {
      $('witness-dialog').close();
      alertText(errorText(err));
      return;
    }
    error.textContent = err && err.status === 401 ? t('nurse.witness.invalid') : t('nurse.witness.failed', { text: err.message });
    $('witness-password').focus();
  } finally {
    button.disabled = false;
  }
}

// -- giving ----------------------------------------------------------------------------------------

export async function giveMedication(ev) {
  ev.preventDefault();
  notice('');
  alertText('');
  const mr = state.order;
  const { patient } = state.current;
  const wrist = wristbandIdentifier($('admin-wristband').value, patient);
  if (!wrist) {
    alertText(t('nurse.meds.wrongPatient'));
    $('admin-wristband').focus();
    return;
  }
  const high = isHighAlert(mr, state.rules);
  const witness = high ? witnessFor(mr) : null;
  if (high && !witness) {
    forgetWitness(); // an expired one is of no use
    alertText(t('nurse.meds.needVerifier'));
    $('admin-witness-sign').focus();
    return;
  }
  const clientId = newId();
  const entry = {
    id: clientId,
    kind: 'administer',
    path: `MedicationRequest/${mr.id}/$administer`,
    body: administerParameters({
      clientId, patientIdentifier: wrist, drugCode: $('admin-drug').value.trim(),
      witness: witness && witness.token, effective: new Date().toISOString(),
    }),
    summary: { patient: patientName(patient), drug: drugName(mr) },
  };
  const done = await submit(entry);
  if (done.sent) {
    forgetWitness(); // used: one signature, one administration
    notice(t('nurse.meds.done', { drug: drugName(mr) }));
    $('admin-form').hidden = true;
    loadOrders();
  } else if (done.queued) {
    forgetWitness(); // it travels with the queued record
    notice(t('nurse.meds.queued'));
    $('admin-form').hidden = true;
  } else {
    // the double check failed on the server (wrong patient, wrong drug, the signature is no
    // longer valid): the nurse fixes it here; a refused signature must be given again
    if (/second nurse's signature/.test((done.error && done.error.message) || '')) forgetWitness();
    alertText(explainRefusal(done.error));
  }
}
