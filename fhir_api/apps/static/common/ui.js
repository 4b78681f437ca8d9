// Small DOM helpers shared by the apps: element building, dates in zh-CN / en (China Standard
// Time), an accessible status / alert region, the language switch and FHIR display helpers.

import {applyI18n, lang, setLang, t} from './i18n.js';

const TZ = 'Asia/Shanghai';

/**
 * el('button', {class: 'primary', type: 'button', onclick: fn, dataset: {id: 1}}, 'text', node)
 * Attributes: `class`, `text`, `dataset`, `on<event>` (functions) and any other attribute
 * (false / null / undefined skip it). Children: strings, nodes, arrays, null (skipped).
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = v;
    else if (k === 'dataset') Object.assign(node.dataset, v);
    else if (k.startsWith('on') && typeof v === 'function') node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(node, c);
    else node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replace the children of `node`. */
export function render(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

function locale() {
  return lang() === 'en' ? 'en-GB' : 'zh-CN';
}

function asDate(value) {
  if (value instanceof Date) return value;
  if (typeof value === 'string' && value.length === 10) return new Date(`${value}T00:00:00+08:00`);
  return new Date(value);
}

/** 2025年7月21日 星期一 / Mon 21 Jul 2025 (`year: false`: 7月21日 / 21 Jul) */
export function fmtDate(value, {weekday = false, year = true} = {}) {
  if (!value) return '';
  const opts = {timeZone: TZ, month: 'short', day: 'numeric'};
  if (year) opts.year = 'numeric';
  if (weekday) opts.weekday = 'short';
  return new Intl.DateTimeFormat(locale(), opts).format(asDate(value));
}

/** 08:30 */
export function fmtTime(value) {
  if (!value) return '';
  return new Intl.DateTimeFormat(locale(), {
    timeZone: TZ,
    hour: '2-digit',
    minute: '2-digit',
    hour12: false,
  }).format(asDate(value));
}

/** 2025年7月21日 08:30 */
export function fmtDateTime(value) {
  if (!value) return '';
  return `${fmtDate(value)} ${fmtTime(value)}`;
}

/** YYYY-MM-DD of `value` (default: now) in China Standard Time. */
export function isoDay(value = new Date()) {
  return new Intl.DateTimeFormat('en-CA', {timeZone: TZ}).format(asDate(value));
}

function region(id, role) {
  let node = document.getElementById(id);
  if (!node) {
    node = el('div', {id, role, class: `live-region ${id}`, 'aria-live': role === 'alert' ? 'assertive' : 'polite'});
    (document.querySelector('main') || document.body).prepend(node);
  }
  return node;
}

/** A polite message in the page's status region (role=status). Empty text clears it. */
export function announce(text, kind = 'info') {
  const node = region('app-status', 'status');
  node.dataset.kind = kind;
  node.textContent = text || '';
  node.hidden = !text;
}

/** An urgent message (role=alert), e.g. an error from the server. Empty text clears it. */
export function alertMessage(text) {
  const node = region('app-alert', 'alert');
  node.textContent = text || '';
  node.hidden = !text;
}

/** Show an error (a FhirError's server text when there is one) in the alert region. */
export function showError(err) {
  const message = (err && err.message) || String(err);
  alertMessage(t('common.error', {message}));
}

/** Wire a button as the zh-CN / English switch (its label shows the other language). */
export function langToggle(button) {
  button.setAttribute('data-i18n', 'common.lang_switch');
  button.setAttribute('data-i18n-aria-label', 'common.lang_switch_label');
  button.addEventListener('click', () => setLang(lang() === 'en' ? 'zh-CN' : 'en'));
  applyI18n(button.parentElement || document);
}

/** A person's name for display (Chinese names family first without a space). */
export function humanName(resource) {
  const names = (resource && resource.name) || [];
  const n = names.find((x) => x.use === 'official') || names[0];
  if (!n) return '';
  if (n.text) return n.text;
  const family = n.family || '';
  const given = (n.given || []).join(lang() === 'en' ? ' ' : '');
  const cjk = /[\u4e00-\u9fff]/.test(family + given);
  return cjk ? family + given : `${given} ${family}`.trim();
}

/** The display text of a CodeableConcept. */
export function codeText(cc) {
  if (!cc) return '';
  if (cc.text) return cc.text;
  const c = (cc.coding || []).find((x) => x.display) || (cc.coding || [])[0];
  return c ? c.display || c.code || '' : '';
}

/** The resources of a searchset Bundle (optionally of one type). */
export function entries(bundle, type) {
  return ((bundle && bundle.entry) || [])
    .map((e) => e.resource)
    .filter((r) => r && (!type || r.resourceType === type));
}

/** Mark a region busy while `promise` runs (aria-busy), and return its result. */
export async function busy(node, promise) {
  node.setAttribute('aria-busy', 'true');
  try {
    return await promise;
  } finally {
    node.removeAttribute('aria-busy');
  }
}
