// An app's live log pane: GET /v1/apps/{app}/logs?follow=true&tail=200 read as NDJSON with a
// streaming fetch, new lines appended as they come. When the stream breaks it reconnects
// with back-off from the newest line's time (`since=`), dropping lines it already shows.

import { streamLines, seg, ApiError } from '../api.js';
import { h, fill } from '../dom.js';

const MAX_LINES = 2000;

function clock(ts) {
  const d = new Date(ts);
  if (Number.isNaN(d.getTime())) return ts || '';
  const p = (n, w = 2) => String(n).padStart(w, '0');
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}

/** The logs panel of `app`; streams until `signal` aborts. */
export function logsPanel(app, signal) {
  // role=log with aria-live off: a busy app would otherwise talk over everything else; the
  // status line says how many lines came.
  const pane = h('div', {
    class: 'logs', role: 'log', 'aria-live': 'off', tabindex: '0',
    'aria-label': `Log lines of ${app}`, 'data-testid': 'logs-pane',
  });
  const status = h('span', { class: 'muted', 'data-testid': 'logs-status' }, 'Connecting…');
  const toggle = h('button', { type: 'button', 'aria-pressed': 'false', 'data-testid': 'logs-toggle' }, 'Pause');
  const clear = h('button', { type: 'button', 'data-testid': 'logs-clear' }, 'Clear');

  let controller = null;
  let paused = false;
  let lastTs = null;
  let count = 0;
  let attempt = 0;
  let timer = null;
  let queue = [];
  let frame = 0;
  const keys = [];
  const keySet = new Set();

  const key = (l) => `${l.ts}\u0000${l.instance}\u0000${l.stream}\u0000${l.line}`;

  const flush = () => {
    frame = 0;
    if (!queue.length) return;
    const atBottom = pane.scrollTop + pane.clientHeight >= pane.scrollHeight - 8;
    const frag = document.createDocumentFragment();
    for (const l of queue) {
      frag.append(h('div', { class: `ll ${l.stream === 'stderr' ? 'err' : ''}`, 'data-testid': 'log-line', 'data-stream': l.stream },
        h('time', { datetime: l.ts }, clock(l.ts)), ' ',
        h('span', { class: 'inst', title: `${l.instance} (${l.version})` }, l.instance), ' ',
        h('span', { class: 'txt' }, l.line)));
    }
    queue = [];
    pane.append(frag);
    while (pane.children.length > MAX_LINES) {
      pane.firstElementChild.remove();
      keySet.delete(keys.shift());
    }
    if (atBottom) pane.scrollTop = pane.scrollHeight;
    status.textContent = `${count} lines${paused ? ', paused' : ', following'}`;
  };

  const take = (l) => {
    if (!l || typeof l.line !== 'string') return;
    const k = key(l);
    if (keySet.has(k)) return;
    keySet.add(k);
    keys.push(k);
    if (keys.length > MAX_LINES) keySet.delete(keys.shift());
    if (!lastTs || l.ts > lastTs) lastTs = l.ts;
    count += 1;
    queue.push(l);
    if (!frame) frame = requestAnimationFrame(flush);
  };

  const connect = async () => {
    if (signal.aborted || paused) return;
    controller = new AbortController();
    const stop = () => controller && controller.abort();
    signal.addEventListener('abort', stop, { once: true });
    const q = lastTs ? `follow=true&tail=1000&since=${encodeURIComponent(lastTs)}` : 'follow=true&tail=200';
    let opened = 0;
    try {
      await streamLines(`/v1/apps/${seg(app)}/logs?${q}`, {
        signal: controller.signal,
        onOpen: () => {
          opened = Date.now();
          status.textContent = `${count} lines, following`;
        },
        onLine: take,
      });
    } catch (e) {
      signal.removeEventListener('abort', stop);
      if (controller.signal.aborted) return;
      if (e instanceof ApiError && (e.status === 404 || e.status === 400 || e.status === 401)) {
        status.textContent = `Stopped: ${e.message}`;
        return;
      }
    }
    signal.removeEventListener('abort', stop);
    if (signal.aborted || paused) return;
    if (opened && Date.now() - opened > 60000) attempt = 0;
    const delay = Math.min(30000, 1000 * 2 ** attempt);
    attempt += 1;
    status.textContent = `${count} lines, stream ended; reconnecting in ${Math.round(delay / 1000)} s`;
    timer = setTimeout(connect, delay);
  };

  toggle.addEventListener('click', () => {
    paused = !paused;
    toggle.setAttribute('aria-pressed', String(paused));
    toggle.textContent = paused ? 'Resume' : 'Pause';
    if (paused) {
      clearTimeout(timer);
      if (controller) controller.abort();
      status.textContent = `${count} lines, paused`;
    } else {
      attempt = 0;
      connect();
    }
  });
  clear.addEventListener('click', () => {
    fill(pane);
    count = 0;
    status.textContent = paused ? '0 lines, paused' : '0 lines, following';
  });
  signal.addEventListener('abort', () => {
    clearTimeout(timer);
    if (frame) cancelAnimationFrame(frame);
  }, { once: true });

  connect();
  return h('div', null,
    h('div', { class: 'toolbar' }, toggle, clear, status),
    pane);
}
