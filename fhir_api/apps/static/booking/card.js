// The electronic health card: the citizen's card identifier (Patient.identifier in the
// exchange's health-card namespace, not retired) as a QR code.

import {t} from '../common/i18n.js';
import {el, render} from '../common/ui.js';
import qrcode from '../common/vendor/qrcode-generator/qrcode.js';
import {HEALTH_CARD_SYSTEM} from './data.js';

export function cardId(patient) {
  const ids = (patient.identifier || []).filter((i) => i.system === HEALTH_CARD_SYSTEM && i.value);
  const live = ids.filter((i) => i.use !== 'old' && !(i.period && i.period.end && Date.parse(i.period.end) < Date.now()));
  return live.length ? live[live.length - 1].value : null;
}

export function cardPanel(root, state) {
  const cid = cardId(state.patient);
  if (!cid) {
    render(root, el('h2', {}, t('card.heading')), el('p', {class: 'muted'}, t('card.none')));
    return;
  }
  const qr = qrcode(0, 'M');
  qr.addData(`${HEALTH_CARD_SYSTEM}|${cid}`);
  qr.make();
  const img = el('img', {src: qr.createDataURL(8, 2), alt: t('card.qr_label', {cid}), id: 'card-qr'});
  render(root,
    el('h2', {}, t('card.heading')),
    el('p', {}, t('card.intro')),
    el('div', {class: 'card'},
      el('div', {class: 'qr'}, img),
      el('p', {class: 'row'}, el('span', {class: 'muted'}, t('card.number')), el('strong', {id: 'card-number'}, cid))));
}
