// "My record": the patient summary (Patient/$summary), results with a trend chart, immunizations.

import {fhir} from '../common/smart.js';
import {t} from '../common/i18n.js';
import {codeText, el, entries, fmtDate, fmtDateTime, render} from '../common/ui.js';
import {trendChart} from '../common/chart.js';

function when(res) {
  return res.effectiveDateTime || res.occurrenceDateTime || res.recordedDate || res.onsetDateTime
    || res.authoredOn || (res.effectivePeriod && res.effectivePeriod.start) || res.issued || '';
}

function section(titleKey, items, id) {
  return el('section', {class: 'card', id, 'aria-labelledby': `${id}-h`},
    el('h3', {id: `${id}-h`}, t(titleKey)),
    items.length ? el('ul', {}, items) : el('p', {class: 'muted'}, t('common.none')));
}

/** Time series by code: {key: {label, unit, low, high, points: [{t, v}]}} */
export function seriesOf(observations) {
  const out = new Map();
  const add = (code, value, at, range) => {
    if (!value || typeof value.value !== 'number' || !at) return;
    const coding = (code && code.coding && code.coding[0]) || {};
    const key = `${coding.system || ''}|${coding.code || codeText(code)}`;
    if (!out.has(key)) {
      out.set(key, {key, label: codeText(code), unit: value.unit || value.code || '', points: [],
        low: range && range.low ? range.low.value : undefined, high: range && range.high ? range.high.value : undefined});
    }
    out.get(key).points.push({t: at, v: value.value});
  };
  for (const o of observations) {
    const at = when(o);
    const range = (o.referenceRange || [])[0];
    if (o.valueQuantity) add(o.code, o.valueQuantity, at, range);
    for (const c of o.component || []) add(c.code, c.valueQuantity, at, (c.referenceRange || [])[0]);
  }
  return [...out.values()].sort((a, b) => b.points.length - a.points.length);
}

export async function recordPanel(root, state) {
  const pid = encodeURIComponent(state.patientId);
  const [summary, obsBundle, immBundle] = await Promise.all([
    fhir(`Patient/${pid}/$summary`),
    fhir(`Observation?patient=Patient/${pid}&_count=500`),
    fhir(`Immunization?patient=Patient/${pid}&_count=200`),
  ]);
  const inSummary = (type) => entries(summary, type);
  const allergies = inSummary('AllergyIntolerance').map((a) =>
    el('li', {}, codeText(a.code), a.criticality === 'high' ? el('span', {class: 'badge danger'}, '!') : null));
  const problems = inSummary('Condition').map((c) =>
    el('li', {}, codeText(c.code), ' ', el('span', {class: 'muted small'}, fmtDate(when(c)))));
  const meds = [...inSummary('MedicationStatement'), ...inSummary('MedicationRequest')].map((m) =>
    el('li', {}, codeText(m.medicationCodeableConcept) || (m.medicationReference && m.medicationReference.display) || ''));
  const imms = entries(immBundle, 'Immunization')
    .sort((a, b) => when(b).localeCompare(when(a)))
    .map((i) => el('li', {}, codeText(i.vaccineCode), ' ', el('span', {class: 'muted small'}, fmtDate(when(i)))));

  const series = seriesOf(entries(obsBundle, 'Observation'));
  const results = el('section', {class: 'card', id: 'results', 'aria-labelledby': 'results-h'},
    el('h3', {id: 'results-h'}, t('record.results')));
  if (series.length) {
    const select = el('select', {id: 'trend-code'}, series.map((s, i) =>
      el('option', {value: String(i)}, `${s.label} (${s.points.length})`)));
    const canvas = el('canvas', {id: 'trend-chart'});
    const table = el('table', {class: 'small'});
    const draw = async () => {
      const s = series[Number(select.value)];
      await trendChart(canvas, s.points, {label: s.label, unit: s.unit, low: s.low, high: s.high});
      render(table, el('caption', {class: 'muted'}, s.label),
        [...s.points].sort((a, b) => String(b.t).localeCompare(String(a.t))).slice(0, 10).map((p) =>
          el('tr', {}, el('td', {}, fmtDateTime(p.t)), el('td', {}, `${p.v} ${s.unit}`))));
    };
    select.addEventListener('change', draw);
    results.append(el('label', {for: 'trend-code'}, t('record.trend_for')), select,
      el('div', {class: 'chart-box'}, canvas), table);
    render(root, el('h2', {}, t('record.heading')),
      el('p', {class: 'muted small'}, t('record.summary_from', {time: fmtDateTime(summary.timestamp)})),
      section('record.allergies', allergies, 'allergies'),
      section('record.problems', problems, 'problems'),
      section('record.medications', meds, 'medications'),
      results,
      section('record.immunizations', imms, 'immunizations'));
    await draw();
  } else {
    results.append(el('p', {class: 'muted'}, t('record.no_results')));
    render(root, el('h2', {}, t('record.heading')),
      section('record.allergies', allergies, 'allergies'),
      section('record.problems', problems, 'problems'),
      section('record.medications', meds, 'medications'),
      results,
      section('record.immunizations', imms, 'immunizations'));
  }
}
