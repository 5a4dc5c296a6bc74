// Small DOM helpers. Text always goes in as text nodes (never innerHTML), so nothing the
// API answers (app names, log lines, job output) can become markup. No inline styles: the
// CSP is style-src 'self'; sizes set from data go through the CSSOM (el.style.width).

/**
 * `h('button', {type: 'button', onclick: f, 'data-testid': 'x'}, 'Label')`.
 * Attributes: `class`; `on*` functions become listeners; `value`/`checked` set properties;
 * `true` sets an empty attribute; `null`/`undefined`/`false` skip it.
 */
export function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  add(el, kids);
  return el;
}

const SVG_NS = 'http://www.w3.org/2000/svg';

/** An SVG element. */
export function svg(tag, attrs, ...kids) {
  const el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs);
  add(el, kids);
  return el;
}

function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'value' || k === 'checked') el[k] = v;
    else if (k === 'style') throw new Error('no inline styles (CSP)');
    else el.setAttribute(k === 'class' ? 'class' : k, v === true ? '' : String(v));
  }
}

/** Appends children: nodes, strings (as text), arrays, skipping null/false. */
export function add(el, kids) {
  for (const k of kids.flat(Infinity)) {
    if (k === null || k === undefined || k === false) continue;
    el.append(k instanceof Node ? k : document.createTextNode(String(k)));
  }
  return el;
}

/** Replaces an element's children. */
export function fill(el, ...kids) {
  el.replaceChildren();
  return add(el, kids);
}

/** A table with a caption (visible or not), column headers and rows (arrays of cells). */
export function table(caption, headers, rows, attrs = {}) {
  return h('div', { class: 'table-wrap' },
    h('table', attrs,
      h('caption', { class: caption.hidden ? 'sr-only' : null }, caption.text || caption),
      h('thead', null, h('tr', null, headers.map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', null, rows)));
}

/** A section with a heading (h2) and an id for in-page links. */
export function section(id, title, ...kids) {
  const hid = `${id}-h`;
  return h('section', { id, class: 'card', 'aria-labelledby': hid },
    h('h2', { id: hid }, title), ...kids);
}

/** A short status badge: `badge('running', 'ok')`. */
export function badge(text, kind) {
  return h('span', { class: `badge ${kind || ''}` }, text);
}

/** The badge kind of a job, workflow, instance or host state. */
export function stateKind(state) {
  switch (state) {
    case 'running': case 'succeeded': case 'ready': case 'healthy':
      return 'ok';
    case 'failed': case 'timed_out': case 'unhealthy': case 'down':
      return 'bad';
    case 'pending': case 'starting': case 'stopping': case 'draining': case 'cancelled':
      return 'warn';
    default:
      return '';
  }
}

/** A local date and time for an RFC 3339 instant ('' for none). */
export function when(ts) {
  if (!ts) return '';
  const d = new Date(ts);
  if (Number.isNaN(d.getTime())) return String(ts);
  return d.toLocaleString(undefined, {
    year: 'numeric', month: '2-digit', day: '2-digit',
    hour: '2-digit', minute: '2-digit', second: '2-digit',
  });
}

/** A `<time>` element with the local rendering and the instant in `datetime`. */
export function time(ts) {
  return ts ? h('time', { datetime: ts }, when(ts)) : '—';
}

/** Megabytes as MiB/GiB. */
export function mib(n) {
  if (n === null || n === undefined) return '—';
  return n >= 1024 ? `${(n / 1024).toFixed(n % 1024 ? 1 : 0)} GiB` : `${n} MiB`;
}

/** A number with at most `d` decimals. */
export function num(n, d = 2) {
  if (n === null || n === undefined || Number.isNaN(n)) return '—';
  return Number(n.toFixed(d)).toString();
}

/** A short manifest digest: `sha256:abcdef123456`. */
export function shortDigest(d) {
  if (!d) return '—';
  const i = d.indexOf(':');
  return i >= 0 ? d.slice(0, i + 13) : d.slice(0, 12);
}

const notice = () => document.getElementById('notice');
const alertBox = () => document.getElementById('alert');

/** Says something politely to everyone (a visible status line and a live region). */
export function announce(text) {
  const n = notice();
  if (n) n.textContent = text;
}

/** Shows an error (role=alert); `err` an ApiError, Error or string; null clears it. */
export function showError(err) {
  const a = alertBox();
  if (!a) return;
  if (!err) {
    a.hidden = true;
    a.textContent = '';
    return;
  }
  const text = typeof err === 'string' ? err
    : err.code && err.code !== 'network' ? `${err.message} (${err.code})` : err.message;
  a.textContent = text;
  a.hidden = false;
}

/** An inline error paragraph for a section that failed to load. */
export function errorLine(err, testid) {
  const text = err.code ? `${err.message} (${err.code})` : String(err.message || err);
  return h('p', { class: 'error', role: 'alert', 'data-testid': testid || 'section-error' }, text);
}

/**
 * Runs `fn` at most once per `ms`, the last call winning: a burst of events becomes one
 * reload. Cancelled with the signal.
 */
export function debounce(fn, ms, signal) {
  let timer = null;
  const run = (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      timer = null;
      if (!signal || !signal.aborted) fn(...args);
    }, ms);
  };
  if (signal) signal.addEventListener('abort', () => clearTimeout(timer));
  return run;
}

/** Whether `s` is an app id (a DNS label), so it can go into a path. */
export function isAppId(s) {
  return typeof s === 'string' && /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(s);
}

/** The page's h1 (data-testid page-title); also sets the document title. */
export function pageTitle(text, ...extra) {
  document.title = `${text} · caas console`;
  return h('h1', { 'data-testid': 'page-title' }, text, ...extra);
}

/**
 * Runs `fn(item)` over `items` with at most `n` at once (the browser has 6 connections per
 * origin over HTTP/1.1, and the streams hold some). Resolves when all are done.
 */
export async function eachLimited(items, n, fn) {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const item = items[next++];
      await fn(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, worker));
}
