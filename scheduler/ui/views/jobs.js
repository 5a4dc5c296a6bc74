// #/jobs, #/jobs/{app}, #/jobs/{app}/{id}: an app's jobs (one-off runs and schedule runs)
// and one job's output. Jobs are per app in the API, so the page starts with a choice of app.
//
// API: GET /v1/apps; GET /v1/apps/{app}/jobs?limit=50[&before=ID];
// GET /v1/apps/{app}/jobs/{id}; GET /v1/apps/{app}/jobs/{id}/logs[?follow=true] (text/plain).
// Events: job.finished of the app reloads the list or the job (there is no job.started event,
// so a job started elsewhere shows up on the next event or with Refresh).

import { json, streamText, seg } from '../api.js';
import { onEvent } from '../events.js';
import {
  h, fill, table, section, badge, stateKind, time, pageTitle, errorLine, debounce, isAppId,
} from '../dom.js';

const PAGE = 50;
const OUTPUT_MAX = 1 << 20;

/** Renders the jobs pages. */
export async function render(ctx) {
  const { root, signal } = ctx;
  const [app, id] = ctx.params;
  if (app !== undefined && !isAppId(app)) {
    root.append(pageTitle('Not found'), h('p', null, `"${app}" is not an app id.`));
    return;
  }
  if (id !== undefined) {
    await renderJob(root, app, id, signal);
    return;
  }
  root.append(pageTitle('Jobs'));
  const picker = h('div', { class: 'toolbar' }, 'Loading apps…');
  const list = h('div');
  root.append(picker, app ? section('jobs-sec', `Jobs of ${app}`, list) : list);

  let apps;
  try {
    apps = await json('/v1/apps', { signal });
  } catch (e) {
    if (!signal.aborted) fill(picker, errorLine(e, 'jobs-error'));
    return;
  }
  apps.sort((a, b) => a.id.localeCompare(b.id));
  const select = h('select', { id: 'jobs-app', 'data-testid': 'jobs-app-select' },
    h('option', { value: '' }, 'Choose an app'),
    apps.map((a) => h('option', { value: a.id, selected: a.id === app }, a.id)));
  select.addEventListener('change', () => {
    if (isAppId(select.value)) location.hash = `#/jobs/${seg(select.value)}`;
  });
  fill(picker, h('label', { for: 'jobs-app' }, 'App'), select);
  if (!app) {
    if (apps.length === 1) {
      location.replace(`#/jobs/${seg(apps[0].id)}`);
      return;
    }
    fill(list, h('p', { class: 'muted' }, apps.length ? 'Choose an app to see its jobs.' : 'No apps yet.'));
    return;
  }

  let jobs = [];
  let done = false;
  const load = async (more) => {
    try {
      const before = more && jobs.length ? `&before=${seg(jobs[jobs.length - 1].id)}` : '';
      const page = await json(`/v1/apps/${seg(app)}/jobs?limit=${PAGE}${before}`, { signal });
      jobs = more ? jobs.concat(page) : page;
      done = page.length < PAGE;
      renderList(list, app, jobs, done, () => load(true), () => load(false));
    } catch (e) {
      if (!signal.aborted) fill(list, errorLine(e, 'jobs-error'));
    }
  };
  const soon = debounce(() => load(false), 300, signal);
  onEvent((ev) => {
    if (ev.type === 'stream.resumed' || (ev.type === 'job.finished' && ev.app === app)) soon();
  }, signal);
  await load(false);
}

function renderList(el, app, jobs, done, more, refresh) {
  const rows = jobs.map((j) => h('tr', { 'data-testid': `job-row-${j.id}`, 'data-state': j.state },
    h('th', { scope: 'row' }, h('a', { href: `#/jobs/${seg(app)}/${seg(j.id)}` }, j.id)),
    h('td', null, j.version),
    h('td', null, badge(j.state, stateKind(j.state))),
    h('td', null, j.exit_code ?? '—'),
    h('td', null, j.host || '—'),
    h('td', null, j.schedule || '—'),
    h('td', null, time(j.created_at)),
    h('td', null, time(j.finished_at))));
  fill(el,
    h('div', { class: 'toolbar' }, h('button', { type: 'button', 'data-testid': 'jobs-refresh', onclick: refresh }, 'Refresh')),
    jobs.length
      ? table({ text: `Jobs of ${app}, newest first`, hidden: true },
        ['Job', 'Version', 'State', 'Exit', 'Host', 'Schedule', 'Created', 'Finished'], rows,
        { 'data-testid': 'jobs-table' })
      : h('p', { class: 'muted', 'data-testid': 'jobs-empty' }, 'No jobs.'),
    done ? null : h('button', { type: 'button', 'data-testid': 'jobs-more', onclick: more }, 'Older jobs'));
}

/**
 * Streams a text/plain output into `pre` (following while `follow`); the pane keeps the last
 * OUTPUT_MAX characters. Resolves when the answer ends.
 */
export async function streamOutput(path, pre, follow, signal) {
  let text = '';
  fill(pre);
  await streamText(`${path}${follow ? '?follow=true' : ''}`, {
    signal,
    accept: 'text/plain',
    onText: (s) => {
      const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
      text += s;
      if (text.length > OUTPUT_MAX) {
        text = text.slice(text.length - OUTPUT_MAX);
        pre.textContent = text;
      } else {
        pre.append(s);
      }
      if (atBottom) pre.scrollTop = pre.scrollHeight;
    },
  });
  if (!text) pre.textContent = '(no output)';
}

/**
 * Follows a job's or workflow's output at `path` into `pre` while it is live, `status` saying
 * so. When a follow ends, `reload` reads the object again for its final state; if it still runs
 * (another scheduler served a stored copy), after a pause that grows each time. `busy()` is true
 * while a follow runs.
 */
export function outputFollower(path, pre, status, what, reload, signal) {
  let following = false;
  let retries = 0;
  return {
    busy: () => following,
    async follow(live) {
      if (following) return;
      following = live;
      status.textContent = live ? 'Following the output…' : '';
      try {
        await streamOutput(path, pre, live, signal);
        if (live) status.textContent = `The ${what} ended.`;
      } catch (e) {
        if (!signal.aborted) status.textContent = `Could not read the output: ${e.message}`;
      }
      following = false;
      if (live && !signal.aborted) {
        const delay = Math.min(10000, 500 * 2 ** retries);
        retries += 1;
        setTimeout(() => {
          if (!signal.aborted) reload();
        }, delay);
      }
    },
  };
}

async function renderJob(root, app, id, signal) {
  const base = `/v1/apps/${seg(app)}/jobs/${seg(id)}`;
  const facts = h('div', { 'data-testid': 'job-detail' }, 'Loading…');
  const pre = h('pre', {
    class: 'output', tabindex: '0', 'aria-label': `Output of job ${id}`, 'data-testid': 'job-output',
  });
  const status = h('p', { class: 'muted', 'aria-live': 'polite' });
  root.append(
    h('p', { class: 'crumbs' }, h('a', { href: '#/jobs' }, 'Jobs'), ' / ',
      h('a', { href: `#/jobs/${seg(app)}` }, app), ' / '),
    pageTitle(`Job ${id}`),
    section('job-sec', 'Job', facts),
    section('output-sec', 'Output (stdout and stderr)', status, pre),
  );
  const load = async () => {
    let job;
    try {
      job = await json(base, { signal });
    } catch (e) {
      if (!signal.aborted) fill(facts, errorLine(e, 'job-error'));
      return;
    }
    fill(facts, h('dl', { class: 'facts', 'data-state': job.state },
      h('dt', null, 'State'), h('dd', null, badge(job.state, stateKind(job.state))),
      h('dt', null, 'Exit code'), h('dd', null, job.exit_code ?? '—'),
      job.reason ? [h('dt', null, 'Reason'), h('dd', null, job.reason)] : null,
      h('dt', null, 'Version'), h('dd', null, job.version),
      h('dt', null, 'Host'), h('dd', null, job.host || '—'),
      job.schedule ? [h('dt', null, 'Schedule'), h('dd', null, job.schedule)] : null,
      h('dt', null, 'Created'), h('dd', null, time(job.created_at)),
      h('dt', null, 'Started'), h('dd', null, time(job.started_at)),
      h('dt', null, 'Finished'), h('dd', null, time(job.finished_at))));
    await output.follow(job.state === 'running' || job.state === 'pending');
  };
  const output = outputFollower(`${base}/logs`, pre, status, 'job', load, signal);
  onEvent((ev) => {
    if (ev.type === 'job.finished' && ev.app === app && ev.job === id && !output.busy()) load();
  }, signal);
  await load();
}
