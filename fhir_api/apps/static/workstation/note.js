// The encounter note: the doctor's short note of this visit, saved with the server's
// `Encounter/{id}/$note` operation (appointments/workstation.py), which stores it as a
// DocumentReference (http://hl7.org/fhir/R4/documentreference.html) of type LOINC 11506-3
// "Progress note", `context.encounter` = the visit, the text as a UTF-8 text/plain attachment.
// That is what FHIR readers expect of a clinical note (the R4 guidance for "clinical notes" in
// US Core and IPS alike), rather than Encounter.text or a Composition for a one-paragraph note.
//
// The save is idempotent: the client id names the note, so saving again replaces it (a new
// version of the same DocumentReference) and a retried save changes nothing. The id is kept per
// Encounter for this tab (sessionStorage).
//
// "Finish visit" calls `Encounter/{id}/$finish` (Encounter finished, Appointment fulfilled).

import {fhir} from '../common/smart.js';
import {t} from '../common/i18n.js';
import {announce, el, entries, fmtDateTime, render, showError} from '../common/ui.js';
import * as glass from './glass.js';

const KEY = 'ws.note.client:';

function clientIdFor(encounterId) {
  const k = KEY + encounterId;
  let id = sessionStorage.getItem(k);
  if (!id) {
    id = `ws-${encounterId}-${crypto.randomUUID ? crypto.randomUUID() : Date.now()}`;
    sessionStorage.setItem(k, id);
  }
  return id;
}

/** The text of a DocumentReference's first text attachment. */
export function noteText(doc) {
  const att = (((doc && doc.content) || [])[0] || {}).attachment || {};
  if (!att.data) return '';
  const bytes = Uint8Array.from(atob(att.data), (c) => c.charCodeAt(0));
  return new TextDecoder().decode(bytes);
}

/** The note form for the visit `visit` (an Encounter) of Patient/`pid`. */
export function noteCard(pid, visit) {
  const headers = () => glass.headersFor(pid);
  const finished = visit.status === 'finished';
  const title = el('input', {id: 'note-title', name: 'title', type: 'text', value: t('ws.note.defaultTitle')});
  const text = el('textarea', {id: 'note-text', name: 'text', required: true, rows: '6'});
  const saved = el('p', {id: 'note-saved', role: 'status', 'aria-live': 'polite'});
  const previous = el('div', {id: 'note-previous'});
  const save = el('button', {type: 'submit', class: 'primary', disabled: finished}, t('ws.note.save'));
  const finish = el('button', {type: 'button', id: 'note-finish', disabled: finished}, t('ws.note.finish'));
  const form = el('form', {id: 'note', class: 'card', 'aria-labelledby': 'note-title-h', novalidate: true},
    el('h3', {id: 'note-title-h'}, t('ws.note.title')),
    el('label', {for: 'note-title'}, t('ws.note.titleLabel')), title,
    el('label', {for: 'note-text'}, t('ws.note.label')), text,
    el('div', {class: 'row'}, save, finish),
    saved, previous);

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (!text.value.trim()) {
      saved.textContent = t('ws.note.empty');
      text.focus();
      return;
    }
    save.disabled = true;
    try {
      const doc = await fhir(`Encounter/${encodeURIComponent(visit.id)}/$note`, {
        method: 'POST',
        headers: headers(),
        body: {resourceType: 'Parameters', parameter: [
          {name: 'text', valueString: text.value},
          {name: 'title', valueString: title.value.trim() || t('ws.note.defaultTitle')},
          {name: 'clientId', valueString: clientIdFor(visit.id)},
        ]},
      });
      saved.textContent = t('ws.note.saved', {version: (doc.meta || {}).versionId || '1', time: fmtDateTime(doc.date)});
      saved.dataset.documentReference = doc.id;
    } catch (err) {
      showError(err);
    } finally {
      save.disabled = false;
    }
  });
  finish.addEventListener('click', async () => {
    finish.disabled = true;
    try {
      await fhir(`Encounter/${encodeURIComponent(visit.id)}/$finish`, {method: 'POST', headers: headers(), body: {resourceType: 'Parameters'}});
      announce(t('ws.note.finished'));
      save.disabled = true;
      window.dispatchEvent(new CustomEvent('ws:visit-finished', {detail: {encounter: visit.id}}));
    } catch (err) {
      finish.disabled = false;
      showError(err);
    }
  });
  // notes already saved for this visit (e.g. after a reload)
  fhir(`DocumentReference?encounter=${encodeURIComponent(`Encounter/${visit.id}`)}&patient=${encodeURIComponent(pid)}&_count=10`, {headers: headers()})
    .then((bundle) => {
      const docs = entries(bundle, 'DocumentReference');
      if (!docs.length) return;
      const mine = docs.find((d) => (d.identifier || []).some((i) => String(i.value || '').includes(visit.id)));
      if (mine && !text.value) text.value = noteText(mine);
      render(previous, el('h4', {}, t('ws.note.previous')), el('ul', {class: 'list'}, docs.map((d) =>
        el('li', {}, el('strong', {}, d.description || ''), ' ', el('span', {class: 'muted small'}, fmtDateTime(d.date)),
          el('div', {class: 'small'}, noteText(d))))));
    })
    .catch(() => {});
  return form;
}
