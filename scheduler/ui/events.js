// The console's one reader of `GET /v1/events?follow=true` (NDJSON). EventSource cannot send
// an Authorization header, so this is fetch + ReadableStream. It reconnects with back-off
// (1 s doubling to 30 s, with jitter) and hands each new event to the listeners of the page
// on screen. Events are deduplicated by id: a follow starts with the newest `limit` past
// events, so after a reconnect only those newer than the last one seen are dispatched, and a
// synthetic `{type: "stream.resumed"}` tells pages to reload what they show (events missed
// while disconnected beyond that window cannot be replayed: the API has no "after id").

import { streamLines, ApiError } from './api.js';

const listeners = new Set();
let controller = null;
let timer = null;
let lastId = 0;
let attempt = 0;
let running = false;
let status = 'off';
let statusFn = () => {};
let resumed = false;
let generation = 0;

const MAX_DELAY_MS = 30000;

/** The stream's state: `off`, `connecting`, `live` or `retrying`. */
export function streamStatus() {
  return status;
}

function setStatus(s, detail) {
  status = s;
  statusFn(s, detail);
}

/**
 * Listens to events until `signal` aborts (pages pass their own signal, so a page's
 * listeners go when it is left). `fn(event)`.
 */
export function onEvent(fn, signal) {
  listeners.add(fn);
  if (signal) signal.addEventListener('abort', () => listeners.delete(fn), { once: true });
}

function dispatch(ev) {
  for (const fn of [...listeners]) {
    try {
      fn(ev);
    } catch (e) {
      console.error('an event listener failed', e);
    }
  }
}

/**
 * Starts following. `onStatus(state, detail)` reports the connection; `onAuthFailed(err)` is
 * called on 401 (the stream then stops).
 */
export async function startEvents(onStatus, onAuthFailed) {
  stopEvents();
  const mine = ++generation;
  running = true;
  statusFn = onStatus || (() => {});
  attempt = 0;
  resumed = false;
  lastId = 0;
  setStatus('connecting');
  // The newest id now: events up to it are history, not news for the pages.
  try {
    const newest = await readNewestId();
    if (!running || mine !== generation) return;
    lastId = newest;
  } catch (e) {
    if (!running || mine !== generation) return;
    if (e instanceof ApiError && e.status === 401) {
      running = false;
      setStatus('off');
      if (onAuthFailed) onAuthFailed(e);
      return;
    }
    // the stream below retries; history then comes through as news once, which is harmless
  }
  connect(onAuthFailed);
}

/** The id of the newest event the caller may see (0: none yet). */
async function readNewestId() {
  let id = 0;
  await streamLines('/v1/events?limit=1', {
    onLine: (ev) => {
      if (typeof ev.id === 'number' && ev.id > id) id = ev.id;
    },
  });
  return id;
}

/** Stops following (log out). */
export function stopEvents() {
  generation += 1;
  running = false;
  clearTimeout(timer);
  timer = null;
  if (controller) controller.abort();
  controller = null;
  setStatus('off');
}

async function connect(onAuthFailed) {
  if (!running) return;
  controller = new AbortController();
  const { signal } = controller;
  // First connection: the newest past event only (dropped by id). A reconnect: enough of the
  // past to replay what came meanwhile, as far as the window reaches.
  const limit = resumed ? 200 : 1;
  let openedAt = 0;
  setStatus(attempt ? 'retrying' : 'connecting');
  try {
    await streamLines(`/v1/events?follow=true&limit=${limit}`, {
      signal,
      onOpen: () => {
        openedAt = Date.now();
        setStatus('live');
        if (resumed) dispatch({ type: 'stream.resumed' });
        resumed = true;
      },
      onLine: (ev) => {
        if (typeof ev.id !== 'number' || ev.id <= lastId) return;
        lastId = ev.id;
        dispatch(ev);
      },
    });
  } catch (e) {
    if (signal.aborted || !running) return;
    if (e instanceof ApiError && e.status === 401) {
      running = false;
      setStatus('off');
      if (onAuthFailed) onAuthFailed(e);
      return;
    }
    console.warn('the event stream failed', e);
  }
  if (!running || signal.aborted) return;
  // A connection that stayed up a while starts the back-off over.
  if (openedAt && Date.now() - openedAt > 60000) attempt = 0;
  const delay = Math.min(MAX_DELAY_MS, 1000 * 2 ** attempt) * (0.75 + Math.random() * 0.5);
  attempt += 1;
  setStatus('retrying', Math.round(delay / 1000));
  timer = setTimeout(() => connect(onAuthFailed), delay);
}

/** The app an event is about (`null` for host events). */
export function eventApp(ev) {
  return ev.app || null;
}

/** Whether an event changes an app's instances or deployments. */
export function changesInstances(ev) {
  return /^(instance|deploy|deployment|autoscale|app)\./.test(ev.type) || ev.type === 'stream.resumed'
    || ev.type === 'config.changed' || ev.type === 'release.created';
}

/** A one-line description of an event for people. */
export function describe(ev) {
  const v = ev.version ? ` ${ev.version}` : '';
  switch (ev.type) {
    case 'deploy.started': return `deploying${v}`;
    case 'deploy.succeeded': return `deployed${v}`;
    case 'deploy.failed': return `deploy of${v} failed: ${ev.error || ''}`;
    case 'deployment.scaled': return `${ev.version} scaled ${ev.from} → ${ev.to}`;
    case 'deployment.removed': return `${ev.version} undeployed`;
    case 'instance.healthy': return `${ev.instance} healthy`;
    case 'instance.unhealthy': return `${ev.instance} unhealthy`;
    case 'instance.replaced': return `${ev.instance} replaced`;
    case 'instance.oom_killed': return `${ev.instance} killed for its memory limit on ${ev.host}`;
    case 'instance.killed': return `${ev.instance || 'an instance'} killed`;
    case 'instance.recycled': return `${ev.instance || 'an instance'} recycled`;
    case 'release.created': return `release #${ev.release}${v} by ${ev.created_by}`;
    case 'app.restarted': return `restarted (${ev.restarted} instances)`;
    case 'config.changed': return `config v${ev.config_version} by ${ev.by}`;
    case 'job.finished': return `job ${ev.job} ${ev.state}${ev.exit_code != null ? ` (exit ${ev.exit_code})` : ''}`;
    case 'workflow.finished': return `workflow ${ev.workflow} (${ev.name}) ${ev.state}`;
    case 'autoscale.changed':
      return ev.error ? `autoscale${v} failed: ${ev.error}` : `autoscale${v} ${ev.from} → ${ev.to}: ${ev.reason || ''}`;
    case 'host.down': return `host ${ev.host} down: ${ev.error || ''}`;
    case 'host.up': return `host ${ev.host} up`;
    default: return ev.type;
  }
}
