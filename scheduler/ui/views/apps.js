// #/apps: every app the token sees, with its instances' state and health, kept current from
// the events stream (an app's instances are read again when one of its events arrives), and
// the recent events.
//
// API: GET /v1/apps; GET /v1/apps/{app}/instances per app; GET /v1/events?limit=20.

import { json, streamLines, seg } from '../api.js';
import { onEvent, changesInstances, describe } from '../events.js';
import {
  h, fill, table, section, badge, stateKind, time, pageTitle, errorLine, debounce, eachLimited,
  isAppId, announce,
} from '../dom.js';

const CHIPS_SHOWN = 24;

/** Renders the apps page into `ctx.root`. */
export async function render(ctx) {
  const { root, signal, role } = ctx;
  const body = h('div', { 'aria-busy': 'true' }, h('p', null, 'Loading apps…'));
  const feed = h('ol', {
    class: 'feed', 'data-testid': 'events-feed', 'aria-live': 'polite', 'aria-relevant': 'additions',
  });
  root.append(
    pageTitle('Apps'),
    h('div', { class: 'grid' },
      section('apps-list', role === 'operator' ? 'All apps' : 'Your apps', body),
      section('activity', 'Recent events', feed)),
  );

  const rows = new Map();
  let apps = [];

  const loadInstances = async (app) => {
    const row = rows.get(app);
    if (!row) return;
    try {
      const list = await json(`/v1/apps/${seg(app)}/instances`, { signal });
      updateRow(row, list);
    } catch (e) {
      if (signal.aborted) return;
      fill(row.cells.health, errorLine(e, `app-error-${app}`));
    }
  };

  const loadAll = async () => {
    try {
      apps = await json('/v1/apps', { signal });
    } catch (e) {
      if (signal.aborted) return;
      body.removeAttribute('aria-busy');
      fill(body, errorLine(e, 'apps-error'));
      return;
    }
    rows.clear();
    apps.sort((a, b) => a.id.localeCompare(b.id));
    body.removeAttribute('aria-busy');
    if (!apps.length) {
      fill(body, h('p', { 'data-testid': 'apps-empty' },
        'No apps yet. Create one with ', h('code', null, 'caas apps create NAME'), '.'));
      return;
    }
    const headers = ['App', 'Domain', 'Instances', 'Health', 'Versions'];
    if (role === 'operator') headers.splice(2, 0, 'Tenant');
    fill(body, table({ text: 'Apps with their instances', hidden: true }, headers,
      apps.map((a) => {
        const row = appRow(a, role);
        rows.set(a.id, row);
        return row.tr;
      }), { 'data-testid': 'apps-table' }));
    await eachLimited(apps.map((a) => a.id), 4, loadInstances);
  };

  const reloads = new Map();
  const reloadApp = (app) => {
    if (!reloads.has(app)) reloads.set(app, debounce(() => loadInstances(app), 300, signal));
    reloads.get(app)();
  };
  const reloadAll = debounce(loadAll, 300, signal);

  onEvent((ev) => {
    if (ev.type === 'stream.resumed') {
      reloadAll();
      return;
    }
    if (ev.app) addEvent(feed, ev, true);
    if (!changesInstances(ev) || !ev.app) return;
    // An app not listed yet (created since): read the list again.
    if (rows.has(ev.app)) reloadApp(ev.app);
    else reloadAll();
  }, signal);

  loadFeed(feed, signal);
  await loadAll();
}

function appRow(a, role) {
  const id = a.id;
  const cells = {
    instances: h('td', null, '…'),
    health: h('td', null, '…'),
    versions: h('td', null, '…'),
  };
  const link = isAppId(id)
    ? h('a', { href: `#/apps/${seg(id)}`, 'data-testid': `app-link-${id}` }, id)
    : id;
  const tr = h('tr', { 'data-testid': `app-row-${id}` },
    h('th', { scope: 'row' }, link),
    h('td', { class: 'wrap' }, a.domain || '—',
      a.domains && a.domains.length ? h('span', { class: 'muted' }, ` +${a.domains.length}`) : null),
    role === 'operator' ? h('td', null, a.tenant || h('span', { class: 'muted' }, 'operator')) : null,
    cells.instances, cells.health, cells.versions);
  return { tr, cells };
}

function updateRow(row, list) {
  const running = list.filter((i) => i.state === 'running').length;
  const healthy = list.filter((i) => i.healthy).length;
  row.tr.dataset.instances = String(list.length);
  row.tr.dataset.running = String(running);
  row.tr.dataset.healthy = String(healthy);
  fill(row.cells.instances, `${running} running of ${list.length}`);
  const chips = list.slice(0, CHIPS_SHOWN).map((i) => h('li', {
    class: `chip ${i.healthy ? 'ok' : stateKind(i.state) || 'bad'}`,
    'data-testid': `app-instance-${i.id}`,
    'data-state': i.state,
    'data-health': i.healthy ? 'healthy' : 'unhealthy',
    title: `${i.id} on ${i.host}: ${i.state}, ${i.healthy ? 'healthy' : 'unhealthy'}`,
  }, h('span', { class: 'sr-only' }, `${i.id} ${i.state} ${i.healthy ? 'healthy' : 'unhealthy'}`)));
  const more = list.length > CHIPS_SHOWN ? h('span', { class: 'muted' }, ` +${list.length - CHIPS_SHOWN}`) : null;
  const summary = !list.length ? badge('none', '')
    : healthy === list.length ? badge(`${healthy} healthy`, 'ok')
      : badge(`${list.length - healthy} unhealthy`, 'bad');
  fill(row.cells.health, summary, list.length ? h('ul', { class: 'chips', 'aria-label': 'Instances' }, chips) : null, more);
  const versions = [...new Set(list.map((i) => i.version))].sort();
  fill(row.cells.versions, versions.length ? versions.join(', ') : '—');
}

const FEED_MAX = 30;

function addEvent(feed, ev, live) {
  const app = ev.app && isAppId(ev.app)
    ? h('a', { href: `#/apps/${seg(ev.app)}` }, ev.app) : (ev.app || 'platform');
  const li = h('li', { 'data-testid': `event-${ev.id}`, 'data-type': ev.type, class: kindOf(ev) },
    time(ev.ts), ' ', h('strong', null, app), ' ', describe(ev));
  const empty = feed.querySelector('li.empty');
  if (empty) empty.remove();
  if (live) feed.prepend(li);
  else feed.append(li);
  while (feed.children.length > FEED_MAX) feed.lastElementChild.remove();
  if (live && /failed|unhealthy|oom|down/.test(ev.type)) announce(`${ev.app || ''} ${describe(ev)}`);
}

function kindOf(ev) {
  if (/failed|unhealthy|oom_killed|down/.test(ev.type) || ev.error) return 'ev bad';
  if (/succeeded|healthy|up$/.test(ev.type)) return 'ev ok';
  return 'ev';
}

async function loadFeed(feed, signal) {
  const past = [];
  try {
    await streamLines('/v1/events?limit=20', { signal, onLine: (ev) => past.push(ev) });
  } catch (e) {
    if (!signal.aborted) feed.replaceWith(errorLine(e, 'events-feed-error'));
    return;
  }
  // Newest first, as the page answers; live ones arriving meanwhile are already on top.
  const shown = new Set([...feed.children].map((li) => li.dataset.testid));
  for (const ev of past) if (!shown.has(`event-${ev.id}`)) addEvent(feed, ev, false);
  if (!feed.children.length) feed.append(h('li', { class: 'empty muted' }, 'No events yet.'));
}
