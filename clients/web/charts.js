// charts.js — the overview's three charts, drawn with uPlot (vendor/uPlot.iife.min.js, a
// global): samples per hour of the day, the turnaround distribution (sample to result, binned
// minutes) and clearance per child area against the 90% line. All three are bar charts over
// categories (x = 0..n-1, labelled by the axis), which reads better for officials than lines.
// Each figure also gets a text summary (aria-label) so that the numbers are not only pixels.

import { t, num } from './i18n.js';

const plots = new Map(); // figure id → { plot, body, key }
let observer = null;

const COLORS = {
  bar: '#2f6db5',
  ok: '#2e8b57',
  low: '#d08a00',
  line: '#b03030',
  axis: '#3d4450',
  grid: 'rgba(60, 70, 90, 0.12)',
};

export function chartsAvailable() {
  return typeof window.uPlot === 'function';
}

function bars(width) {
  return window.uPlot.paths.bars({ size: [width, 48], gap: 2 });
}

/** A bar series; fmt(v) is its legend text under the cursor (idx null: no cursor, "—"). */
function barSeries(label, color, width, fmt) {
  return {
    label,
    fill: color,
    stroke: color,
    paths: bars(width),
    points: { show: false },
    value: (u, v, si, idx) => (idx === null || idx === undefined ? '—' : fmt(v)),
  };
}

/** The x series of a category chart: the legend shows the category under the cursor. */
function xSeries(label, fmt) {
  return { label, value: (u, v) => (v === null || v === undefined ? '—' : fmt(v)) };
}

const countAxis = () => valueAxis((v) => (Number.isInteger(v) ? num(v) : ''));
const countRange = (u, lo, hi) => [0, Math.max(1, hi) * 1.1];

function categoryAxis(labels, rotate) {
  const n = labels.length;
  return {
    stroke: COLORS.axis,
    grid: { show: false },
    ticks: { show: false },
    gap: 4,
    size: rotate ? 64 : 34,
    rotate: rotate ? -35 : 0,
    splits: (u) => {
      const width = u.bbox.width / (window.devicePixelRatio || 1);
      const room = rotate ? 22 : 40; // px each label needs
      const step = Math.max(1, Math.ceil((n * room) / Math.max(width, 1)));
      const out = [];
      for (let i = 0; i < n; i += step) out.push(i);
      return out;
    },
    values: (u, splits) => splits.map((i) => (labels[i] === undefined ? '' : labels[i])),
  };
}

function valueAxis(fmt) {
  return {
    stroke: COLORS.axis,
    grid: { stroke: COLORS.grid, width: 1 },
    ticks: { show: false },
    size: 48,
    values: (u, splits) => splits.map(fmt),
  };
}

function baseOpts(body, labels, extra) {
  const n = labels.length;
  return Object.assign(
    {
      width: Math.max(200, body.clientWidth),
      height: 200,
      legend: { show: true, live: true },
      cursor: { points: { show: false }, drag: { x: false, y: false } },
      scales: { x: { time: false, range: () => [-0.5, Math.max(n, 1) - 0.5] } },
    },
    extra,
  );
}

function mount(id, key, makeOpts, data, summary) {
  const fig = document.getElementById(id);
  if (!fig) return;
  const body = fig.querySelector('.chart-body');
  const old = plots.get(id);
  if (old && old.key === key) {
    old.plot.setData(data);
  } else {
    if (old) old.plot.destroy();
    body.textContent = '';
    const plot = new window.uPlot(makeOpts(body), data, body);
    plots.set(id, { plot, body, key });
  }
  fig.setAttribute('aria-label', summary);
  if (!observer && typeof ResizeObserver === 'function') {
    observer = new ResizeObserver(() => {
      for (const p of plots.values()) {
        const w = Math.max(200, p.body.clientWidth);
        if (Math.abs(p.plot.width - w) > 2) p.plot.setSize({ width: w, height: 200 });
      }
    });
  }
  if (observer) observer.observe(body);
}

function empty(id, text) {
  const fig = document.getElementById(id);
  if (!fig) return;
  const old = plots.get(id);
  if (old) {
    old.plot.destroy();
    plots.delete(id);
  }
  const body = fig.querySelector('.chart-body');
  body.textContent = '';
  const p = document.createElement('p');
  p.className = 'chart-empty';
  p.textContent = text;
  body.appendChild(p);
  fig.setAttribute('aria-label', text);
}

/** Minute bins for the turnaround histogram: a step that gives at most ~16 bars. */
function tatBins(hist) {
  const entries = Object.entries(hist || {}).map(([k, v]) => [Number(k), Number(v)]).filter(([k]) => k >= 0);
  if (!entries.length) return null;
  const max = Math.max(...entries.map(([k]) => k));
  const steps = [5, 10, 15, 30, 60, 120, 240, 480, 720, 1440];
  const step = steps.find((s) => max / s < 16) || 1440;
  const nb = Math.floor(max / step) + 1;
  const counts = new Array(nb).fill(0);
  for (const [k, v] of entries) counts[Math.floor(k / step)] += v;
  const labels = counts.map((_, i) => {
    const lo = i * step;
    return lo >= 120 && step % 60 === 0 ? lo / 60 + 'h' : String(lo);
  });
  return { step, counts, labels };
}

/** Draws (or redraws) the three charts from GET /v1/stats/charts; childWord names the
 * children ("township", "site"). */
export function renderCharts(charts, childWord, langKey) {
  if (!chartsAvailable()) {
    for (const id of ['chart-hourly', 'chart-tat', 'chart-clearance']) empty(id, t('chart_missing'));
    return;
  }
  document.querySelector('#chart-clearance figcaption').textContent = t('chart_clearance', { child: childWord });

  // Samples per hour: hours 6..20 at least, widened to every hour that has samples.
  const hourly = (charts && charts.samples_per_hour) || {};
  const hours = Object.keys(hourly).map(Number).filter((h) => h >= 0 && h < 24);
  if (!hours.length) {
    empty('chart-hourly', t('chart_no_data'));
  } else {
    const lo = Math.min(6, ...hours);
    const hi = Math.max(20, ...hours);
    const labels = [];
    const ys = [];
    for (let h = lo; h <= hi; h++) {
      labels.push(String(h));
      ys.push(Number(hourly[String(h)] || 0) || null); // null: no stub of a bar for 0
    }
    const xs = labels.map((_, i) => i);
    const list = labels.map((hr, i) => (ys[i] ? t('hour_label', { h: hr }) + ' ' + num(ys[i]) : null)).filter(Boolean).join(', ');
    mount(
      'chart-hourly',
      'h' + lo + '-' + hi + langKey,
      (body) =>
        baseOpts(body, labels, {
          series: [
            xSeries(t('axis_hour'), (v) => t('hour_label', { h: labels[v] })),
            barSeries(t('series_samples'), COLORS.bar, 0.7, (v) => num(v || 0)),
          ],
          axes: [categoryAxis(labels, false), countAxis()],
          scales: { x: { time: false, range: () => [-0.5, labels.length - 0.5] }, y: { range: countRange } },
        }),
      [xs, ys],
      t('chart_sum_hourly', { list }),
    );
  }

  // Turnaround distribution.
  const bins = tatBins(charts && charts.tat_histogram);
  if (!bins) {
    empty('chart-tat', t('chart_no_data'));
  } else {
    const xs = bins.counts.map((_, i) => i);
    const ys = bins.counts.map((c) => c || null);
    const list = bins.counts
      .map((c, i) => (c ? bins.labels[i] + '–' + (i + 1) * bins.step + ' ' + t('axis_minutes') + ': ' + num(c) : null))
      .filter(Boolean)
      .join(', ');
    mount(
      'chart-tat',
      'tat' + bins.step + '-' + bins.counts.length + langKey,
      (body) =>
        baseOpts(body, bins.labels, {
          series: [
            xSeries(t('axis_minutes'), (v) => v * bins.step + '–' + (v + 1) * bins.step),
            barSeries(t('series_tubes'), COLORS.bar, 0.9, (v) => num(v || 0)),
          ],
          axes: [categoryAxis(bins.labels, false), countAxis()],
          scales: { x: { time: false, range: () => [-0.5, bins.counts.length - 0.5] }, y: { range: countRange } },
        }),
      [xs, ys],
      t('chart_sum_tat', { list }),
    );
  }

  // Clearance per child, green at or above 90%, amber below, with the 90% line.
  const rows = ((charts && charts.clearance) || []).filter((r) => r.persons_sampled > 0);
  if (!rows.length) {
    empty('chart-clearance', t('chart_no_data'));
  } else {
    const labels = rows.map((r) => (r.name && r.name.length > 8 ? r.name.slice(0, 7) + '…' : r.name || r.code));
    const xs = rows.map((_, i) => i);
    const ok = rows.map((r) => (r.clearance >= 0.9 ? r.clearance : null));
    const low = rows.map((r) => (r.clearance < 0.9 ? r.clearance : null));
    const pct = (v) => (v === null || v === undefined ? '—' : (v * 100).toFixed(1) + '%');
    const list = rows.map((r) => (r.name || r.code) + ' ' + pct(r.clearance)).join(', ');
    mount(
      'chart-clearance',
      'cl' + rows.map((r) => r.code).join(',') + langKey,
      (body) =>
        baseOpts(body, labels, {
          series: [
            xSeries(t('col_area'), (v) => (rows[v] ? rows[v].name || rows[v].code : '')),
            barSeries(t('series_ok'), COLORS.ok, 0.6, pct),
            barSeries(t('series_low'), COLORS.low, 0.6, pct),
          ],
          axes: [categoryAxis(labels, rows.length > 5), valueAxis((v) => Math.round(v * 100) + '%')],
          scales: { x: { time: false, range: () => [-0.5, rows.length - 0.5] }, y: { range: () => [0, 1] } },
          hooks: {
            draw: [
              (u) => {
                const ctx = u.ctx;
                const y = Math.round(u.valToPos(0.9, 'y', true));
                ctx.save();
                ctx.strokeStyle = COLORS.line;
                ctx.setLineDash([6, 4]);
                ctx.lineWidth = Math.max(1, window.devicePixelRatio || 1);
                ctx.beginPath();
                ctx.moveTo(u.bbox.left, y);
                ctx.lineTo(u.bbox.left + u.bbox.width, y);
                ctx.stroke();
                ctx.restore();
              },
            ],
          },
        }),
      [xs, ok, low],
      t('chart_sum_clearance', { list }),
    );
  }
}

/** Forgets every chart (sign-out, region change). */
export function clearCharts() {
  for (const p of plots.values()) p.plot.destroy();
  plots.clear();
  if (observer) observer.disconnect();
}
