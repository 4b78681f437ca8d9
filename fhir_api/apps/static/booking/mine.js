// "My appointments": upcoming (cancel with the server's cut-off, reschedule), waitlist entries,
// and the past ones.

import {fhir} from '../common/smart.js';
import {t} from '../common/i18n.js';
import {alertMessage, announce, el, entries, fmtDate, fmtTime, render, showError} from '../common/ui.js';
import {cutoffNote, describeAppointment, parameters, reference, refId} from './data.js';
import {cutoffLine, slotPicker} from './book.js';

const ACTIVE = new Set(['booked', 'pending', 'arrived', 'checked-in', 'waitlist', 'proposed']);
const BADGE = {booked: 'ok', pending: 'warn', waitlist: 'warn', cancelled: 'danger', noshow: 'danger'};

function statusBadge(status) {
  return el('span', {class: `badge ${BADGE[status] || ''}`, dataset: {status}}, t(`status.${status}`));
}

// `ahead`: it is in the upcoming list (not over yet)
async function item(appt, state, reload, ahead) {
  const d = await describeAppointment(appt);
  const when = appt.start
    ? `${fmtDate(appt.start, {weekday: true})} ${fmtTime(appt.start)}`
    : (appt.requestedPeriod || []).map((p) => `${fmtDate(p.start)} – ${fmtDate(p.end)}`).join(', ');
  const li = el('li', {class: 'appointment', dataset: {id: appt.id, status: appt.status}});
  const extra = el('div');
  const actions = el('div', {class: 'row'});
  // past the hospital's online cut-off a booking is neither cancelled nor moved here (the
  // server would refuse: the hospital's counter does it)
  const closed = appt.status === 'booked' && (cutoffNote(appt) || {}).key === 'cutoff.passed';
  const upcoming = ACTIVE.has(appt.status) && appt.status !== 'waitlist' && !closed;
  if (ACTIVE.has(appt.status) && !closed) {
    const cancel = el('button', {type: 'button', class: 'danger'}, t('mine.cancel'));
    cancel.addEventListener('click', () => {
      const yes = el('button', {type: 'button', class: 'danger primary'}, t('mine.cancel'));
      const no = el('button', {type: 'button'}, t('common.close'));
      yes.addEventListener('click', async () => {
        yes.disabled = true;
        try {
          await fhir(`Appointment/${appt.id}/$cancel`, {method: 'POST', body: parameters({})});
          alertMessage('');
          announce(t('mine.cancelled'));
          await reload();
        } catch (err) {
          yes.disabled = false;
          showError(err); // e.g. past the cancellation cut-off: the server says why
        }
      });
      no.addEventListener('click', () => render(extra));
      render(extra, el('div', {class: 'card', role: 'group'},
        el('p', {}, t('mine.cancel_confirm', {day: fmtDate(appt.start), time: fmtTime(appt.start)})),
        el('div', {class: 'row'}, yes, no)));
      yes.focus();
    });
    actions.append(cancel);
  }
  if (upcoming) {
    const move = el('button', {type: 'button'}, t('mine.reschedule'));
    move.addEventListener('click', async () => {
      const actors = (appt.participant || []).map((p) => p.actor || {});
      const service = actors.map((a) => refId(a, 'HealthcareService')).find(Boolean);
      const roleId = actors.map((a) => refId(a, 'PractitionerRole')).find(Boolean);
      const box = el('div', {class: 'card'});
      render(extra, el('h3', {}, t('mine.reschedule_pick', {dept: d.dept})), box);
      try {
        await slotPicker(box, {
          service,
          roles: roleId ? [{id: roleId, practitioner: {display: d.doctor}}] : [],
          patient: state.patientId,
          actionKey: 'mine.reschedule',
          onPick: async ({slot}) => {
            try {
              const moved = await fhir(`Appointment/${appt.id}/$reschedule`, {method: 'POST', body: parameters({slot: reference('Slot', slot.id)})});
              alertMessage('');
              announce(t('mine.rescheduled', {day: fmtDate(moved.start), time: fmtTime(moved.start)}));
              await reload();
            } catch (err) {
              showError(err);
            }
          },
        });
      } catch (err) {
        showError(err);
      }
    });
    actions.append(move);
  }
  render(li,
    el('div', {class: 'row'}, el('strong', {class: 'grow'}, when), statusBadge(appt.status)),
    el('div', {}, [d.dept, d.doctor, d.type].filter(Boolean).join(' · ')),
    d.number && appt.status !== 'waitlist' ? el('div', {}, t('book.queue_number', {number: d.number})) : null,
    d.place ? el('div', {class: 'muted small'}, d.place) : null,
    appt.status === 'booked' && ahead ? cutoffLine(appt) : null,
    actions,
    extra);
  return li;
}

/** The "My appointments" tab. */
export async function minePanel(root, state) {
  const reload = () => minePanel(root, state);
  const bundle = await fhir(`Appointment?patient=Patient/${encodeURIComponent(state.patientId)}&_count=100`);
  const now = Date.now();
  const all = entries(bundle, 'Appointment');
  const isUpcoming = (a) => ACTIVE.has(a.status) && (a.status === 'waitlist' || !a.end || Date.parse(a.end) >= now);
  const key = (a) => a.start || (a.requestedPeriod && a.requestedPeriod[0] && a.requestedPeriod[0].start) || a.created || '';
  const upcoming = all.filter(isUpcoming).sort((a, b) => key(a).localeCompare(key(b)));
  const past = all.filter((a) => !isUpcoming(a)).sort((a, b) => key(b).localeCompare(key(a)));
  const list = el('ul', {class: 'list', id: 'upcoming'});
  for (const a of upcoming) list.append(await item(a, state, reload, true));
  const pastList = el('ul', {class: 'list', id: 'past'});
  for (const a of past.slice(0, 30)) pastList.append(await item(a, state, reload, false));
  render(root,
    el('h2', {}, t('mine.heading')),
    upcoming.length ? list : el('p', {class: 'muted'}, t('mine.none')),
    past.length ? el('details', {}, el('summary', {}, `${t('mine.past')} (${past.length})`), pastList) : null);
}
