// Connectors: status, where they point, and a connectivity test.

import { get, testConnector } from './api.js';
import { html, link, statusBadge } from './dom.js';
import { deleteEntry } from './forms.js';

export function connectorsPage() {
  let cfg = null;
  const results = {};
  return {
    title: 'Connectors',
    mount(el, ctx) {
      get('/api/v1/config').then((c) => { cfg = c; ctx.refresh(); }, () => {});
      el.addEventListener('click', (ev) => {
        const b = ev.target.closest('button[data-name]');
        if (!b) return;
        const name = b.dataset.name;
        if (b.dataset.action === 'test') testConnector(name, (r) => { results[name] = r; ctx.refresh(); });
        if (b.dataset.action === 'delete') deleteEntry(ctx, 'connectors', name, '#/connectors');
      });
    },
    live({ snap }) {
      const list = snap.connectors || [];
      const conf = (name) => cfg?.connectors?.find((c) => c.name === name) || {};
      const users = (name) => [
        ...(snap.sinks || []).filter((k) => k.connector === name).map((k) => html`<a href="${link('sinks', k.name)}">${k.name}</a> `),
        ...(snap.sources || []).filter((k) => k.config?.connector === name).map((k) => html`<a href="${link('sources', k.name)}">${k.name}</a> `),
      ];
      return html`<h1>Connectors <a class="button" href="#/new/connectors">New connector</a></h1>
        ${list.length ? html`<table class="list" id="connectors">
          <thead><tr><th>name</th><th>status</th><th>bootstrap_hosts</th><th>used by</th><th>connectivity</th><th></th></tr></thead>
          <tbody>${list.map((c) => {
            const r = results[c.name];
            return html`<tr data-connector="${c.name}">
              <td><a href="${link('connectors', c.name)}">${c.name}</a></td><td>${statusBadge(c.status)}</td>
              <td><code>${conf(c.name).bootstrap_hosts ?? ''}</code></td><td>${users(c.name)}</td>
              <td class="test-result ${r?.state ?? ''}">${r?.text ?? ''}</td>
              <td class="row-actions"><button type="button" data-action="test" data-name="${c.name}">Test connectivity</button>
                <a class="button" href="${link('connectors', c.name)}">Edit</a>
                <button type="button" class="danger" data-action="delete" data-name="${c.name}">Delete</button></td></tr>`;
          })}</tbody>
        </table>` : html`<p class="muted">No connectors yet.</p>`}`;
    },
  };
}
