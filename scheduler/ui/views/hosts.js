// #/hosts (operator only): every host with its state and capacity bars (memory and CPU
// claimed of the total).
//
// API: GET /v1/hosts. Events: host.down / host.up, and anything that places or removes
// instances or jobs (capacity changes), reload the list.

import { json } from '../api.js';
import { onEvent } from '../events.js';
import { h, fill, table, badge, stateKind, mib, num, pageTitle, errorLine, debounce } from '../dom.js';

/** Renders the hosts page. */
export async function render(ctx) {
  const { root, signal } = ctx;
  const body = h('div', { 'aria-busy': 'true' }, 'Loading…');
  root.append(pageTitle('Hosts'), body);
  const load = async () => {
    try {
      const hosts = await json('/v1/hosts', { signal });
      body.removeAttribute('aria-busy');
      hosts.sort((a, b) => a.name.localeCompare(b.name));
      fill(body, hosts.length
        ? table({ text: 'Hosts and their capacity', hidden: true },
          ['Host', 'State', 'Memory', 'CPU', 'Address', 'Labels'], hosts.map(hostRow), { 'data-testid': 'hosts-table' })
        : h('p', { class: 'muted', 'data-testid': 'hosts-empty' }, 'No hosts.'));
    } catch (e) {
      if (!signal.aborted) fill(body, errorLine(e, 'hosts-error'));
    }
  };
  const soon = debounce(load, 500, signal);
  onEvent((ev) => {
    if (/^(host|instance|deploy|deployment|autoscale|job|workflow|app)\./.test(ev.type) || ev.type === 'stream.resumed') soon();
  }, signal);
  await load();
}

/**
 * A capacity bar: role=meter with the used amount of the total. The fill's width comes from
 * the CSSOM (allowed by the CSP's style-src 'self', unlike a style attribute).
 */
function bar(testid, label, used, total, text) {
  const frac = total > 0 ? Math.min(1, Math.max(0, used / total)) : 0;
  const fillEl = h('span', { class: 'fill' });
  fillEl.style.width = `${(frac * 100).toFixed(1)}%`;
  return h('div', { class: 'capacity' },
    h('div', {
      class: `bar ${frac >= 0.9 ? 'high' : frac >= 0.7 ? 'mid' : ''}`,
      role: 'meter', 'aria-label': label,
      'aria-valuemin': '0', 'aria-valuemax': String(total), 'aria-valuenow': String(used), 'aria-valuetext': text,
      'data-testid': testid, 'data-used': String(used), 'data-total': String(total),
    }, fillEl),
    h('span', { class: 'bar-text' }, text));
}

function hostRow(host) {
  const memUsed = Math.max(0, host.memory_mb - host.memory_free_mb);
  const cpuUsed = Math.max(0, Number((host.cpus - host.cpus_free).toFixed(3)));
  const labels = Object.entries(host.labels || {}).map(([k, v]) => `${k}=${v}`).join(', ');
  return h('tr', { 'data-testid': `host-row-${host.name}`, 'data-state': host.state },
    h('th', { scope: 'row' }, host.name),
    h('td', null, badge(host.state, stateKind(host.state))),
    h('td', null, bar(`host-memory-bar-${host.name}`, `Memory claimed on ${host.name}`, memUsed, host.memory_mb,
      `${mib(memUsed)} of ${mib(host.memory_mb)}`)),
    h('td', null, bar(`host-cpu-bar-${host.name}`, `CPU claimed on ${host.name}`, cpuUsed, host.cpus,
      `${num(cpuUsed)} of ${num(host.cpus)} CPU`)),
    h('td', null, h('code', null, host.address), h('br'), h('span', { class: 'muted small' }, host.ports)),
    h('td', { class: 'wrap' }, labels || h('span', { class: 'muted' }, 'none')));
}
