// #/schedules: the schedules of every app the token sees (the API keeps them per app), with
// their next due time and last run.
//
// API: GET /v1/apps; GET /v1/apps/{app}/schedules per app. Events: job.finished with a
// `schedule` reloads that app's schedules.

import { json, seg } from '../api.js';
import { onEvent } from '../events.js';
import {
  h, fill, table, badge, stateKind, time, pageTitle, errorLine, debounce, eachLimited, isAppId,
} from '../dom.js';

/** Renders the schedules page. */
export async function render(ctx) {
  const { root, signal } = ctx;
  const body = h('div', { 'aria-busy': 'true' }, 'Loading…');
  root.append(pageTitle('Schedules'), body);
  const byApp = new Map();
  const errors = new Map();

  const draw = () => {
    body.removeAttribute('aria-busy');
    const rows = [];
    for (const app of [...byApp.keys()].sort()) {
      for (const s of byApp.get(app)) rows.push(row(app, s));
    }
    const errs = [...errors.entries()].map(([app, e]) => errorLine({ ...e, message: `${app}: ${e.message}` }, `schedules-error-${app}`));
    fill(body, errs, rows.length
      ? table({ text: 'Schedules of every app', hidden: true },
        ['App', 'Schedule', 'Cron (UTC)', 'Command', 'Concurrency', 'Next run', 'Last run'], rows,
        { 'data-testid': 'schedules-table' })
      : h('p', { class: 'muted', 'data-testid': 'schedules-empty' }, 'No schedules.'));
  };

  const loadApp = async (app) => {
    try {
      byApp.set(app, await json(`/v1/apps/${seg(app)}/schedules`, { signal }));
      errors.delete(app);
    } catch (e) {
      if (signal.aborted) return;
      if (e.status === 404) byApp.delete(app);
      else errors.set(app, e);
    }
  };

  const loadAll = async () => {
    let apps;
    try {
      apps = await json('/v1/apps', { signal });
    } catch (e) {
      if (!signal.aborted) fill(body, errorLine(e, 'schedules-error'));
      return;
    }
    byApp.clear();
    errors.clear();
    await eachLimited(apps.map((a) => a.id).filter(isAppId), 4, loadApp);
    if (!signal.aborted) draw();
  };

  const pending = new Set();
  const flush = debounce(async () => {
    const apps = [...pending];
    pending.clear();
    await eachLimited(apps, 4, loadApp);
    if (!signal.aborted) draw();
  }, 300, signal);
  const allSoon = debounce(loadAll, 300, signal);
  onEvent((ev) => {
    if (ev.type === 'stream.resumed') allSoon();
    else if (ev.type === 'job.finished' && ev.schedule && isAppId(ev.app)) {
      pending.add(ev.app);
      flush();
    }
  }, signal);
  await loadAll();
}

function row(app, s) {
  const last = s.last_runs && s.last_runs[0];
  const cmd = s.job && Array.isArray(s.job.command) ? s.job.command.join(' ') : '';
  return h('tr', { 'data-testid': `schedule-row-${app}-${s.name}` },
    h('td', null, h('a', { href: `#/apps/${seg(app)}` }, app)),
    h('th', { scope: 'row' }, s.name),
    h('td', null, h('code', null, s.cron)),
    h('td', { class: 'wrap' }, h('code', null, `${s.job ? s.job.version : ''} ${cmd}`)),
    h('td', null, s.concurrency),
    h('td', null, time(s.next_run_at)),
    h('td', null, last
      ? [h('a', { href: `#/jobs/${seg(app)}/${seg(last.id)}` }, last.id), ' ',
        badge(last.state, stateKind(last.state)), ' ', time(last.finished_at || last.created_at)]
      : h('span', { class: 'muted' }, 'never')));
}
