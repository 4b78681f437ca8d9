// The results table (latest value of each series, out-of-range values marked) and the trend
// chart of the selected series, drawn with common/chart.js; the same values are listed in a
// table under the chart for screen readers and for copying.

import {t} from '../common/i18n.js';
import {trendChart} from '../common/chart.js';
import {el, entries, fmtDate, fmtDateTime, render} from '../common/ui.js';
import {latestText, seriesOf} from './results.js';

function outOfRange(s, v) {
  const rr = s.referenceRange;
  if (!rr || v === null || v === undefined) return false;
  return (rr.low && v < rr.low.value) || (rr.high && v > rr.high.value);
}

/** The results of the Observations in `bundle`, appended to `holder`. */
export async function drawResults(holder, bundle) {
  const series = seriesOf(entries(bundle, 'Observation'));
  if (!series.length) {
    holder.append(el('p', {class: 'muted'}, t('ws.results.none')));
    return;
  }
  const chartHolder = el('div', {class: 'trend', id: 'trend'});
  const buttons = new Map();
  const select = async (s) => {
    for (const [key, b] of buttons) b.setAttribute('aria-pressed', String(key === s.key));
    await drawTrend(chartHolder, s);
  };
  const rows = series.map((s) => {
    const b = el('button', {type: 'button', 'aria-pressed': 'false', dataset: {code: s.code},
      'aria-label': t('ws.results.trendLabel', {name: s.display}), onclick: () => select(s)}, t('ws.results.trend'));
    buttons.set(s.key, b);
    const last = s.latest.values[0];
    return el('tr', {dataset: {code: s.code}},
      el('th', {scope: 'row'}, s.display),
      el('td', {class: `num${outOfRange(s, last) ? ' out-of-range' : ''}`}, `${latestText(s)} ${s.unit}`),
      el('td', {}, fmtDate(s.latest.time)),
      el('td', {class: 'num'}, String(s.count)),
      el('td', {}, b));
  });
  holder.append(
    el('div', {class: 'table-scroll'}, el('table', {class: 'results'},
      el('thead', {}, el('tr', {},
        el('th', {scope: 'col'}, t('ws.results.item')), el('th', {scope: 'col', class: 'num'}, t('ws.results.latest')),
        el('th', {scope: 'col'}, t('ws.results.date')), el('th', {scope: 'col', class: 'num'}, t('ws.results.count')),
        el('th', {scope: 'col'}, t('ws.results.trend')))),
      el('tbody', {}, rows))),
    chartHolder);
  const first = [...series].sort((a, b) => b.count - a.count)[0];
  await select(first);
}

async function drawTrend(holder, s) {
  const boxes = s.lines.map((line) => {
    const canvas = el('canvas', {dataset: {code: line.code}});
    return {line, canvas, box: el('div', {class: 'chart-box'}, canvas)};
  });
  const rr = s.referenceRange || {};
  render(holder,
    el('h4', {id: 'trend-title'}, t('ws.results.chartTitle', {name: s.display})),
    rr.low || rr.high ? el('p', {class: 'small muted'}, t('ws.results.range', {
      low: rr.low ? rr.low.value : '', high: rr.high ? rr.high.value : '', unit: s.unit})) : null,
    boxes.map((b) => b.box),
    el('details', {},
      el('summary', {}, t('ws.results.valueList', {name: s.display})),
      el('table', {class: 'small', id: 'trend-values'},
        el('tbody', {}, s.lines[0].points.map((p, i) => el('tr', {},
          el('td', {}, fmtDateTime(p.time)),
          el('td', {class: 'num'}, s.lines.map((l) => (l.points[i] || {}).value).join('/'), ` ${s.unit}`)))))),
  );
  for (const {line, canvas} of boxes) {
    await trendChart(canvas, line.points.map((p) => ({t: p.time, v: p.value})), {
      label: s.lines.length > 1 ? line.display : s.display,
      unit: s.unit,
      low: s.lines.length === 1 && rr.low ? rr.low.value : undefined,
      high: s.lines.length === 1 && rr.high ? rr.high.value : undefined,
    });
  }
}
