// The citizen's phone booking app (SMART standalone launch with the citizen's own token).

import {fhir, login, logout, session, signOut} from '../common/smart.js';
import {applyI18n, register, t} from '../common/i18n.js';
import {alertMessage, announce, el, humanName, langToggle, render, showError} from '../common/ui.js';
import {MESSAGES} from './messages.js';
import {bookPanel} from './book.js';
import {minePanel} from './mine.js';
import {recordPanel} from './record.js';
import {accessPanel} from './access.js';
import {cardPanel} from './card.js';

const CLIENT_ID = 'booking-app';
const SCOPE = 'openid fhirUser launch/patient patient/*.rs patient/Appointment.cru';
const TABS = [
  ['book', bookPanel],
  ['mine', minePanel],
  ['record', recordPanel],
  ['access', accessPanel],
  ['card', cardPanel],
];

register(MESSAGES);
applyI18n();
langToggle(document.getElementById('lang-switch'));
document.getElementById('logout').addEventListener('click', () => signOut());

const state = {patientId: null, patient: null, ownRef: null, current: 'book'};
const tablist = document.getElementById('tabs');
const panels = new Map();

function personLine() {
  const own = state.ownRef && state.ownRef.endsWith(`Patient/${state.patientId}`);
  const key = own || !state.ownRef ? 'booking.for_self' : 'booking.for_family';
  // whom the app is for is chosen on the authorization server's consent page (SMART
  // launch/patient): to change it, sign in again there
  const change = el('button', {type: 'button', id: 'switch-person', class: 'small'}, t('booking.switch_person'));
  change.addEventListener('click', () => {
    logout();
    login({clientId: CLIENT_ID, scope: SCOPE, redirectPath: '/app/booking/'}).catch(showError);
  });
  render(document.getElementById('who'),
    el('span', {class: 'row'},
      el('span', {class: 'grow'}, el('span', {class: 'muted'}, t('booking.for')),
        el('strong', {id: 'patient-name'}, t(key, {name: humanName(state.patient)}))),
      change));
}

/** An expired or revoked session: sign in again (the authorization server may remember the
user and only ask for consent); anything else: show the server's message. */
function fail(err) {
  if (err && err.status === 401 && !session()) {
    login({clientId: CLIENT_ID, scope: SCOPE, redirectPath: '/app/booking/'}).catch(showError);
    return;
  }
  showError(err);
}

async function show(name, {focus = false} = {}) {
  state.current = name;
  for (const b of tablist.querySelectorAll('[role=tab]')) {
    const on = b.dataset.tab === name;
    b.setAttribute('aria-selected', String(on));
    b.tabIndex = on ? 0 : -1;
    if (on && focus) b.focus();
  }
  for (const [key, panel] of panels) panel.hidden = key !== name;
  const panel = panels.get(name);
  const fn = TABS.find(([k]) => k === name)[1];
  panel.setAttribute('aria-busy', 'true');
  try {
    await fn(panel, state);
  } catch (err) {
    fail(err);
  } finally {
    panel.removeAttribute('aria-busy');
  }
}

function buildTabs() {
  const container = document.getElementById('panels');
  for (const [name] of TABS) {
    const tab = el('button', {type: 'button', role: 'tab', id: `tab-${name}`, 'aria-controls': `panel-${name}`,
      'aria-selected': 'false', tabindex: '-1', dataset: {tab: name, i18n: `tab.${name}`}}, t(`tab.${name}`));
    tab.addEventListener('click', () => {
      announce('');
      alertMessage('');
      show(name);
    });
    tablist.append(tab);
    const panel = el('section', {role: 'tabpanel', id: `panel-${name}`, 'aria-labelledby': `tab-${name}`, hidden: true});
    panels.set(name, panel);
    container.append(panel);
  }
  tablist.addEventListener('keydown', (ev) => {
    const names = TABS.map(([k]) => k);
    let i = names.indexOf(state.current);
    if (ev.key === 'ArrowRight') i = (i + 1) % names.length;
    else if (ev.key === 'ArrowLeft') i = (i + names.length - 1) % names.length;
    else if (ev.key === 'Home') i = 0;
    else if (ev.key === 'End') i = names.length - 1;
    else return;
    ev.preventDefault();
    show(names[i], {focus: true});
  });
}

async function start() {
  const session = await login({clientId: CLIENT_ID, scope: SCOPE, redirectPath: '/app/booking/'});
  const fhirUser = session.fhirUser || '';
  state.ownRef = fhirUser.includes('Patient/') ? fhirUser.slice(fhirUser.indexOf('Patient/')) : null;
  state.ownSub = (session.idTokenClaims && session.idTokenClaims.sub) || null;
  state.patientId = session.patient || (state.ownRef ? state.ownRef.split('/')[1] : null);
  state.patient = await fhir(`Patient/${encodeURIComponent(state.patientId)}`);
  personLine();
  state.onBooked = () => {};
  buildTabs();
  window.addEventListener('langchange', () => {
    personLine();
    show(state.current);
  });
  await show('book');
}

// not fail(): a refused sign-in must not loop back to the consent page
start().catch((err) => {
  if (err && err.code === 'access_denied') {
    const again = el('button', {type: 'button', class: 'primary'}, t('booking.sign_in_again'));
    again.addEventListener('click', () => login({clientId: CLIENT_ID, scope: SCOPE, redirectPath: '/app/booking/'}).catch(showError));
    alertMessage(t('booking.denied'));
    render(document.getElementById('who'), again);
    return;
  }
  showError(err);
});
