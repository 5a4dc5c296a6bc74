// An app's traffic graph from GET /v1/apps/{app}/traffic?window=15m&step=10s, which answers
// {"app","window_s","step_s","points":[{"t","rps","status":{"2xx","3xx","4xx","5xx"},
// "p50_ms","p99_ms","bytes"}]}. A 404 (no such endpoint yet, or no data) shows "No traffic
// data". Two SVG charts (requests and errors per second; p50 and p99 latency), a text
// summary for screen readers and the numbers as a table.

import { json, seg, ApiError } from '../api.js';
import { h, svg, fill, table, errorLine, num } from '../dom.js';

const W = 600;
const H = 140;
const WINDOW = '15m';
const STEP = '10s';

/** A round upper bound for a chart's axis: 1, 2 or 5 times a power of ten. */
function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function finite(v) {
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
}

function bytes(n) {
  if (n === null) return '—';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) {
    n /= 1024;
    i += 1;
  }
  return `${num(n, 1)} ${u[i]}`;
}

/** One chart: `series` = [{name, cls, values}] over the points' times `xs` (0..1). */
function chart(title, unit, xs, series) {
  const max = niceMax(Math.max(0, ...series.flatMap((s) => s.values.filter((v) => v !== null))));
  const y = (v) => H - (v / max) * H;
  const grid = [0.25, 0.5, 0.75].map((f) => svg('line', {
    x1: 0, x2: W, y1: H * f, y2: H * f, class: 'gridline', 'vector-effect': 'non-scaling-stroke',
  }));
  const paths = series.map((s) => {
    let d = '';
    let pen = false;
    s.values.forEach((v, i) => {
      if (v === null) {
        pen = false;
        return;
      }
      d += `${pen ? 'L' : 'M'}${(xs[i] * W).toFixed(1)},${y(v).toFixed(1)}`;
      pen = true;
    });
    return svg('path', { d: d || 'M0,0', class: `series ${s.cls}`, fill: 'none', 'vector-effect': 'non-scaling-stroke' });
  });
  const label = `${title}: ${series.map((s) => `${s.name} up to ${num(Math.max(0, ...s.values.filter((v) => v !== null)))} ${unit}`).join('; ')}`;
  return h('figure', { class: 'chart' },
    h('figcaption', null, title,
      h('ul', { class: 'legend' }, series.map((s) => h('li', null, h('span', { class: `swatch ${s.cls}` }), s.name)))),
    h('div', { class: 'plot' },
      h('span', { class: 'y-max', 'aria-hidden': 'true' }, `${num(max)} ${unit}`),
      h('span', { class: 'y-zero', 'aria-hidden': 'true' }, '0'),
      svg('svg', {
        viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'none', role: 'img', 'aria-label': label,
      }, grid, paths)));
}

function clock(t) {
  const d = new Date(t);
  return Number.isNaN(d.getTime()) ? '' : d.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });
}

/** The graph for a traffic answer. */
function graph(data) {
  const pts = (data.points || []).filter((p) => p && !Number.isNaN(new Date(p.t).getTime()));
  pts.sort((a, b) => new Date(a.t) - new Date(b.t));
  const step = finite(data.step_s) || 10;
  const t0 = pts.length ? new Date(pts[0].t).getTime() : 0;
  const t1 = pts.length ? new Date(pts[pts.length - 1].t).getTime() : 0;
  const xs = pts.map((p) => (t1 > t0 ? (new Date(p.t).getTime() - t0) / (t1 - t0) : 0.5));
  const st = (p, k) => finite(p.status && p.status[k]);
  const rps = pts.map((p) => finite(p.rps));
  const errs = pts.map((p) => {
    const a = st(p, '4xx');
    const b = st(p, '5xx');
    return a === null && b === null ? null : ((a || 0) + (b || 0)) / step;
  });
  const p50 = pts.map((p) => finite(p.p50_ms));
  const p99 = pts.map((p) => finite(p.p99_ms));
  const sum = (f) => pts.reduce((acc, p) => acc + (f(p) || 0), 0);
  const known = rps.filter((v) => v !== null);
  const avg = known.length ? known.reduce((a, b) => a + b, 0) / known.length : null;
  const peak = known.length ? Math.max(...known) : null;
  const worstP99 = p99.some((v) => v !== null) ? Math.max(...p99.filter((v) => v !== null)) : null;
  const minutes = Math.round((finite(data.window_s) || 900) / 60);
  const summary = `Last ${minutes} min: ${num(avg)} requests/s on average, peak ${num(peak)}; `
    + `${sum((p) => st(p, '2xx'))} 2xx, ${sum((p) => st(p, '3xx'))} 3xx, ${sum((p) => st(p, '4xx'))} 4xx, `
    + `${sum((p) => st(p, '5xx'))} 5xx; p99 up to ${num(worstP99)} ms; ${bytes(sum((p) => finite(p.bytes)))} sent.`;

  const rows = pts.slice().reverse().map((p) => h('tr', null,
    h('th', { scope: 'row' }, h('time', { datetime: p.t }, clock(p.t))),
    h('td', null, num(finite(p.rps))),
    ...['2xx', '3xx', '4xx', '5xx'].map((k) => h('td', null, st(p, k) ?? '—')),
    h('td', null, num(finite(p.p50_ms))), h('td', null, num(finite(p.p99_ms))),
    h('td', null, bytes(finite(p.bytes)))));

  return h('div', { 'data-testid': 'traffic-graph', 'data-points': String(pts.length) },
    h('p', { class: 'summary' }, summary),
    h('div', { class: 'charts' },
      chart('Requests per second', 'req/s', xs, [
        { name: 'requests', cls: 's-rps', values: rps },
        { name: '4xx + 5xx', cls: 's-err', values: errs },
      ]),
      chart('Latency', 'ms', xs, [
        { name: 'p50', cls: 's-p50', values: p50 },
        { name: 'p99', cls: 's-p99', values: p99 },
      ])),
    h('p', { class: 'axis muted', 'aria-hidden': 'true' },
      h('span', null, pts.length ? clock(pts[0].t) : ''), h('span', null, pts.length ? clock(pts[pts.length - 1].t) : '')),
    h('details', null, h('summary', null, 'Numbers'),
      table({ text: 'Traffic per step, newest first', hidden: true },
        ['Time', 'req/s', '2xx', '3xx', '4xx', '5xx', 'p50 ms', 'p99 ms', 'Bytes'], rows)));
}

/** The traffic panel of `app`: `{el, reload}`. */
export function trafficPanel(app, signal) {
  const body = h('div', { 'aria-busy': 'true' }, h('p', null, 'Loading traffic…'));
  let loading = false;
  const reload = async () => {
    if (loading || signal.aborted) return;
    loading = true;
    try {
      const data = await json(`/v1/apps/${seg(app)}/traffic?window=${WINDOW}&step=${STEP}`, { signal });
      fill(body, data && Array.isArray(data.points) && data.points.length ? graph(data)
        : h('p', { class: 'muted', 'data-testid': 'traffic-empty' }, 'No traffic data for the last 15 minutes.'));
    } catch (e) {
      if (signal.aborted) return;
      fill(body, e instanceof ApiError && e.status === 404
        ? h('p', { class: 'muted', 'data-testid': 'traffic-empty' }, 'No traffic data.')
        : errorLine(e, 'traffic-error'));
    } finally {
      loading = false;
      body.removeAttribute('aria-busy');
    }
  };
  const refresh = h('button', { type: 'button', 'data-testid': 'traffic-refresh', onclick: reload }, 'Refresh');
  reload();
  return { el: h('div', null, h('div', { class: 'toolbar' }, refresh), body), reload };
}
