// The "Book" tab: hospital -> department -> doctor (or a symptom / department search), free
// slots by day, hold, confirm, confirmation. slotPicker() is reused by rescheduling.

import {fhir} from '../common/smart.js';
import {t} from '../common/i18n.js';
import {announce, alertMessage, el, fmtDate, fmtTime, isoDay, render, showError} from '../common/ui.js';
import {SYMPTOMS} from './messages.js';
import {
  SLOT_NUMBER_EXT,
  cutoffNote,
  deptCode,
  departments,
  describeAppointment,
  doctorName,
  doctors,
  ext,
  freeSlots,
  hospitals,
  parameters,
  reference,
} from './data.js';

let seq = 0;
const uid = (p) => `${p}-${(seq += 1)}`;

function labelled(labelKey, control) {
  const id = control.id || uid('f');
  control.id = id;
  return [el('label', {for: id, 'data-i18n': labelKey, text: t(labelKey)}), control];
}

function option(value, text, selected = false) {
  return el('option', {value, selected}, text);
}

function slotNumber(slot) {
  const e = ext(slot, SLOT_NUMBER_EXT);
  return e ? e.valueInteger : '';
}

/**
 * Free slots of a department / doctor by day; calls onPick({slot, role}) for the chosen one.
 * Renders into `box`; returns the number of free slots found.
 */
export async function slotPicker(box, {service, roles, patient, actionKey, onPick}) {
  render(box, el('p', {class: 'muted', role: 'status'}, t('book.loading_slots')));
  const found = await freeSlots({service, roles, patient});
  if (!found.length) {
    render(box, el('p', {class: 'muted'}, t('book.no_slots')));
    return 0;
  }
  const byDay = new Map();
  for (const f of found) {
    const day = isoDay(f.slot.start);
    if (!byDay.has(day)) byDay.set(day, []);
    byDay.get(day).push(f);
  }
  const days = el('div', {class: 'choices', role: 'group', 'aria-label': t('book.days')});
  const slotsBox = el('div');
  let chosen = null;
  const action = el('button', {type: 'button', class: 'primary block sticky-action', disabled: true}, t(actionKey));
  action.addEventListener('click', async () => {
    if (!chosen) return;
    action.disabled = true;
    try {
      await onPick(chosen);
    } finally {
      action.disabled = false;
    }
  });
  const showDay = (day) => {
    for (const b of days.children) b.setAttribute('aria-pressed', String(b.dataset.day === day));
    chosen = null;
    action.disabled = true;
    const list = el('div', {class: 'choices wide', role: 'group', 'aria-label': t('book.pick_slot')});
    for (const f of byDay.get(day)) {
      const label = t('book.slot_label', {
        time: '',
        doctor: f.role ? doctorName(f.role) : '',
        type: (f.slot.appointmentType && f.slot.appointmentType.text) || '',
        number: slotNumber(f.slot),
      }).trim();
      const b = el('button', {type: 'button', 'aria-pressed': 'false', class: 'slot', dataset: {slot: f.slot.id}},
        el('span', {class: 'big'}, fmtTime(f.slot.start)), el('span', {class: 'small'}, label));
      b.addEventListener('click', () => {
        for (const x of list.children) x.setAttribute('aria-pressed', 'false');
        b.setAttribute('aria-pressed', 'true');
        chosen = f;
        action.disabled = false;
      });
      list.append(b);
    }
    render(slotsBox, el('h3', {}, t('book.slots', {day: fmtDate(day, {weekday: true})})), list);
  };
  for (const [day, list] of byDay) {
    const b = el('button', {type: 'button', 'aria-pressed': 'false', dataset: {day}},
      el('span', {class: 'big'}, fmtDate(day, {year: false})),
      el('span', {class: 'small'}, `${fmtDate(day, {year: false, weekday: true}).replace(fmtDate(day, {year: false}), '').trim()} · ${t('book.free_count', {n: list.length})}`));
    b.addEventListener('click', () => showDay(day));
    days.append(b);
  }
  render(box, el('h3', {}, t('book.days')), days, slotsBox, action);
  showDay(byDay.keys().next().value);
  return found.length;
}

/** Confirmation card of a booked Appointment. */
export async function confirmation(appt) {
  const d = await describeAppointment(appt);
  const card = el('div', {class: 'card', role: 'status', tabindex: '-1', id: 'confirmation'},
    el('h3', {}, t('book.confirmed')),
    el('p', {}, t('book.confirmation_time', {day: fmtDate(appt.start, {weekday: true}), time: fmtTime(appt.start)})),
    d.number ? el('p', {class: 'queue-number'}, el('strong', {}, t('book.queue_number', {number: d.number}))) : null,
    el('p', {}, [d.dept, d.doctor, d.type].filter(Boolean).join(' · ')),
    d.place ? el('p', {class: 'muted'}, t('book.place', {place: d.place})) : null,
    cutoffLine(appt),
  );
  return card;
}

/** The line saying until when the booking can be cancelled online (see cutoffNote), or null. */
export function cutoffLine(appt) {
  const note = cutoffNote(appt);
  if (!note) return null;
  return el('p', {class: note.key === 'cutoff.until' ? 'muted cutoff' : 'cutoff warn'}, t(note.key, {when: note.when}));
}

function searchDepartments(all, text) {
  const q = text.trim().toLowerCase();
  if (!q) return [];
  const codes = new Set();
  for (const [words, depts] of SYMPTOMS) {
    if (words.some((w) => q.includes(w.toLowerCase()) || w.toLowerCase().includes(q))) depts.forEach((c) => codes.add(c));
  }
  return all.filter((s) => codes.has(deptCode(s)) || (s.name || '').toLowerCase().includes(q));
}

/** The Book tab. `state`: {patientId, onBooked(appt)}. */
export async function bookPanel(root, state) {
  const orgSelect = el('select', {id: 'hospital', name: 'hospital'});
  const deptSelect = el('select', {id: 'department', name: 'department', disabled: true});
  const docSelect = el('select', {id: 'doctor', name: 'doctor', disabled: true});
  const slotsBox = el('div', {id: 'slots', 'aria-live': 'polite'});
  const holdBox = el('div', {id: 'hold'});
  const searchInput = el('input', {type: 'search', id: 'symptom', name: 'symptom', 'data-i18n-placeholder': 'book.search_placeholder', placeholder: t('book.search_placeholder')});
  const results = el('ul', {class: 'list', id: 'search-results', 'aria-live': 'polite'});
  const searchForm = el('form', {role: 'search', class: 'card'},
    labelled('book.search', searchInput),
    el('div', {class: 'row'}, el('button', {type: 'submit', class: 'primary'}, t('book.search_button'))),
    results);
  render(root,
    el('h2', {}, t('book.heading')),
    searchForm,
    el('div', {class: 'card'}, labelled('book.hospital', orgSelect), labelled('book.department', deptSelect), labelled('book.doctor', docSelect)),
    holdBox,
    slotsBox);

  render(deptSelect, option('', t('book.choose')));
  render(docSelect, option('', t('book.any_doctor')));
  // handlers first (a search submitted while the directory loads must not reload the page)
  searchForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    search().catch(showError);
  });
  const orgsLoading = hospitals();
  let roles = [];

  const hold = async ({slot}) => {
    alertMessage('');
    try {
      const appt = await fhir('Appointment/$hold', {method: 'POST', body: parameters({slot: reference('Slot', slot.id), patient: reference('Patient', state.patientId)})});
      showHold(appt);
    } catch (err) {
      showError(err);
    }
  };
  const showHold = (appt) => {
    const expires = (ext(appt, 'https://ehr.example.cn/fhir/StructureDefinition/slot-hold') || {extension: []}).extension.find((e) => e.url === 'expires');
    const confirm = el('button', {type: 'button', class: 'primary', id: 'confirm-booking'}, t('book.confirm'));
    const release = el('button', {type: 'button', class: 'danger'}, t('book.release'));
    confirm.addEventListener('click', async () => {
      confirm.disabled = true;
      try {
        const booked = await fhir('Appointment/$book', {method: 'POST', body: parameters({appointment: reference('Appointment', appt.id)})});
        const card = await confirmation(booked);
        render(holdBox, card);
        render(slotsBox);
        card.focus();
        announce(t('book.confirmed'));
        if (state.onBooked) state.onBooked(booked);
      } catch (err) {
        confirm.disabled = false;
        showError(err);
      }
    });
    release.addEventListener('click', async () => {
      try {
        await fhir(`Appointment/${appt.id}/$cancel`, {method: 'POST', body: parameters({})});
      } catch (err) {
        showError(err);
      }
      render(holdBox);
      loadSlots();
    });
    const until = expires ? fmtTime(expires.valueInstant) : '';
    const box = el('div', {class: 'card', role: 'status', tabindex: '-1'},
      el('p', {}, t('book.held', {time: `${fmtDate(appt.start, {weekday: true})} ${fmtTime(appt.start)}`, until})),
      cutoffLine(appt),
      el('div', {class: 'row'}, confirm, release));
    render(holdBox, box);
    box.focus();
  };
  const waitlist = () => {
    const role = roles.find((r) => r.id === docSelect.value);
    const target = role ? `PractitionerRole/${role.id}` : `HealthcareService/${deptSelect.value}`;
    const what = role ? doctorName(role) : deptSelect.selectedOptions[0].textContent;
    const b = el('button', {type: 'button', id: 'join-waitlist'}, t('book.waitlist_join'));
    b.addEventListener('click', async () => {
      b.disabled = true;
      try {
        await fhir('Appointment/$waitlist', {method: 'POST', body: parameters({
          patient: reference('Patient', state.patientId),
          target: {valueReference: {reference: target}},
          start: {valueDate: isoDay()},
          end: {valueDate: isoDay(new Date(Date.now() + 14 * 86400000))},
        })});
        announce(t('book.waitlist_done', {what}));
        if (state.onBooked) state.onBooked(null);
      } catch (err) {
        b.disabled = false;
        showError(err);
      }
    });
    slotsBox.append(el('div', {class: 'card'}, el('p', {}, t('book.waitlist_offer')), b));
  };
  const loadSlots = async () => {
    render(holdBox);
    if (!deptSelect.value) {
      render(slotsBox);
      return;
    }
    const chosen = roles.filter((r) => !docSelect.value || r.id === docSelect.value);
    try {
      const n = await slotPicker(slotsBox, {service: deptSelect.value, roles: chosen, patient: state.patientId, actionKey: 'book.hold', onPick: hold});
      if (!n) waitlist();
    } catch (err) {
      render(slotsBox);
      showError(err);
    }
  };
  const loadDoctors = async () => {
    docSelect.disabled = true;
    render(docSelect, option('', t('book.any_doctor')));
    roles = deptSelect.value ? await doctors(deptSelect.value) : [];
    docSelect.append(...roles.map((r) => option(r.id, doctorName(r))));
    docSelect.disabled = !deptSelect.value;
    await loadSlots();
  };
  const loadDepartments = async (selected) => {
    deptSelect.disabled = true;
    const list = orgSelect.value ? await departments(orgSelect.value) : [];
    render(deptSelect, option('', t('book.choose')), list.map((s) => option(s.id, s.name, s.id === selected)));
    deptSelect.disabled = !orgSelect.value;
    await loadDoctors();
  };
  orgSelect.addEventListener('change', () => loadDepartments().catch(showError));
  deptSelect.addEventListener('change', () => loadDoctors().catch(showError));
  docSelect.addEventListener('change', () => loadSlots().catch(showError));

  const search = async () => {
    const orgs = await orgsLoading;
    {
      const all = await departments(null);
      const hits = searchDepartments(all, searchInput.value);
      const orgName = new Map(orgs.map((o) => [o.id, o.name]));
      render(results, hits.length ? hits.slice(0, 20).map((s) => {
        const org = (s.providedBy && s.providedBy.reference || '').split('/')[1];
        const b = el('button', {type: 'button', class: 'block'}, `${orgName.get(org) || ''} · ${s.name}`);
        b.addEventListener('click', async () => {
          orgSelect.value = org;
          render(results);
          await loadDepartments(s.id).catch(showError);
          deptSelect.focus();
        });
        return el('li', {}, b);
      }) : el('li', {class: 'muted'}, t('book.search_none')));
    }
  };
  const orgs = await orgsLoading;
  render(orgSelect, option('', t('book.choose')), orgs.map((o) => option(o.id, o.name)));
}
