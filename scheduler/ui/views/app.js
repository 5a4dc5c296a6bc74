// #/apps/{app}: one app. Deployments with their instances (live state and health) and a
// scale form each; the traffic graph; releases with roll back; config (vars, and secret
// names only: their values are never asked for); live logs.
//
// API: GET /v1/apps/{app} (deployments with instance_list);
// PUT /v1/apps/{app}/deployments/{version} {"instances": N} (progress stream);
// GET /v1/apps/{app}/releases?limit=20[&before=N];
// POST /v1/apps/{app}/rollback {"release": N} (progress stream);
// GET /v1/apps/{app}/config; GET /v1/apps/{app}/logs?follow=true (views/logs.js);
// GET /v1/apps/{app}/traffic (views/traffic.js). Events: the app's events reload the part
// they change.

import { json, progress, seg } from '../api.js';
import { onEvent } from '../events.js';
import {
  h, fill, table, section, badge, stateKind, time, mib, num, shortDigest, pageTitle, errorLine,
  debounce, isAppId, announce, showError,
} from '../dom.js';
import { logsPanel } from './logs.js';
import { trafficPanel } from './traffic.js';

const RELEASES_PAGE = 20;

/** Renders the app page for `ctx.params[0]`. */
export async function render(ctx) {
  const { root } = ctx;
  const app = ctx.params[0];
  // The page's own signal: aborted with the page, or when the app turns out not to exist.
  const local = new AbortController();
  const { signal } = local;
  ctx.signal.addEventListener('abort', () => local.abort(), { once: true });
  if (!isAppId(app)) {
    root.append(pageTitle('Not found'), h('p', null, `"${app}" is not an app id.`));
    return;
  }
  const base = `/v1/apps/${seg(app)}`;
  const overview = h('div', { class: 'overview' });
  const deployments = h('div', { 'data-testid': 'deployments', 'aria-busy': 'true' }, 'Loading…');
  const releases = h('div', { 'aria-busy': 'true' }, 'Loading…');
  const config = h('div', { 'aria-busy': 'true' }, 'Loading…');
  const traffic = trafficPanel(app, signal);

  const parts = [
    ['deployments-sec', 'Deployments', deployments],
    ['traffic-sec', 'Traffic', traffic.el],
    ['config-sec', 'Config', config],
    ['releases-sec', 'Releases', releases],
    ['logs-sec', 'Logs', logsPanel(app, signal)],
  ];
  // In-page links are buttons: the hash is the router's.
  const jump = h('nav', { class: 'jump', 'aria-label': 'Sections of this page' },
    h('ul', null, parts.map(([id, title]) => h('li', null, h('button', {
      type: 'button', class: 'link',
      onclick: () => {
        const heading = document.getElementById(`${id}-h`);
        if (!heading) return;
        heading.setAttribute('tabindex', '-1');
        heading.scrollIntoView({ block: 'start' });
        heading.focus({ preventScroll: true });
      },
    }, title)))));

  const content = h('div', null,
    overview,
    jump,
    h('div', { class: 'grid app-grid' }, parts.map(([id, title, el]) => section(id, title, el))));
  root.append(
    h('p', { class: 'crumbs' }, h('a', { href: '#/apps' }, 'Apps'), ' / '),
    pageTitle(app),
    content,
  );

  const cards = new Map();
  const loadApp = async () => {
    try {
      const a = await json(base, { signal });
      renderOverview(overview, a);
      renderDeployments(deployments, app, a.deployments || [], signal, loadApp, cards);
    } catch (e) {
      if (signal.aborted) return;
      if (e.status === 404) {
        // Deleted, or never visible to this token: stop the streams and say so once.
        local.abort();
        fill(content, h('p', { class: 'error', role: 'alert', 'data-testid': 'app-missing' },
          `No app ${app}: it does not exist, or this token cannot see it. `,
          h('a', { href: '#/apps' }, 'Back to the apps')));
        return;
      }
      deployments.removeAttribute('aria-busy');
      fill(deployments, errorLine(e, 'deployments-error'));
    }
  };

  const releasesState = { rows: [], before: null, done: false };
  const loadReleases = async (more) => {
    try {
      const q = more && releasesState.before ? `&before=${releasesState.before}` : '';
      const page = await json(`${base}/releases?limit=${RELEASES_PAGE}${q}`, { signal });
      releasesState.rows = more ? releasesState.rows.concat(page) : page;
      releasesState.before = page.length ? page[page.length - 1].number : releasesState.before;
      releasesState.done = page.length < RELEASES_PAGE;
      renderReleases(releases, app, releasesState, signal, {
        more: () => loadReleases(true),
        changed: () => {
          loadApp();
          loadReleases(false);
        },
      });
    } catch (e) {
      if (signal.aborted) return;
      releases.removeAttribute('aria-busy');
      fill(releases, errorLine(e, 'releases-error'));
    }
  };

  const loadConfig = async () => {
    try {
      renderConfig(config, await json(`${base}/config`, { signal }));
    } catch (e) {
      if (signal.aborted) return;
      config.removeAttribute('aria-busy');
      fill(config, errorLine(e, 'config-error'));
    }
  };

  const appSoon = debounce(loadApp, 300, signal);
  const releasesSoon = debounce(() => loadReleases(false), 300, signal);
  const configSoon = debounce(loadConfig, 300, signal);
  const trafficSoon = debounce(traffic.reload, 3000, signal);
  onEvent((ev) => {
    if (ev.type === 'stream.resumed') {
      appSoon();
      releasesSoon();
      configSoon();
      trafficSoon();
      return;
    }
    if (ev.app !== app) return;
    if (/^(instance|deploy|deployment|autoscale|app)\./.test(ev.type)) appSoon();
    if (ev.type === 'release.created') releasesSoon();
    if (ev.type === 'config.changed') {
      configSoon();
      appSoon();
    }
    trafficSoon();
  }, signal);

  await Promise.all([loadApp(), loadReleases(false), loadConfig()]);
}

function renderOverview(el, a) {
  const domains = a.domains && a.domains.length ? a.domains.join(', ') : 'none';
  fill(el, h('dl', { class: 'facts' },
    h('dt', null, 'Domain'), h('dd', null, a.domain || '—'),
    h('dt', null, 'Custom domains'), h('dd', null, domains),
    a.tenant ? [h('dt', null, 'Tenant'), h('dd', null, a.tenant)] : null,
    h('dt', null, 'Auto-deploy'), h('dd', null, a.auto_deploy ? 'on' : 'off')));
}

function renderDeployments(el, app, list, signal, reload, cards) {
  el.removeAttribute('aria-busy');
  if (!list.length) {
    cards.clear();
    fill(el, h('p', { class: 'muted', 'data-testid': 'deployments-empty' }, 'Nothing is deployed.'));
    return;
  }
  list.sort((a, b) => String(a.version).localeCompare(String(b.version)));
  // Cards are kept by version and updated in place, so a live update never takes the focus
  // or a half-typed count away from the scale form.
  const seen = new Set();
  for (const d of list) {
    let card = cards.get(d.version);
    if (!card) {
      card = deploymentCard(app, d.version, signal, reload);
      cards.set(d.version, card);
    }
    card.update(d);
    seen.add(d.version);
  }
  for (const v of [...cards.keys()]) if (!seen.has(v)) cards.delete(v);
  const want = list.map((d) => cards.get(d.version).el);
  const have = [...el.children];
  if (want.length !== have.length || want.some((c, i) => c !== have[i])) fill(el, want);
}

function deploymentCard(app, v, signal, reload) {
  let bounds = null;
  const inputId = `scale-${v}`;
  const input = h('input', {
    id: inputId, type: 'number', inputmode: 'numeric', min: 0, max: 1000, step: 1, required: true,
    'data-testid': `scale-input-${v}`,
  });
  input.addEventListener('input', () => {
    input.dataset.dirty = 'true';
  });
  const button = h('button', { type: 'submit', 'data-testid': `scale-button-${v}` }, 'Scale');
  const out = h('pre', { class: 'progress', 'aria-live': 'polite', 'data-testid': `scale-progress-${v}`, hidden: true });
  const form = h('form', { class: 'inline-form', 'aria-label': `Scale ${v}` },
    h('label', { for: inputId }, `Instances of ${v}`), input, button);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const n = Number(input.value);
    const [lo, hi] = bounds ? [bounds.min, bounds.max] : [0, 1000];
    if (input.value === '' || !Number.isInteger(n) || n < lo || n > hi) {
      showError(`Instances of ${v}: a whole number from ${lo} to ${hi}.`);
      input.focus();
      return;
    }
    button.disabled = true;
    out.hidden = false;
    fill(out);
    showError(null);
    try {
      await progress('PUT', `/v1/apps/${seg(app)}/deployments/${seg(v)}`, { instances: n }, {
        signal,
        onProgress: (line) => appendProgress(out, line),
      });
      delete input.dataset.dirty;
      announce(`${app} ${v} scaled to ${n}.`);
      reload();
    } catch (e) {
      if (signal.aborted) return;
      showError(e);
      out.append(`failed: ${e.message}\n`);
    } finally {
      button.disabled = false;
    }
  });

  const heading = h('h3');
  const facts = h('p', { class: 'muted wrap' });
  const instances = h('div');
  const el = h('article', { class: 'deployment', 'data-testid': `deployment-${v}`, 'aria-label': `Deployment ${v}` },
    heading, facts, form, out, instances);

  const update = (d) => {
    const insts = d.instance_list || [];
    const healthy = insts.filter((i) => i.healthy).length;
    const a = d.autoscale;
    bounds = a ? { min: a.min, max: a.max } : null;
    input.min = String(bounds ? bounds.min : 0);
    input.max = String(bounds ? bounds.max : 1000);
    if (document.activeElement !== input && !input.dataset.dirty) input.value = String(d.instances);
    el.dataset.instances = String(d.instances);
    fill(heading, v, ' ', badge(`${healthy}/${insts.length} healthy`, healthy === insts.length ? 'ok' : 'bad'));
    fill(facts, h('code', null, shortImage(d.image)), ' · ', [
      `${d.instances} instance${d.instances === 1 ? '' : 's'}`,
      `${mib(d.memory_mb)}, ${num(d.cpus, 3)} CPU each`,
      d.port === null ? 'worker' : `port ${d.port}`,
      a ? `autoscale ${a.min}–${a.max}, ${a.target_concurrency} per instance, wants ${d.desired ?? '?'}` : null,
    ].filter(Boolean).join(' · '));
    const rows = insts.map((i) => h('tr', {
      'data-testid': `instance-row-${i.id}`, 'data-state': i.state, 'data-health': i.healthy ? 'healthy' : 'unhealthy',
    },
    h('th', { scope: 'row' }, h('code', null, i.id)),
    h('td', null, i.host),
    h('td', null, i.address || h('span', { class: 'muted' }, 'none')),
    h('td', null, badge(i.state, stateKind(i.state))),
    h('td', null, badge(i.healthy ? 'healthy' : 'unhealthy', i.healthy ? 'ok' : 'bad'))));
    fill(instances, insts.length
      ? table({ text: `Instances of ${v}`, hidden: true }, ['Instance', 'Host', 'Address', 'State', 'Health'], rows)
      : h('p', { class: 'muted' }, a && a.min === 0 ? 'No instance: asleep until a request comes.' : 'No instance.'));
  };
  return { el, update };
}

function shortImage(image) {
  if (!image) return '—';
  const at = image.indexOf('@');
  return at >= 0 ? `${image.slice(0, at)}@${shortDigest(image.slice(at + 1))}` : image;
}

function appendProgress(out, line) {
  let text;
  if (line.event === 'progress') text = `${line.stage || ''}${line.instance ? ` ${line.instance}` : ''}: ${line.message || ''}`;
  else if (line.event === 'done') text = 'done';
  else if (line.event === 'failed') text = `failed: ${(line.error && line.error.message) || ''}`;
  else text = JSON.stringify(line);
  out.append(`${text}\n`);
  out.scrollTop = out.scrollHeight;
}

function renderReleases(el, app, state, signal, on) {
  el.removeAttribute('aria-busy');
  if (!state.rows.length) {
    fill(el, h('p', { class: 'muted', 'data-testid': 'releases-empty' }, 'No release yet.'));
    return;
  }
  const out = h('pre', { class: 'progress', 'aria-live': 'polite', 'data-testid': 'rollback-progress', hidden: true });
  const rows = state.rows.map((r) => {
    const action = h('td', { class: 'actions' });
    const offer = () => {
      if (r.active) {
        fill(action, badge('active', 'ok'));
        return;
      }
      fill(action, h('button', {
        type: 'button', 'data-testid': `rollback-${r.number}`,
        'aria-label': `Roll back to release ${r.number} (${r.version})`,
        onclick: () => confirmStep(),
      }, 'Roll back'));
    };
    const confirmStep = () => {
      const yes = h('button', {
        type: 'button', class: 'danger', 'data-testid': `rollback-confirm-${r.number}`,
        'aria-label': `Confirm roll back to release ${r.number} (${r.version})`,
        onclick: () => rollback(yes),
      }, `Roll back to #${r.number}`);
      const no = h('button', {
        type: 'button', 'data-testid': `rollback-cancel-${r.number}`, onclick: () => {
          offer();
          const b = action.querySelector('button');
          if (b) b.focus();
        },
      }, 'Cancel');
      fill(action, h('span', { class: 'confirm' }, yes, no));
      yes.focus();
    };
    const rollback = async (yes) => {
      for (const b of el.querySelectorAll('button')) b.disabled = true;
      out.hidden = false;
      fill(out);
      showError(null);
      try {
        await progress('POST', `/v1/apps/${seg(app)}/rollback`, { release: r.number }, {
          signal,
          onProgress: (line) => appendProgress(out, line),
        });
        announce(`${app} rolled back to release ${r.number} (${r.version}).`);
        on.changed();
      } catch (e) {
        if (signal.aborted) return;
        showError(e);
        out.append(`failed: ${e.message}\n`);
        for (const b of el.querySelectorAll('button')) b.disabled = false;
        yes.focus();
      }
    };
    offer();
    return h('tr', { 'data-testid': `release-${r.number}`, 'data-active': String(!!r.active) },
      h('th', { scope: 'row' }, `#${r.number}`),
      h('td', null, r.version),
      h('td', null, h('code', { title: r.digest }, shortDigest(r.digest))),
      h('td', null, `v${r.config_version}`),
      h('td', null, time(r.created_at)),
      h('td', null, r.created_by),
      action);
  });
  const more = state.done ? null : h('button', {
    type: 'button', 'data-testid': 'releases-more', onclick: on.more,
  }, 'Older releases');
  fill(el,
    table({ text: `Releases of ${app}, newest first`, hidden: true },
      ['Release', 'Version', 'Digest', 'Config', 'Created', 'By', 'Action'], rows,
      { 'data-testid': 'releases-list' }),
    more, out);
}

function renderConfig(el, c) {
  el.removeAttribute('aria-busy');
  const vars = Object.entries(c.vars || {}).sort(([a], [b]) => a.localeCompare(b));
  const secrets = (c.secrets || []).slice().sort();
  fill(el,
    h('p', { 'data-testid': 'config-version' }, `Version ${c.version}`),
    h('h3', null, 'Variables'),
    vars.length
      ? table({ text: 'Config variables', hidden: true }, ['Name', 'Value'],
        vars.map(([k, v]) => h('tr', null, h('th', { scope: 'row' }, h('code', null, k)), h('td', { class: 'wrap' }, h('code', null, v)))),
        { 'data-testid': 'config-vars' })
      : h('p', { class: 'muted', 'data-testid': 'config-vars' }, 'None.'),
    h('h3', null, 'Secrets'),
    h('p', { class: 'hint' }, 'Names only: secret values are write-only and never shown.'),
    secrets.length
      ? h('ul', { class: 'names', 'data-testid': 'config-secrets' },
        secrets.map((s) => h('li', { 'data-testid': `secret-${s}` }, h('code', null, s))))
      : h('p', { class: 'muted', 'data-testid': 'config-secrets' }, 'None.'));
}
