// Trend charts with the vendored Chart.js (UMD build, loaded once as a classic script: the CSP
// allows scripts from this origin only). https://www.chartjs.org/docs/latest/
//
//   await trendChart(canvas, [{t: '2025-01-02T08:00:00+08:00', v: 132}, ...],
//                    {label: '收缩压', unit: 'mmHg', low: 90, high: 140});

import {fmtDate} from './ui.js';

const SRC = new URL('./vendor/chartjs/chart.umd.min.js', import.meta.url).href;
let loading = null;

/** window.Chart, loading the vendored script on first use. */
export function loadChartJs() {
  if (window.Chart) return Promise.resolve(window.Chart);
  if (!loading) {
    loading = new Promise((resolve, reject) => {
      const s = document.createElement('script');
      s.src = SRC;
      s.onload = () => resolve(window.Chart);
      s.onerror = () => reject(new Error('Chart.js could not be loaded'));
      document.head.append(s);
    });
  }
  return loading;
}

/**
 * A line chart of `points` ({t: date or instant, v: number}, any order) with the reference
 * range as dashed lines. Sets the canvas's role and accessible label (latest value, range).
 * Returns the Chart instance (call .destroy() before drawing another on the same canvas).
 */
export async function trendChart(canvas, points, {label = '', unit = '', low, high} = {}) {
  const Chart = await loadChartJs();
  const data = [...points]
    .filter((p) => p && p.v !== null && p.v !== undefined && !Number.isNaN(Number(p.v)))
    .sort((a, b) => new Date(a.t) - new Date(b.t));
  const labels = data.map((p) => fmtDate(p.t));
  const datasets = [
    {
      label: unit ? `${label} (${unit})` : label,
      data: data.map((p) => Number(p.v)),
      borderColor: '#0b5cad',
      backgroundColor: '#0b5cad',
      pointRadius: 3,
      tension: 0,
    },
  ];
  const band = (value, name) => ({
    label: name,
    data: data.map(() => value),
    borderColor: '#a14d00',
    borderDash: [6, 4],
    borderWidth: 1,
    pointRadius: 0,
    fill: false,
  });
  if (low !== undefined && low !== null) datasets.push(band(Number(low), '↓'));
  if (high !== undefined && high !== null) datasets.push(band(Number(high), '↑'));
  const last = data[data.length - 1];
  canvas.setAttribute('role', 'img');
  canvas.setAttribute(
    'aria-label',
    last ? `${label}: ${last.v} ${unit} (${fmtDate(last.t)}), n=${data.length}` : label,
  );
  const existing = Chart.getChart ? Chart.getChart(canvas) : null;
  if (existing) existing.destroy();
  return new Chart(canvas, {
    type: 'line',
    data: {labels, datasets},
    options: {
      animation: false,
      responsive: true,
      maintainAspectRatio: false,
      plugins: {legend: {display: true, labels: {filter: (item) => item.datasetIndex === 0}}},
      scales: {y: {title: {display: Boolean(unit), text: unit}}},
    },
  });
}
