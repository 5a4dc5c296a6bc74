// #/workflows and #/workflows/{id}: the caller's workflows, one workflow's steps with each
// step's stderr, and its output (the last step's stdout).
//
// API: GET /v1/workflows?limit=50[&before=ID]; GET /v1/workflows/{id};
// GET /v1/workflows/{id}/output[?follow=true]; GET /v1/workflows/{id}/steps/{i}/logs
// (text/plain). Events: workflow.finished reloads.

import { json, seg } from '../api.js';
import { onEvent } from '../events.js';
import { h, fill, table, section, badge, stateKind, time, pageTitle, errorLine, debounce } from '../dom.js';
import { streamOutput, outputFollower } from './jobs.js';

const PAGE = 50;

/** Renders the workflow pages. */
export async function render(ctx) {
  const { root, signal } = ctx;
  const [id] = ctx.params;
  if (id !== undefined) {
    await renderWorkflow(root, id, signal);
    return;
  }
  const list = h('div', { 'aria-busy': 'true' }, 'Loading…');
  root.append(pageTitle('Workflows'), list);
  let items = [];
  let done = false;
  const load = async (more) => {
    try {
      const before = more && items.length ? `&before=${seg(items[items.length - 1].id)}` : '';
      const page = await json(`/v1/workflows?limit=${PAGE}${before}`, { signal });
      items = more ? items.concat(page) : page;
      done = page.length < PAGE;
      list.removeAttribute('aria-busy');
      renderList(list, items, done, () => load(true), () => load(false));
    } catch (e) {
      if (!signal.aborted) fill(list, errorLine(e, 'workflows-error'));
    }
  };
  const soon = debounce(() => load(false), 300, signal);
  onEvent((ev) => {
    if (ev.type === 'workflow.finished' || ev.type === 'stream.resumed') soon();
  }, signal);
  await load(false);
}

function renderList(el, items, done, more, refresh) {
  const rows = items.map((w) => h('tr', { 'data-testid': `workflow-row-${w.id}`, 'data-state': w.state },
    h('th', { scope: 'row' }, h('a', { href: `#/workflows/${seg(w.id)}` }, w.id)),
    h('td', null, w.name),
    h('td', null, badge(w.state, stateKind(w.state))),
    h('td', { class: 'wrap' }, (w.steps || []).map((s) => s.name).join(' | ')),
    h('td', null, time(w.created_at)),
    h('td', null, time(w.finished_at))));
  fill(el,
    h('div', { class: 'toolbar' }, h('button', { type: 'button', 'data-testid': 'workflows-refresh', onclick: refresh }, 'Refresh')),
    items.length
      ? table({ text: 'Workflows, newest first', hidden: true },
        ['Workflow', 'Name', 'State', 'Steps', 'Created', 'Finished'], rows, { 'data-testid': 'workflows-table' })
      : h('p', { class: 'muted', 'data-testid': 'workflows-empty' }, 'No workflows.'),
    done ? null : h('button', { type: 'button', 'data-testid': 'workflows-more', onclick: more }, 'Older workflows'));
}

async function renderWorkflow(root, id, signal) {
  const base = `/v1/workflows/${seg(id)}`;
  const facts = h('div', { 'data-testid': 'workflow-detail' }, 'Loading…');
  const steps = h('div');
  const pre = h('pre', {
    class: 'output', tabindex: '0', 'aria-label': `Output of workflow ${id}`, 'data-testid': 'workflow-output',
  });
  const status = h('p', { class: 'muted', 'aria-live': 'polite' });
  root.append(
    h('p', { class: 'crumbs' }, h('a', { href: '#/workflows' }, 'Workflows'), ' / '),
    pageTitle(`Workflow ${id}`),
    section('workflow-sec', 'Workflow', facts),
    section('steps-sec', 'Steps', steps),
    section('wf-output-sec', 'Output (the last step\'s stdout)', status, pre),
  );
  const stepPanes = new Map();

  const load = async () => {
    let wf;
    try {
      wf = await json(base, { signal });
    } catch (e) {
      if (!signal.aborted) fill(facts, errorLine(e, 'workflow-error'));
      return;
    }
    fill(facts, h('dl', { class: 'facts', 'data-state': wf.state },
      h('dt', null, 'Name'), h('dd', null, wf.name),
      h('dt', null, 'State'), h('dd', null, badge(wf.state, stateKind(wf.state))),
      h('dt', null, 'Created'), h('dd', null, time(wf.created_at)),
      h('dt', null, 'Finished'), h('dd', null, time(wf.finished_at))));
    renderSteps(steps, base, wf.steps || [], stepPanes, signal);
    await output.follow(wf.state === 'running' || wf.state === 'pending');
  };
  const output = outputFollower(`${base}/output`, pre, status, 'workflow', load, signal);
  onEvent((ev) => {
    if (ev.type === 'workflow.finished' && ev.workflow === id && !output.busy()) load();
  }, signal);
  await load();
}

function renderSteps(el, base, list, panes, signal) {
  const rows = list.map((s, i) => {
    let pane = panes.get(i);
    if (!pane) {
      pane = h('pre', {
        class: 'output small', tabindex: '0', hidden: true,
        'aria-label': `Standard error of step ${i} (${s.name})`, 'data-testid': `step-logs-${i}`,
      });
      panes.set(i, pane);
    }
    const button = h('button', {
      type: 'button', 'aria-expanded': String(!pane.hidden), 'aria-controls': `step-logs-${i}`,
      'data-testid': `step-logs-button-${i}`,
      onclick: async () => {
        if (!pane.hidden) {
          pane.hidden = true;
          button.setAttribute('aria-expanded', 'false');
          return;
        }
        pane.hidden = false;
        button.setAttribute('aria-expanded', 'true');
        pane.textContent = 'Loading…';
        try {
          await streamOutput(`${base}/steps/${i}/logs`, pane, false, signal);
        } catch (e) {
          if (!signal.aborted) pane.textContent = `Could not read the step's log: ${e.message}`;
        }
      },
    }, 'stderr');
    pane.id = `step-logs-${i}`;
    return [
      h('tr', { 'data-testid': `workflow-step-${i}`, 'data-state': s.state },
        h('th', { scope: 'row' }, String(i)),
        h('td', null, s.name),
        h('td', null, badge(s.state, stateKind(s.state))),
        h('td', null, s.exit_code ?? '—'),
        h('td', null, s.host || '—'),
        h('td', null, button)),
      h('tr', { class: 'pane-row' }, h('td', { colspan: 6 }, pane)),
    ];
  });
  fill(el, table({ text: 'Steps, first to last', hidden: true },
    ['#', 'Name', 'State', 'Exit', 'Host', 'Log'], rows, { 'data-testid': 'workflow-steps' }));
}
