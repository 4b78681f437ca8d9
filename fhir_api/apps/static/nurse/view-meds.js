// The medication panel of the patient view: active orders, and giving one with the double check.

import { t } from '../common/i18n.js';
import { el } from '../common/ui.js';
import { activeOrders, drugName, doseText, isHighAlert, colleagues, administerParameters, explainRefusal } from './meds.js';
import { newId } from './outbox.js';
import { patientName, wristbandIdentifier } from './patients.js';
import { $, state, notice, alertText, errorText, submit } from './station.js';

export async function loadOrders() {
  const p = state.current && state.current.patient;
  const ul = $('meds');
  if (!p) return;
  try {
    const orders = await activeOrders(p.id);
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
    ul.replaceChildren(el('li', { class: 'muted' }, errorText(err)));
  }
}

async function startAdministration(mr) {
  notice('');
  alertText('');
  state.order = mr;
  const form = $('admin-form');
  form.reset();
  $('admin-title').textContent = t('nurse.meds.giveWhat', { drug: drugName(mr) });
  const high = isHighAlert(mr, state.rules);
  $('admin-alert').hidden = !high;
  $('admin-verify').hidden = !high;
  form.hidden = false;
  $('admin-wristband').focus();
  if (high) {
    if (!state.colleagues) {
      try {
        state.colleagues = await colleagues(state.me);
      } catch {
        state.colleagues = [];
      }
    }
    $('admin-verifier').replaceChildren(
      el('option', { value: '' }, t('nurse.meds.verifierNone')),
      ...state.colleagues.map((c) => el('option', { value: c.id }, c.name)),
    );
  }
}

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
  const verifier = high ? $('admin-verifier').value : '';
  if (high && (!verifier || !$('admin-verified').checked)) {
    alertText(t('nurse.meds.needVerifier'));
    $('admin-verifier').focus();
    return;
  }
  const clientId = newId();
  const entry = {
    id: clientId,
    kind: 'administer',
    path: `MedicationRequest/${mr.id}/$administer`,
    body: administerParameters({
      clientId, patientIdentifier: wrist, drugCode: $('admin-drug').value.trim(), verifier,
      effective: new Date().toISOString(),
    }),
    summary: { patient: patientName(patient), drug: drugName(mr) },
  };
  const done = await submit(entry);
  if (done.sent) {
    notice(t('nurse.meds.done', { drug: drugName(mr) }));
    $('admin-form').hidden = true;
    loadOrders();
  } else if (done.queued) {
    notice(t('nurse.meds.queued'));
    $('admin-form').hidden = true;
  } else {
    // the double check failed on the server (wrong patient, wrong drug, no second nurse)
    alertText(explainRefusal(done.error));
  }
}
