// The outbox: every bedside submission is written here first (localStorage, so it survives a
// reload or a crashed tab), then sent. Ward Wi-Fi drops out; a submission that could not be sent
// stays "pending" and is retried (on the browser's `online` event, on a timer, or by hand).
//
// Retries never duplicate: each entry carries the client-generated id that the ward operations
// ($record-vitals, $administer) turn into a conditional create on an identifier, so the server
// answers a repeat with what it stored the first time.
//
// An entry: {id, kind, path, body, summary, created, attempts, state, error}
//   state: 'pending' (to send) | 'sending' | 'failed' (the server refused it when it was sent
//   in the background: 4xx; kept, with the reason, until the nurse discards it).

const PREFIX = 'nurse.outbox.v1:';

/** Whether an error from `send` means "try again later" (no network, server busy, signed out). */
export function retryable(err) {
  const status = err && typeof err.status === 'number' ? err.status : 0;
  return status === 0 || status === 401 || status === 408 || status === 429 || status >= 500;
}

export function newId() {
  if (globalThis.crypto && crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

export class Outbox {
  /**
   * @param {object} o
   * @param {string} o.owner  whose outbox (the signed-in user), part of the storage key
   * @param {(entry: object) => Promise<any>} o.send  sends one entry, resolves with the answer
   * @param {() => void} [o.onChange]  called after every change (render the pending list)
   */
  constructor({ owner, send, onChange }) {
    this.key = PREFIX + owner;
    this.send = send;
    this.onChange = onChange || (() => {});
    this.running = null;
    // another tab of the same user changed it
    window.addEventListener('storage', (e) => {
      if (e.key === this.key) this.onChange();
    });
  }

  entries() {
    try {
      const got = JSON.parse(localStorage.getItem(this.key) || '[]');
      return Array.isArray(got) ? got : [];
    } catch {
      return [];
    }
  }

  _save(list) {
    localStorage.setItem(this.key, JSON.stringify(list));
    this.onChange();
  }

  _update(id, change) {
    const list = this.entries();
    const e = list.find((x) => x.id === id);
    if (e) Object.assign(e, change);
    this._save(list);
  }

  get pending() {
    return this.entries().filter((e) => e.state !== 'failed').length;
  }

  /** Add a submission ({kind, path, body, summary}; `id` = the body's clientId). */
  add(entry) {
    const e = { created: new Date().toISOString(), attempts: 0, state: 'pending', error: null, ...entry };
    this._save([...this.entries(), e]);
    return e;
  }

  discard(id) {
    this._save(this.entries().filter((e) => e.id !== id));
  }

  /**
   * Send what is pending, oldest first; stops at the first "try later" error (the network is
   * down: the rest would fail too). One flush at a time. Resolves with a Map id -> {ok, value}
   * or {ok: false, error, retry}.
   */
  flush() {
    if (this.running) return this.running.then(() => this.flush());
    this.running = this._flush().finally(() => {
      this.running = null;
    });
    return this.running;
  }

  async _flush() {
    const results = new Map();
    // an entry left 'sending' by a closed tab is sent again (the server deduplicates)
    for (const e of this.entries()) {
      if (e.state !== 'pending' && e.state !== 'sending') continue;
      if (navigator.onLine === false) {
        results.set(e.id, { ok: false, retry: true, error: null });
        break;
      }
      this._update(e.id, { state: 'sending', attempts: e.attempts + 1 });
      try {
        const value = await this.send(e);
        this.discard(e.id);
        results.set(e.id, { ok: true, value, entry: e });
      } catch (err) {
        const again = retryable(err);
        const text = (err && err.message) || String(err);
        this._update(e.id, { state: again ? 'pending' : 'failed', error: text, status: err && err.status });
        results.set(e.id, { ok: false, retry: again, error: err });
        if (again) break;
      }
    }
    return results;
  }
}
