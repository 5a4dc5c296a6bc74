// caas console: the entry module. Token login, the operator/tenant check, hash routing and
// the one events stream. Plain ES modules, no build step; served from /ui/ by the scheduler.
//
// data-testid hooks (stable; for browser tests; the same list is in README.md):
//   shell:      login-form, login-token, login-submit, login-error, logout, role (data-role =
//               operator|tenant), events-status (data-state = off|connecting|live|retrying),
//               nav-apps, nav-jobs, nav-workflows, nav-schedules, nav-hosts (operator only),
//               alert (errors), notice (polite status line), page-title (each page's h1)
//   #/apps:     apps-table, apps-empty, app-row-{app} (data-instances, data-running,
//               data-healthy), app-link-{app}, app-instance-{instance} (data-state,
//               data-health), events-feed, event-{id} (data-type)
//   #/apps/x:   app-missing, deployments, deployments-empty, deployment-{version}
//               (data-instances), instance-row-{instance} (data-state, data-health =
//               healthy|unhealthy), scale-input-{version}, scale-button-{version},
//               scale-progress-{version}
//     releases: releases-list, releases-empty, release-{n} (data-active), rollback-{n} (asks),
//               rollback-confirm-{n} (rolls back), rollback-cancel-{n}, rollback-progress,
//               releases-more
//     config:   config-version, config-vars, config-secrets, secret-{name}
//     logs:     logs-pane, log-line (data-stream), logs-toggle, logs-clear, logs-status
//     traffic:  traffic-graph (data-points), traffic-empty, traffic-refresh, traffic-error
//   #/jobs:     jobs-app-select, jobs-table, jobs-empty, job-row-{id} (data-state), jobs-more,
//               jobs-refresh, job-detail, job-output
//   #/workflows: workflows-table, workflows-empty, workflow-row-{id} (data-state),
//               workflows-more, workflows-refresh, workflow-detail, workflow-steps,
//               workflow-step-{i} (data-state), step-logs-button-{i}, step-logs-{i},
//               workflow-output
//   #/schedules: schedules-table, schedules-empty, schedule-row-{app}-{name}
//   #/hosts:    hosts-table, hosts-empty, host-row-{name} (data-state),
//               host-memory-bar-{name}, host-cpu-bar-{name} (role=meter; aria-valuenow =
//               used, aria-valuemax = total; data-used, data-total)

import { token, json, onUnauthorized, ApiError } from './api.js';
import { startEvents, stopEvents } from './events.js';
import { h, fill, showError, announce } from './dom.js';
import * as appsView from './views/apps.js';
import * as appView from './views/app.js';
import * as jobsView from './views/jobs.js';
import * as workflowsView from './views/workflows.js';
import * as schedulesView from './views/schedules.js';
import * as hostsView from './views/hosts.js';

const $ = (id) => document.getElementById(id);

/** The session: `role` is `operator` or `tenant` once signed in. */
const session = { role: null };
let pageController = null;

const ROUTES = [
  { re: /^\/apps$/, view: appsView.render, nav: 'apps' },
  { re: /^\/apps\/([^/]+)$/, view: appView.render, nav: 'apps' },
  { re: /^\/jobs$/, view: jobsView.render, nav: 'jobs' },
  { re: /^\/jobs\/([^/]+)$/, view: jobsView.render, nav: 'jobs' },
  { re: /^\/jobs\/([^/]+)\/([^/]+)$/, view: jobsView.render, nav: 'jobs' },
  { re: /^\/workflows$/, view: workflowsView.render, nav: 'workflows' },
  { re: /^\/workflows\/([^/]+)$/, view: workflowsView.render, nav: 'workflows' },
  { re: /^\/schedules$/, view: schedulesView.render, nav: 'schedules' },
  { re: /^\/hosts$/, view: hostsView.render, nav: 'hosts', operator: true },
];

const STATUS_TEXT = {
  off: 'Live updates off',
  connecting: 'Connecting…',
  live: 'Live',
  retrying: 'Reconnecting…',
};

function setEventsStatus(state, detail) {
  const el = $('events-status');
  el.dataset.state = state;
  el.textContent = state === 'retrying' && detail ? `Reconnecting in ${detail} s…` : STATUS_TEXT[state];
}

/** Shows the login form (after a log out, or a refused token with `message`). */
function showLogin(message) {
  session.role = null;
  if (pageController) pageController.abort();
  pageController = null;
  stopEvents();
  fill($('view'));
  showError(null);
  announce('');
  $('nav').hidden = true;
  $('session').hidden = true;
  $('login').hidden = false;
  const err = $('login-error');
  err.hidden = !message;
  err.textContent = message || '';
  document.title = 'Sign in · caas console';
  $('login-token').value = '';
  $('login-token').focus();
}

/** Operator or tenant: only the operator may list tenants. 401: the token is unknown. */
async function detectRole(t) {
  try {
    await json('/v1/tenants', { token: t });
    return 'operator';
  } catch (e) {
    if (e instanceof ApiError && e.status === 403) return 'tenant';
    throw e;
  }
}

async function signIn(ev) {
  ev.preventDefault();
  const input = $('login-token');
  const button = $('login-submit');
  const t = input.value.trim();
  const err = $('login-error');
  if (!t) {
    err.textContent = 'Enter a token.';
    err.hidden = false;
    return;
  }
  button.disabled = true;
  err.hidden = true;
  try {
    const role = await detectRole(t);
    token.set(t);
    input.value = '';
    enter(role, true);
  } catch (e) {
    err.textContent = e.status === 401 ? 'That token was refused.'
      : e.status === 429 ? `${e.message}` : `Could not sign in: ${e.message}`;
    err.hidden = false;
    input.focus();
  } finally {
    button.disabled = false;
  }
}

/** Signed in: the shell for `role`, the events stream, the page in the URL. */
function enter(role, focusPage) {
  session.role = role;
  $('login').hidden = true;
  $('nav').hidden = false;
  $('session').hidden = false;
  $('nav-hosts-item').hidden = role !== 'operator';
  const who = $('role');
  who.dataset.role = role;
  who.textContent = role === 'operator' ? 'Operator' : 'Tenant';
  startEvents(setEventsStatus, () => showLogin('The token was refused; sign in again.'));
  if (!location.hash || location.hash === '#' || location.hash === '#/') {
    history.replaceState(null, '', '#/apps');
  }
  route(focusPage);
}

function logOut() {
  token.clear();
  showLogin();
  announce('Signed out.');
}

/** Renders the page the hash names; `focus`: move focus to its heading. */
function route(focus) {
  if (!session.role) return;
  if (pageController) pageController.abort();
  pageController = new AbortController();
  const { signal } = pageController;
  showError(null);
  const path = location.hash.replace(/^#/, '') || '/apps';
  const view = $('view');
  fill(view);
  let match = null;
  let found = null;
  for (const r of ROUTES) {
    match = path.match(r.re);
    if (match) {
      found = r;
      break;
    }
  }
  for (const a of document.querySelectorAll('#nav a')) {
    const current = found && a.dataset.testid === `nav-${found.nav}`;
    if (current) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  let params;
  try {
    params = match ? match.slice(1).map(decodeURIComponent) : [];
  } catch {
    found = null;
  }
  if (!found) {
    add404(view, 'There is no such page.');
  } else if (found.operator && session.role !== 'operator') {
    add404(view, 'This page needs the operator token.');
  } else {
    const ctx = { root: view, signal, params, role: session.role };
    Promise.resolve(found.view(ctx)).catch((e) => {
      if (signal.aborted || e.name === 'AbortError') return;
      showError(e);
    });
  }
  if (focus) {
    const heading = view.querySelector('h1');
    if (heading) {
      heading.setAttribute('tabindex', '-1');
      heading.focus();
    }
  }
}

function add404(view, text) {
  document.title = 'Not found · caas console';
  view.append(
    h('h1', { 'data-testid': 'page-title' }, 'Not found'),
    h('p', null, text, ' ', h('a', { href: '#/apps' }, 'Go to the apps')),
  );
}

function boot() {
  $('login-form').addEventListener('submit', signIn);
  $('logout').addEventListener('click', logOut);
  $('skip').addEventListener('click', (e) => {
    e.preventDefault();
    $('main').focus();
  });
  window.addEventListener('hashchange', () => route(true));
  onUnauthorized(() => {
    if (!session.role) return;
    token.clear();
    showLogin('The token was refused (it may have been rotated); sign in again.');
  });
  const t = token.get();
  if (!t) {
    showLogin();
    return;
  }
  detectRole(t).then(
    (role) => enter(role, false),
    (e) => {
      if (e.status === 401) {
        token.clear();
        showLogin('The token was refused; sign in again.');
      } else {
        // keep the token: the scheduler may be restarting
        showLogin(`Could not reach the API: ${e.message}`);
      }
    },
  );
}

boot();
