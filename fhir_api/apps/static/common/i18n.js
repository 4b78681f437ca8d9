// Messages in Simplified Chinese (the default) and English; the choice is remembered in
// localStorage and mirrored in <html lang>.
//
//   register({zh: {hello: '你好，{name}'}, en: {hello: 'Hello, {name}'}});
//   t('hello', {name: '张伟'});
//   <button data-i18n="book"></button>  <input data-i18n-placeholder="search">  applyI18n();

const LANG_KEY = 'ehr.lang';
const messages = {zh: {}, en: {}};
let current = normalize(safeGet(LANG_KEY) || 'zh-CN');

function safeGet(key) {
  try {
    return localStorage.getItem(key);
  } catch {
    return null;
  }
}

function normalize(lang) {
  return String(lang).toLowerCase().startsWith('en') ? 'en' : 'zh-CN';
}

function table(lang) {
  return lang === 'en' ? messages.en : messages.zh;
}

/** The current language: 'zh-CN' or 'en'. */
export function lang() {
  return current;
}

/** Add messages: {zh: {...}, en: {...}} (later registrations win). */
export function register(more) {
  Object.assign(messages.zh, more.zh || more['zh-CN'] || {});
  Object.assign(messages.en, more.en || {});
}

/** The message `key` in the current language (Chinese, then the key itself, as fallbacks). */
export function t(key, vars = {}) {
  let text = table(current)[key];
  if (text === undefined) text = messages.zh[key];
  if (text === undefined) text = key;
  return String(text).replace(/\{(\w+)\}/g, (m, name) => (name in vars ? String(vars[name]) : m));
}

/** Fill [data-i18n], [data-i18n-placeholder], [data-i18n-aria-label], [data-i18n-title]. */
export function applyI18n(root = document) {
  for (const node of root.querySelectorAll('[data-i18n]')) node.textContent = t(node.dataset.i18n);
  for (const node of root.querySelectorAll('[data-i18n-placeholder]')) {
    node.setAttribute('placeholder', t(node.dataset.i18nPlaceholder));
  }
  for (const node of root.querySelectorAll('[data-i18n-aria-label]')) {
    node.setAttribute('aria-label', t(node.dataset.i18nAriaLabel));
  }
  for (const node of root.querySelectorAll('[data-i18n-title]')) {
    node.setAttribute('title', t(node.dataset.i18nTitle));
  }
  if (root === document) {
    document.documentElement.lang = current;
    if (document.body && document.body.dataset.i18nDocTitle) {
      document.title = t(document.body.dataset.i18nDocTitle);
    }
  }
}

/** Switch language ('zh-CN' | 'en'), remember it, re-translate the page, fire 'langchange'. */
export function setLang(lang) {
  current = normalize(lang);
  try {
    localStorage.setItem(LANG_KEY, current);
  } catch {
    /* private mode: not remembered */
  }
  applyI18n(document);
  window.dispatchEvent(new CustomEvent('langchange', {detail: {lang: current}}));
}

register({
  zh: {
    'common.lang_switch': 'English',
    'common.lang_switch_label': 'Switch to English',
    'common.logout': '退出',
    'common.loading': '加载中…',
    'common.error': '出错了：{message}',
    'common.retry': '重试',
    'common.close': '关闭',
    'common.none': '暂无',
    'common.signing_in': '正在登录…',
  },
  en: {
    'common.lang_switch': '中文',
    'common.lang_switch_label': '切换到中文',
    'common.logout': 'Sign out',
    'common.loading': 'Loading…',
    'common.error': 'Something went wrong: {message}',
    'common.retry': 'Retry',
    'common.close': 'Close',
    'common.none': 'None',
    'common.signing_in': 'Signing in…',
  },
});
