// Rules: the list with EMQX's rule metrics, and an editor with the rule
// tester next to it (EMQX's "Enable Test").

import { api, ApiError, entryPath, get } from './api.js';
import { html, link, num, rate, raw } from './dom.js';
import { deleteEntry, showProblems } from './forms.js';

export function rulesPage() {
  return {
    title: 'Rules',
    live({ snap }) {
      const rules = snap.rules || [];
      return html`<h1>Rules <a class="button" href="#/new/rules">New rule</a></h1>
        ${rules.length ? html`<table class="list" id="rules">
          <thead><tr><th>id</th><th>reads</th><th>actions</th><th class="n">matched</th><th class="n">passed</th>
            <th class="n">failed</th><th class="n">no_result</th><th class="n">matched/s</th></tr></thead>
          <tbody>${rules.map((r) => {
            const shorthand = r.id.startsWith('sink:');
            return html`<tr data-rule="${r.id}">
              <td><a href="${shorthand ? link('sinks', r.id.slice(5)) : link('rules', r.id)}">${r.id}</a>${shorthand ? html` <small class="muted">mqtt_topic_filters</small>` : ''}</td>
              <td>${[...(r.from || []), ...(r.sources || []).map((s) => `$bridges/kafka_consumer:${s}`)].map((f) => html`<code>${f}</code> `)}</td>
              <td>${(r.actions || []).map((a) => html`<code>${a}</code> `)}</td>
              <td class="n">${num(r.matched)}</td><td class="n">${num(r.passed)}</td><td class="n">${num(r.failed)}</td>
              <td class="n">${num(r.no_result)}</td><td class="n">${rate(r.rates.matched.last_5s)}</td></tr>`;
          })}</tbody>
        </table>` : html`<p class="muted">No rules yet.</p>`}`;
    },
  };
}

// sampleTopic turns a topic filter into a topic it matches, for the tester.
function sampleTopic(filter) {
  if (!filter) return 't/1';
  return filter.split('/').map((l) => (l === '+' ? 'x' : l === '#' ? '1' : l)).join('/');
}

function outcome(res) {
  const k = res.kafka;
  return html`<p><span class="badge ${res.outcome === 'ok' ? 'connected' : res.outcome === 'failed' ? 'disconnected' : 'connecting'}" id="test-outcome">${res.outcome}</span>
      ${res.reason ? html` <span id="test-reason">${res.reason}</span>` : ''}</p>
    ${res.record ? html`<h3>Selected record</h3><pre id="test-record">${JSON.stringify(res.record, null, 2)}</pre>` : ''}
    ${k ? html`<h3>Kafka record</h3><dl class="kv" id="test-kafka">
      <dt>topic</dt><dd><code>${k.topic}</code></dd>
      <dt>key</dt><dd><code>${k.key}</code></dd>
      <dt>value</dt><dd><pre>${k.value}</pre></dd>
      <dt>partition</dt><dd>${k.partition < 0 ? `chosen at send time (${k.partition_strategy})` : `${k.partition} of ${k.partitions} (${k.partition_strategy})`}</dd>
      <dt>timestamp</dt><dd>${k.timestamp} <span class="muted">(${new Date(k.timestamp).toISOString()})</span></dd>
      ${(k.headers || []).length ? html`<dt>headers</dt><dd>${k.headers.map((h) => html`<code>${h.key}: ${h.value}</code><br>`)}</dd>` : ''}
    </dl>` : ''}`;
}

export function rulePage(id) {
  const FIELDS = [{ key: 'id' }, { key: 'sql' }, { key: 'actions' }];
  return {
    title: id ? `Rule ${id}` : 'New rule',
    async mount(el, ctx) {
      el.innerHTML = String(html`<h1>${id ? `Rule ${id}` : 'New rule'}</h1><p class="muted">Loading…</p>`);
      let entry = {};
      if (id) {
        try {
          entry = await get(`${entryPath('rules', id)}/entry`);
        } catch (e) {
          if (e.status !== 404) throw e;
          const sink = id.startsWith('sink:') ? id.slice(5) : '';
          el.innerHTML = String(sink
            ? html`<h1>Rule ${id}</h1><p>This rule is the <code>mqtt_topic_filters</code> of sink <a href="${link('sinks', sink)}">${sink}</a>: edit the sink.</p>`
            : html`<h1>No rule named ${id}</h1><p><a href="#/rules">All rules</a></p>`);
          return;
        }
      }
      const sinks = (await get('/api/v1/sinks')).map((s) => s.name);
      const rest = structuredClone(entry);
      for (const k of ['id', 'sql', 'actions']) delete rest[k];
      const acts = entry.actions || [];
      const choices = [...new Set([...sinks.map((s) => `kafka_producer:${s}`), ...acts])];
      const status = ctx.snap?.rules?.find((r) => r.id === id);
      const firstSink = acts.find((a) => a.startsWith('kafka_producer:'))?.slice(15) ?? '';
      el.innerHTML = String(html`
        <h1>${id ? `Rule ${id}` : 'New rule'} <span id="rule-stats" class="muted small"></span></h1>
        <div class="columns rule-columns">
          <section class="panel">
            <h2>Rule</h2>
            <form class="entry" id="rule-form" novalidate>
              <div class="problems" id="problems" role="alert" hidden></div>
              <div class="field" data-field="id"><label for="rule-id">id <span class="req">*</span></label>
                <div><input id="rule-id" name="id" value="${entry.id ?? ''}" ${id ? raw('readonly') : ''} autocomplete="off" spellcheck="false" required>
                <div class="field-error" hidden></div></div></div>
              <div class="field" data-field="sql"><label for="rule-sql">SQL <span class="req">*</span></label>
                <div><textarea id="rule-sql" name="sql" rows="7" spellcheck="false" class="code" placeholder='SELECT * FROM "t/#" WHERE payload.temp > 30'>${entry.sql ?? ''}</textarea>
                <div class="field-error" hidden></div></div></div>
              <div class="field" data-field="actions"><label>actions</label>
                <div class="checks">${choices.length ? choices.map((a) => html`<label class="check"><input type="checkbox" name="action" value="${a}" ${acts.includes(a) ? raw('checked') : ''}> <code>${a}</code></label>`)
                  : html`<span class="muted">No sinks yet: <a href="#/new/sinks">create one</a>.</span>`}
                <div class="field-error" hidden></div></div></div>
              <div class="field" data-field="*"><label for="rule-rest">Other keys <small class="muted">(JSON)</small></label>
                <div><textarea id="rule-rest" name="rest" rows="3" spellcheck="false" class="code">${JSON.stringify(rest, null, 2)}</textarea>
                <small class="help">e.g. <code>{"republish": [{"topic": "out/\${clientid}"}]}</code></small>
                <div class="field-error" hidden></div></div></div>
              <div class="buttons">
                <button type="submit" class="primary">${id ? 'Save' : 'Create rule'}</button>
                <a class="button" href="#/rules">Cancel</a>
                ${id ? html`<button type="button" class="danger" data-action="delete">Delete</button>` : ''}
              </div>
            </form>
          </section>
          <section class="panel">
            <h2>Test</h2>
            <form id="test-form" class="entry" novalidate>
              <div class="field"><label for="test-topic">topic</label><div><input id="test-topic" name="topic" value="${sampleTopic(status?.from?.[0])}" spellcheck="false"></div></div>
              <div class="field"><label for="test-clientid">client id</label><div><input id="test-clientid" name="clientid" value="c1" spellcheck="false"></div></div>
              <div class="field"><label for="test-payload">payload</label><div><textarea id="test-payload" name="payload" rows="4" class="code" spellcheck="false">{"device": "d7", "temp": 31.5}</textarea></div></div>
              <div class="field"><label for="test-sink">sink</label><div><select id="test-sink" name="sink">
                <option value="">(none: selected record only)</option>
                ${sinks.map((s) => html`<option value="${s}" ${s === firstSink ? raw('selected') : ''}>${s}</option>`)}
              </select><small class="help">renders the sink's topic, key and value templates</small></div></div>
              <div class="field"><label for="test-partitions">partitions</label><div><input id="test-partitions" name="partitions" value="3" inputmode="numeric"></div></div>
              <div class="buttons"><button type="submit">Run test</button></div>
            </form>
            <div id="test-output" class="test-output" aria-live="polite"></div>
          </section>
        </div>`);

      const form = el.querySelector('#rule-form');
      const box = form.querySelector('#problems');
      form.addEventListener('click', (ev) => {
        if (ev.target.closest('[data-action=delete]')) deleteEntry(ctx, 'rules', id, '#/rules');
      });
      form.addEventListener('submit', async (ev) => {
        ev.preventDefault();
        let body;
        try {
          body = JSON.parse(form.elements.rest.value.trim() || '{}');
          if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new Error('must be a JSON object');
        } catch (e) {
          showProblems(form, box, Object.assign(new Error(`Other keys: ${e.message}`), { problems: [] }), 'rules', FIELDS);
          return;
        }
        body.id = form.elements.id.value.trim();
        body.sql = form.elements.sql.value;
        body.actions = [...form.querySelectorAll('input[name=action]:checked')].map((i) => i.value);
        try {
          await (id ? api('PUT', entryPath('rules', id), body) : api('POST', '/api/v1/rules', body));
          showProblems(form, box, null);
          ctx.flash(`${id ? 'Saved' : 'Created'} rule ${body.id}`);
          if (!id) ctx.go(link('rules', body.id));
        } catch (e) {
          if (e instanceof ApiError && e.status !== 401) showProblems(form, box, e, 'rules', FIELDS);
        }
      });

      const test = el.querySelector('#test-form');
      const out = el.querySelector('#test-output');
      test.addEventListener('submit', async (ev) => {
        ev.preventDefault();
        const f = test.elements;
        const req = {
          sql: form.elements.sql.value, topic: f.topic.value, clientid: f.clientid.value, payload: f.payload.value,
          sink: f.sink.value, partitions: Number(f.partitions.value) || 0,
        };
        out.innerHTML = String(html`<p class="muted">running…</p>`);
        try {
          out.innerHTML = String(outcome(await api('POST', '/api/v1/rules/test', req)));
        } catch (e) {
          if (e.status === 401) return;
          out.innerHTML = String(html`<p><span class="badge disconnected" id="test-outcome">error</span> <span id="test-reason">${e.message}</span></p>`);
        }
      });
      this.update(ctx);
    },
    update({ snap }) {
      const el = document.getElementById('rule-stats');
      const r = snap?.rules?.find((x) => x.id === id);
      if (el && r) el.textContent = `matched ${num(r.matched)} · passed ${num(r.passed)} · failed ${num(r.failed)} · no_result ${num(r.no_result)} · ${rate(r.rates.matched.last_5s)}/s matched`;
    },
  };
}
