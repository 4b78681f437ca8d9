// "Who accessed my record": the AuditEvents of the citizen's record, read with their own token
// (AuditEvent?patient=). Organization, person, time, purpose; break-the-glass highlighted.

import {fhir} from '../common/smart.js';
import {t} from '../common/i18n.js';
import {el, entries, fmtDateTime, render} from '../common/ui.js';
import {nameOf} from './data.js';

const ROLE_CLASS = 'http://terminology.hl7.org/CodeSystem/v3-RoleClass';
const DCM = 'http://dicom.nema.org/resources/ontology/DCM';

function codes(cc) {
  return ((cc && cc.coding) || []).map((c) => c.code);
}

async function row(ev, state) {
  const agents = ev.agent || [];
  const person = agents.find((a) => a.requestor && a.who && (a.who.reference || a.who.display) && !codes(a.type).includes('110150'));
  const orgs = agents.filter((a) => codes(a.type).includes('PROV') || (a.who && (a.who.reference || '').startsWith('Organization/')));
  const app = agents.find((a) => codes(a.type).includes('110150'));
  const purposes = (ev.purposeOfEvent || []).flatMap((p) => (p.coding || []).map((c) => ({code: c.code, text: p.text})));
  const btg = purposes.find((p) => p.code === 'BTG');
  const ownRef = state.ownRef;
  let who = '';
  if (person) {
    const ref = person.who.reference || '';
    const mine = (ref && ownRef && ref.endsWith(ownRef))
      || (state.ownSub && (person.altId === state.ownSub || person.who.display === state.ownSub));
    who = mine ? t('access.you') : await nameOf(person.who);
  }
  const orgNames = await Promise.all(orgs.map((a) => nameOf(a.who)));
  const sub = (ev.subtype || []).map((c) => c.code).filter(Boolean);
  const detail = sub.find((s) => s !== 'operation');
  const opText = detail ? t(`op.${detail}`) : '';
  const action = detail ? (opText === `op.${detail}` ? detail : opText) : t(`action.${ev.action || 'R'}`);
  const refused = ev.outcome && ev.outcome !== '0';
  const li = el('li', {class: btg ? 'access highlight-danger' : 'access', dataset: {id: ev.id, breakGlass: btg ? 'true' : 'false'}},
    el('div', {class: 'row'}, el('strong', {class: 'grow'}, fmtDateTime(ev.recorded)),
      btg ? el('span', {class: 'badge danger'}, t('access.break_glass')) : null,
      refused ? el('span', {class: 'badge warn'}, t('access.refused')) : null),
    el('dl', {class: 'small pairs'},
      el('dt', {}, t('access.who')), el('dd', {class: 'who'}, who || '—'),
      el('dt', {}, t('access.org')), el('dd', {class: 'org'}, orgNames.join('、') || '—'),
      el('dt', {}, t('access.purpose')), el('dd', {class: 'purpose'}, purposes.map((p) => t(`purpose.${p.code}`)).join('、') || '—'),
      el('dt', {}, t('access.what')), el('dd', {}, action),
      app ? [el('dt', {}, t('access.app')), el('dd', {}, app.who.display || '')] : null),
    btg && btg.text ? el('p', {class: 'small'}, t('access.break_glass_reason', {reason: btg.text})) : null);
  return li;
}

export async function accessPanel(root, state) {
  const list = el('ul', {class: 'list', id: 'access-log'});
  const more = el('button', {type: 'button', hidden: true}, t('access.more'));
  render(root, el('h2', {}, t('access.heading')), el('p', {class: 'muted'}, t('access.intro')), list, more);
  let next = `AuditEvent?patient=Patient/${encodeURIComponent(state.patientId)}&_sort=-date&_count=30`;
  const load = async () => {
    const bundle = await fhir(next);
    const events = entries(bundle, 'AuditEvent');
    for (const ev of events) list.append(await row(ev, state));
    const link = (bundle.link || []).find((l) => l.relation === 'next');
    next = link ? link.url : null;
    more.hidden = !next;
    if (!list.children.length) list.append(el('li', {class: 'muted'}, t('access.none')));
  };
  more.addEventListener('click', () => load());
  await load();
}
