// Results over time: the patient's numeric Observations (vital signs and laboratory,
// http://hl7.org/fhir/R4/observation.html) grouped into one series per code, oldest first.
// A blood-pressure panel (LOINC 85354-9) gives its systolic and diastolic components as one
// series with two lines. No DOM, no network.

import {lang} from '../common/i18n.js';
import {codeText} from '../common/ui.js';
import {codeOf} from './fhirdata.js';

export const LOINC = 'http://loinc.org';
export const BP_PANEL = '85354-9';
const SKIP = new Set(['entered-in-error', 'cancelled']);

/** A code's name in the current language: the Chinese text, or in English the coding's display
 * (LOINC displays are English). */
function conceptText(cc) {
  if (lang() === 'en') {
    const c = ((cc && cc.coding) || []).find((x) => x.display);
    if (c) return c.display;
  }
  return codeText(cc);
}

function when(o) {
  return o.effectiveDateTime || (o.effectivePeriod && o.effectivePeriod.start) || o.issued || null;
}

function numeric(q) {
  return q && typeof q.value === 'number' ? q.value : null;
}

function category(o) {
  for (const cc of o.category || []) {
    const c = codeOf(cc);
    if (c) return c;
  }
  return '';
}

/**
 * Series of `observations`: [{key, code, display, unit, category, lines: [{code, display,
 * points: [{time, value}]}], latest: {time, values}, referenceRange}], ordered by display.
 */
export function seriesOf(observations) {
  const byKey = new Map();
  for (const o of observations || []) {
    if (!o || SKIP.has(o.status)) continue;
    const t = when(o);
    if (!t) continue;
    const code = codeOf(o.code, LOINC) || codeOf(o.code);
    if (!code) continue;
    const parts = [];
    const own = numeric(o.valueQuantity);
    if (own !== null) parts.push({ code, display: conceptText(o.code), q: o.valueQuantity });
    for (const comp of o.component || []) {
      const v = numeric(comp.valueQuantity);
      if (v !== null) parts.push({ code: codeOf(comp.code, LOINC) || codeOf(comp.code), display: conceptText(comp.code), q: comp.valueQuantity });
    }
    if (!parts.length) continue;
    let s = byKey.get(code);
    if (!s) {
      s = {
        key: code,
        code,
        display: conceptText(o.code) || code,
        unit: parts[0].q.unit || parts[0].q.code || '',
        category: category(o),
        lines: [],
        referenceRange: (o.referenceRange || [])[0] || null,
      };
      byKey.set(code, s);
    }
    for (const p of parts) {
      let line = s.lines.find((l) => l.code === p.code);
      if (!line) {
        line = { code: p.code, display: p.display || p.code, points: [] };
        s.lines.push(line);
      }
      line.points.push({ time: t, value: p.q.value });
    }
  }
  const out = [...byKey.values()];
  for (const s of out) {
    for (const l of s.lines) l.points.sort((a, b) => Date.parse(a.time) - Date.parse(b.time));
    // components of a panel: systolic before diastolic (the larger values first)
    s.lines.sort((a, b) => (b.points.at(-1)?.value ?? 0) - (a.points.at(-1)?.value ?? 0));
    const lastTime = s.lines.map((l) => l.points.at(-1)?.time).filter(Boolean).sort((a, b) => Date.parse(a) - Date.parse(b)).at(-1);
    s.latest = {
      time: lastTime,
      values: s.lines.map((l) => {
        const p = l.points.findLast((x) => x.time === lastTime);
        return p ? p.value : null;
      }),
    };
    s.count = Math.max(...s.lines.map((l) => l.points.length));
  }
  out.sort((a, b) => (a.category === b.category ? a.display.localeCompare(b.display) : a.category.localeCompare(b.category)));
  return out;
}

/** "120/80" for a panel, "72" for a single value. */
export function latestText(s) {
  return s.latest.values.filter((v) => v !== null && v !== undefined).join('/');
}
