// The break-the-glass views: the form that asks for the reason (shown instead of a restricted
// record, or on request), and the red bar that says emergency access is on. The reason itself
// is kept by glass.js (in memory, per patient).

import {t} from '../common/i18n.js';
import {el, render} from '../common/ui.js';
import * as glass from './glass.js';

export function glassForm(pid, retry, onCancel) {
  const reason = el('textarea', {id: 'glass-reason', name: 'reason', rows: '3', required: true,
    'aria-describedby': 'glass-explain glass-error'});
  const preset = el('select', {id: 'glass-preset'},
    el('option', {value: ''}, t('ws.glass.preset.none')),
    ['emergency', 'unconscious', 'transfer'].map((k) => el('option', {value: t(`ws.glass.preset.${k}`)}, t(`ws.glass.preset.${k}`))));
  preset.addEventListener('change', () => { if (preset.value) reason.value = preset.value; });
  const error = el('p', {id: 'glass-error', class: 'out-of-range', role: 'alert'});
  const form = el('form', {class: 'card glass', id: 'glass-form', 'aria-labelledby': 'glass-title', novalidate: true},
    el('h2', {id: 'glass-title', tabindex: '-1'}, t('ws.glass.title')),
    el('p', {id: 'glass-explain'}, t('ws.glass.explain')),
    el('label', {for: 'glass-preset'}, t('ws.glass.preset')), preset,
    el('label', {for: 'glass-reason'}, t('ws.glass.reason')), reason,
    error,
    el('div', {class: 'row'},
      el('button', {type: 'submit', class: 'danger'}, t('ws.glass.submit')),
      onCancel ? el('button', {type: 'button', onclick: onCancel}, t('ws.glass.cancel')) : null));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    if (!reason.value.trim()) {
      error.textContent = t('ws.glass.needReason');
      reason.setAttribute('aria-invalid', 'true');
      reason.focus();
      return;
    }
    glass.setReason(pid, reason.value);
    retry();
  });
  return form;
}

export function glassBar(pid, restricted, reload) {
  const reason = glass.reasonFor(pid);
  if (reason) {
    return el('div', {class: 'glass-active row', id: 'glass-active', role: 'status'},
      el('span', {class: 'grow'}, t('ws.glass.active', {reason})),
      el('button', {type: 'button', onclick: () => { glass.clear(pid); reload(); }}, t('ws.glass.end')));
  }
  if (!restricted) return null;
  const holder = el('div', {class: 'card glass', id: 'glass-offer'});
  render(holder, el('p', {}, t('ws.glass.offer')),
    el('button', {type: 'button', class: 'danger', onclick: () => {
      render(holder, glassForm(pid, reload, () => reload()));
      holder.querySelector('h2').focus();
    }}, t('ws.glass.offerButton')));
  return holder;
}
