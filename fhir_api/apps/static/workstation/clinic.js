// Today's clinic: the signed-in doctor's clinic sessions with their queues, and "call next".
//
//   roles:    GET  PractitionerRole?practitioner=Practitioner/{me}
//   sessions: GET  PractitionerRole/{role}/$clinic-list?date=YYYY-MM-DD   (appointments/http.py)
//   call:     POST Schedule/{schedule}/$call-next  (Parameters: date, session)
//
// The queue shows each patient's queue number and masked name (as the waiting-room screen
// does); the full record opens when the doctor sees the patient.

import {fhir} from '../common/smart.js';
import {t} from '../common/i18n.js';
import {announce, el, entries, render, showError} from '../common/ui.js';
import {param, paramsByName, paramValue, refId} from './fhirdata.js';

function sessionName(code) {
  const key = `ws.clinic.${code}`;
  const text = t(key);
  return text === key ? code : text;
}

function entryOf(parts) {
  return {
    number: param(parts, 'number'),
    status: param(parts, 'status'),
    display: param(parts, 'display') || '',
    patient: refId(param(parts, 'patient'), 'Patient'),
    encounter: refId(param(parts, 'encounter'), 'Encounter'),
  };
}

/** The sessions of a $clinic-list answer: [{schedule, code, start, end, entries, notArrived}]. */
export function sessionsOf(parameters) {
  return (paramsByName(parameters).session || []).map((s) => {
    const parts = s.part || [];
    const byName = paramsByName(parts);
    return {
      schedule: refId(param(parts, 'schedule'), 'Schedule'),
      code: param(parts, 'code'),
      start: String(param(parts, 'start') || '').slice(0, 5),
      end: String(param(parts, 'end') || '').slice(0, 5),
      entries: (byName.entry || []).map((e) => entryOf(paramValue(e))),
      notArrived: (byName.notArrived || []).length,
    };
  });
}

/**
 * Draw today's clinic of Practitioner/`practitioner` into `body`.
 * `onOpen({patient, encounter, number, display})` opens a patient's record.
 */
export async function loadClinic(body, {practitioner, day, onOpen}) {
  if (!practitioner) {
    render(body, el('p', {class: 'muted'}, t('ws.clinic.none')));
    return;
  }
  render(body, el('p', {class: 'muted'}, t('ws.loading')));
  const roles = entries(await fhir(`PractitionerRole?practitioner=${encodeURIComponent(`Practitioner/${practitioner}`)}&_count=20`), 'PractitionerRole');
  const sessions = [];
  for (const role of roles) {
    const got = await fhir(`PractitionerRole/${encodeURIComponent(role.id)}/$clinic-list?date=${day}`);
    sessions.push(...sessionsOf(got));
  }
  sessions.sort((a, b) => a.start.localeCompare(b.start));
  if (!sessions.length) {
    render(body, el('p', {class: 'muted'}, t('ws.clinic.none')));
    return;
  }
  const reload = () => loadClinic(body, {practitioner, day, onOpen}).catch(showError);
  render(body, sessions.map((s) => sessionCard(s, day, onOpen, reload)));
}

function sessionCard(s, day, onOpen, reload) {
  const waiting = s.entries.filter((e) => e.status === 'waiting');
  const called = s.entries.filter((e) => e.status === 'called');
  const done = s.entries.filter((e) => e.status === 'done');
  const name = sessionName(s.code);
  const id = `session-${s.schedule}-${s.code}`;
  const call = el('button', {type: 'button', class: 'primary call-next', dataset: {schedule: s.schedule, session: s.code},
    'aria-label': t('ws.clinic.callNextLabel', {session: name}), disabled: waiting.length === 0}, t('ws.clinic.callNext'));
  call.addEventListener('click', async () => {
    call.disabled = true;
    try {
      const got = await fhir(`Schedule/${encodeURIComponent(s.schedule)}/$call-next`, {
        method: 'POST',
        body: {resourceType: 'Parameters', parameter: [
          {name: 'date', valueDate: day},
          {name: 'session', valueCode: s.code},
        ]},
      });
      const parts = (got && got.parameter) || [];
      if (!parts.length) {
        announce(t('ws.clinic.noneWaiting'), 'warn');
      } else {
        const e = entryOf(parts);
        announce(t('ws.clinic.called.now', {number: e.number, name: e.display}));
        onOpen(e);
      }
    } catch (err) {
      showError(err);
    } finally {
      reload();
    }
  });
  const see = (e) => el('li', {},
    el('span', {class: 'grow'}, el('strong', {}, t('ws.clinic.number', {number: e.number})), ' ', e.display, ' ',
      el('span', {class: 'badge ok'}, t('ws.clinic.called'))),
    el('button', {type: 'button', 'aria-label': t('ws.clinic.openLabel', {number: e.number, name: e.display}),
      onclick: () => onOpen(e)}, t('ws.clinic.open')));
  return el('section', {class: 'clinic-session', 'aria-labelledby': id, dataset: {schedule: s.schedule, session: s.code}},
    el('h3', {id}, t('ws.clinic.session', {session: name, start: s.start, end: s.end})),
    el('p', {class: 'small'},
      [t('ws.clinic.waiting', {n: waiting.length}), t('ws.clinic.done', {n: done.length}),
        t('ws.clinic.notArrived', {n: s.notArrived})].join(' · ')),
    call,
    called.length ? el('ul', {class: 'list queue called'}, called.map(see)) : null,
    waiting.length ? el('ol', {class: 'list queue waiting', 'aria-label': t('ws.clinic.waiting', {n: waiting.length})},
      waiting.map((e) => el('li', {}, el('strong', {}, t('ws.clinic.number', {number: e.number})), ' ', e.display))) : null,
  );
}

