// The worklist view: the nurse's wards, and the ward's patients with their due tasks.

import { t } from '../common/i18n.js';
import { el, busy } from '../common/ui.js';
import { patientName, genderText, mrnOf } from './patients.js';
import { $, state, fmtTime, ageText } from './station.js';
import { openPatient } from './view-patient.js';
import { wardsOf, bedNames, worklist, taskText, taskDue } from './worklist.js';

export async function loadWards() {
  const { wards, orgs } = await wardsOf(state.me);
  state.org = orgs[0] || null;
  const sel = $('ward');
  const want = new URLSearchParams(location.search).get('ward') || localStorage.getItem('nurse.ward');
  sel.replaceChildren(...wards.map((w) => el('option', { value: w.id }, w.name)));
  if (want && wards.some((w) => w.id === want)) sel.value = want;
}

export async function loadWorklist() {
  const ward = $('ward').value;
  const box = $('worklist');
  if (!ward) {
    box.replaceChildren(el('p', { class: 'muted' }, t('nurse.worklist.empty')));
    return;
  }
  localStorage.setItem('nurse.ward', ward);
  if (!box.firstChild) box.replaceChildren(el('p', { class: 'muted' }, t('nurse.loading')));
  const hours = Number($('horizon').value) || 4;
  // a failed refresh (no network) leaves the last worklist on the screen
  const items = await busy(box, bedNames(ward).then((beds) => {
    state.beds = beds;
    return worklist(ward, hours, beds);
  }));
  if (!items.length) {
    box.replaceChildren(el('p', { class: 'muted' }, t('nurse.worklist.empty')));
    return;
  }
  const now = Date.now();
  box.replaceChildren(
    el('table', { class: 'worklist' },
      el('thead', {}, el('tr', {},
        el('th', { scope: 'col' }, t('nurse.worklist.bed')),
        el('th', { scope: 'col' }, t('nurse.worklist.patient')),
        el('th', { scope: 'col' }, t('nurse.worklist.tasks')),
        el('th', { scope: 'col' }, el('span', { class: 'sr-only' }, t('nurse.worklist.open'))),
      )),
      el('tbody', {}, ...items.map((it) => {
        const name = it.patient ? patientName(it.patient) : '';
        const tasks = it.tasks.length
          ? el('ul', { class: 'tasks' }, ...it.tasks.map((task) => {
            const due = taskDue(task);
            const late = due && Date.parse(due) < now;
            return el('li', { class: late ? 'late' : '' },
              el('span', {}, taskText(task)), ' ',
              el('span', { class: 'due' }, late ? t('nurse.overdue') : due ? t('nurse.due', { time: fmtTime(due) }) : ''));
          }))
          : el('span', { class: 'muted' }, t('nurse.worklist.noTasks'));
        return el('tr', {},
          el('td', { class: 'bed' }, it.bed || '—'),
          el('td', {}, el('strong', {}, name), el('br'), el('span', { class: 'muted' },
            it.patient ? [genderText(it.patient), ageText(it.patient), mrnOf(it.patient, state.org)].filter(Boolean).join(' · ') : '')),
          el('td', {}, tasks),
          el('td', {}, el('button', {
            type: 'button', class: 'primary',
            'aria-label': t('nurse.worklist.openPatient', { name }),
            onclick: () => it.patient && openPatient(it.patient, it.encounter, it.bed),
          }, t('nurse.worklist.open'))),
        );
      })),
    ),
  );
}
