// Create and edit forms for connectors, sinks and sources. The common keys
// get a field each; every other key of the entry stays editable as JSON, so
// a form never drops a setting it does not know. Validation is the API's,
// which is `check`'s: its problems are shown at the fields they name.

import { api, ApiError, entryPath, get, testConnector } from './api.js';
import { html, link, raw, statusBadge } from './dom.js';

const DEFAULT = '';

// Field types: text, password, number, size (bytes: "256MB" or a number),
// select, checkbox, list (comma separated), one-or-list, map (key = value
// lines) and rows (an array of tables).
const SPECS = {
  connectors: [
    { key: 'name', required: true, fixed: true },
    { key: 'bootstrap_hosts', required: true, placeholder: 'kafka-1:9092,kafka-2:9092' },
    { key: 'connect_timeout', placeholder: '5s' },
    { key: 'metadata_request_timeout', placeholder: '5s' },
    { key: 'health_check_interval', placeholder: '15s' },
    { key: 'concurrent_clients', type: 'number', placeholder: '1' },
    { key: 'client_id_prefix' },
    { key: 'ssl.enable', type: 'checkbox', label: 'TLS (ssl.enable)' },
    { key: 'authentication.mechanism', type: 'select', options: [DEFAULT, 'plain', 'scram_sha_256', 'scram_sha_512'] },
    { key: 'authentication.username' },
    { key: 'authentication.password', type: 'password', help: 'or file:///path; ****** keeps the current one' },
    { key: 'properties', type: 'map', help: 'librdkafka properties, one "key = value" a line' },
  ],
  sinks: [
    { key: 'name', required: true, fixed: true },
    { key: 'connector', type: 'select', required: true, options: 'connectors' },
    { key: 'topic', required: true, placeholder: 'testtopic-in or device-${payload.device}' },
    { key: 'key', placeholder: '${clientid}' },
    { key: 'value', placeholder: '${.}' },
    { key: 'partition_strategy', type: 'select', options: [DEFAULT, 'random', 'key_dispatch', 'fixed'] },
    { key: 'partition', type: 'number', help: 'with partition_strategy = fixed' },
    { key: 'required_acks', type: 'select', options: [DEFAULT, 'all_isr', 'leader_only', 'none'] },
    { key: 'compression', type: 'select', options: [DEFAULT, 'no_compression', 'gzip', 'snappy', 'lz4', 'zstd'] },
    { key: 'query_mode', type: 'select', options: [DEFAULT, 'async', 'sync'] },
    { key: 'max_inflight', type: 'number', placeholder: '10' },
    { key: 'mqtt_topic_filters', type: 'list', help: 'RMQTT shorthand: read these filters without a rule' },
    { key: 'buffer.mode', type: 'select', options: [DEFAULT, 'memory', 'disk', 'hybrid'] },
    { key: 'buffer.per_partition_limit', type: 'size', placeholder: '256MB' },
    { key: 'buffer.memory_limit', type: 'size', placeholder: 'segment_bytes', help: 'hybrid only' },
    { key: 'buffer.overflow', type: 'select', options: [DEFAULT, 'drop_oldest', 'drop_new', 'block'] },
    { key: 'buffer.fsync', type: 'select', options: [DEFAULT, 'batch', 'interval', 'never'] },
  ],
  sources: [
    { key: 'name', required: true, fixed: true },
    { key: 'connector', type: 'select', required: true, options: 'connectors' },
    { key: 'topic', type: 'one-or-list', help: 'Kafka topics, comma separated (the topic_mapping topics are read too)' },
    { key: 'group_id', placeholder: 'mqkafka-<name>' },
    { key: 'offset_reset_policy', type: 'select', options: [DEFAULT, 'latest', 'earliest'] },
    { key: 'key_encoding_mode', type: 'select', options: [DEFAULT, 'none', 'base64'] },
    { key: 'value_encoding_mode', type: 'select', options: [DEFAULT, 'none', 'base64'] },
    {
      key: 'topic_mapping', type: 'rows', columns: [
        { key: 'kafka_topic', placeholder: 'testtopic-out' },
        { key: 'mqtt_topic', placeholder: 'devices/${.key}/cmd' },
        { key: 'qos', type: 'number', placeholder: '1' },
        { key: 'retain', type: 'checkbox' },
        { key: 'payload_template', placeholder: '${.}' },
      ],
    },
  ],
};

const NOUN = { connectors: 'connector', sinks: 'sink', sources: 'source' };

export function getPath(o, path) {
  return path.split('.').reduce((v, k) => (v && typeof v === 'object' ? v[k] : undefined), o);
}

function setPath(o, path, v) {
  const keys = path.split('.');
  const last = keys.pop();
  for (const k of keys) {
    if (typeof o[k] !== 'object' || o[k] === null || Array.isArray(o[k])) o[k] = {};
    o = o[k];
  }
  o[last] = v;
}

function deletePath(o, path) {
  const keys = path.split('.');
  const last = keys.pop();
  const parents = [];
  for (const k of keys) {
    if (typeof o?.[k] !== 'object') return;
    parents.push([o, k]);
    o = o[k];
  }
  delete o[last];
  // A table emptied by the fields that took its keys goes too.
  for (const [p, k] of parents.reverse()) if (Object.keys(p[k]).length === 0) delete p[k];
}

function inputValue(f, v) {
  if (v === undefined || v === null) return '';
  switch (f.type) {
    case 'list': case 'one-or-list': return Array.isArray(v) ? v.join(', ') : String(v);
    case 'map': return Object.entries(v).map(([k, x]) => `${k} = ${x}`).join('\n');
    default: return typeof v === 'object' ? JSON.stringify(v) : String(v);
  }
}

// scalar reads an input as the API wants it; what does not parse is sent
// as typed, so that the API names the problem.
function scalar(type, text) {
  const t = text.trim();
  if (t === '') return undefined;
  if (type === 'number' || (type === 'size' && /^\d+$/.test(t))) {
    const n = Number(t);
    return Number.isFinite(n) ? n : t;
  }
  return t;
}

function readField(form, f) {
  const el = form.elements[`f:${f.key}`];
  switch (f.type) {
    case 'checkbox': return el.checked ? true : undefined;
    case 'list': case 'one-or-list': {
      const items = el.value.split(',').map((s) => s.trim()).filter(Boolean);
      if (!items.length) return undefined;
      return f.type === 'one-or-list' && items.length === 1 ? items[0] : items;
    }
    case 'map': {
      const m = {};
      for (const line of el.value.split('\n')) {
        if (!line.trim()) continue;
        const i = line.indexOf('=');
        if (i < 0) throw new FieldError(f.key, `"${line.trim()}" is not "key = value"`);
        m[line.slice(0, i).trim()] = line.slice(i + 1).trim();
      }
      return Object.keys(m).length ? m : undefined;
    }
    case 'rows': {
      const rows = [...form.querySelectorAll(`[data-rows="${f.key}"] tbody tr`)].map((tr) => {
        const row = {};
        for (const c of f.columns) {
          const input = tr.querySelector(`[data-col="${c.key}"]`);
          const v = c.type === 'checkbox' ? (input.checked || undefined) : scalar(c.type, input.value);
          if (v !== undefined) row[c.key] = v;
        }
        return row;
      }).filter((r) => Object.keys(r).length);
      return rows.length ? rows : undefined;
    }
    default: return scalar(f.type, el.value);
  }
}

class FieldError extends Error {
  constructor(key, message) { super(message); this.key = key; }
}

function rowMarkup(f, row = {}) {
  return html`<tr>${f.columns.map((c) => html`<td>${c.type === 'checkbox'
    ? html`<input type="checkbox" data-col="${c.key}" aria-label="${c.key}" ${row[c.key] ? raw('checked') : ''}>`
    : html`<input type="text" data-col="${c.key}" aria-label="${c.key}" placeholder="${c.placeholder ?? ''}" value="${inputValue(c, row[c.key])}">`}</td>`)}
    <td><button type="button" class="link" data-remove-row>remove</button></td></tr>`;
}

function fieldMarkup(f, value, options, editing) {
  const name = `f:${f.key}`;
  const id = `f-${f.key.replace(/\W/g, '-')}`;
  const label = f.label ?? f.key;
  const common = html`name="${name}" id="${id}" ${f.required ? raw('required') : ''}`;
  let input;
  switch (f.type) {
    case 'select': {
      const opts = typeof f.options === 'string' ? options[f.options] : f.options;
      const all = value && !opts.includes(value) ? [...opts, value] : opts;
      input = html`<select ${common}>${all.map((o) => html`<option value="${o}" ${o === (value ?? '') ? raw('selected') : ''}>${o === DEFAULT ? '(default)' : o}</option>`)}</select>`;
      break;
    }
    case 'checkbox':
      input = html`<input type="checkbox" ${common} ${value ? raw('checked') : ''}>`;
      break;
    case 'map':
      input = html`<textarea ${common} rows="3" spellcheck="false">${inputValue(f, value)}</textarea>`;
      break;
    case 'rows':
      input = html`<div class="rows" data-rows="${f.key}" id="${id}"><table>
        <thead><tr>${f.columns.map((c) => html`<th>${c.key}</th>`)}<th></th></tr></thead>
        <tbody>${(Array.isArray(value) ? value : []).map((r) => rowMarkup(f, r))}</tbody></table>
        <button type="button" data-add-row="${f.key}">Add ${f.key} entry</button></div>`;
      break;
    default:
      input = html`<input type="${f.type === 'password' ? 'password' : 'text'}" ${common}
        ${f.type === 'number' ? raw('inputmode="numeric"') : ''} placeholder="${f.placeholder ?? ''}"
        value="${inputValue(f, value)}" ${f.fixed && editing ? raw('readonly') : ''} autocomplete="off" spellcheck="false">`;
  }
  return html`<div class="field" data-field="${f.key}">
    <label for="${id}">${label}${f.required ? raw(' <span class="req">*</span>') : ''}</label>
    <div>${input}${f.help ? html`<small class="help">${f.help}</small>` : ''}<div class="field-error" hidden></div></div>
  </div>`;
}

// problemsBox shows an API error: its message and every problem, and marks
// the fields the problems name ("sinks[1].buffer.mode: …").
export function showProblems(form, box, err, kind, fields) {
  for (const el of form.querySelectorAll('.field.invalid')) {
    el.classList.remove('invalid');
    el.querySelector('.field-error').hidden = true;
  }
  if (!err) {
    box.hidden = true;
    box.replaceChildren();
    return;
  }
  const problems = err.problems?.length ? err.problems : [];
  box.innerHTML = String(html`<strong>${err.message}</strong>${problems.length ? html`<ul>${problems.map((p) => html`<li>${p}</li>`)}</ul>` : ''}`);
  box.hidden = false;
  const marks = err instanceof FieldError ? [[err.key, err.message]] : [];
  for (const p of problems) {
    const m = p.match(/^(\w+)\[\d+\]\.([^:]+): /);
    if (!m || m[1] !== kind) continue;
    const path = m[2].replace(/\[\d+\]/g, '');
    const f = [...fields].sort((a, b) => b.key.length - a.key.length)
      .find((x) => path === x.key || path.startsWith(`${x.key}.`));
    if (f) marks.push([f.key, p.slice(m[0].length)]);
  }
  for (const [key, msg] of marks) {
    const el = form.querySelector(`.field[data-field="${CSS.escape(key)}"]`);
    if (!el) continue;
    el.classList.add('invalid');
    const e = el.querySelector('.field-error');
    e.textContent = e.hidden ? msg : `${e.textContent}; ${msg}`;
    e.hidden = false;
  }
  box.scrollIntoView({ block: 'nearest' });
}

export async function deleteEntry(ctx, kind, name, back) {
  if (!confirm(`Delete ${NOUN[kind] ?? kind.slice(0, -1)} ${name}?`)) return;
  try {
    await api('DELETE', entryPath(kind, name));
    ctx.flash(`Deleted ${name}`);
    ctx.go(back);
  } catch (e) {
    if (e.status === 401) return;
    ctx.flash(`${e.message}${e.problems?.length ? `: ${e.problems.join('; ')}` : ''}`, 'error');
  }
}

// entryPage is the page of one sink or source: its heading with Edit and
// Delete over body(entry, state), or a note when there is no such entry.
export function entryPage(kind, name, body) {
  const noun = NOUN[kind];
  const title = `${noun[0].toUpperCase()}${noun.slice(1)} ${name}`;
  return {
    title,
    mount(el, ctx) {
      el.addEventListener('click', (ev) => {
        if (ev.target.closest('[data-action=delete]')) deleteEntry(ctx, kind, name, `#/${kind}`);
      });
    },
    live(state) {
      const k = (state.snap[kind] || []).find((x) => x.name === name);
      if (!k) return html`<h1>No ${noun} named ${name}</h1><p><a href="#/${kind}">All ${kind}</a></p>`;
      return html`<h1>${title} ${statusBadge(k.status)}
          <span class="actions"><a class="button" href="${link(kind, name, 'edit')}">Edit</a>
          <button type="button" class="danger" data-action="delete">Delete</button></span></h1>
        ${body(k, state)}`;
    },
  };
}

// entryFormPage creates (name null) or edits one entry of kind.
export function entryFormPage(kind, name) {
  const fields = SPECS[kind];
  if (!fields) return null;
  const noun = NOUN[kind];
  return {
    title: name ? `Edit ${noun} ${name}` : `New ${noun}`,
    async mount(el, ctx) {
      el.innerHTML = String(html`<h1>${name ? `Edit ${noun} ${name}` : `New ${noun}`}</h1><p class="muted">Loading…</p>`);
      const [entry, connectors] = await Promise.all([
        name ? get(`${entryPath(kind, name)}/entry`) : Promise.resolve({}),
        get('/api/v1/connectors'),
      ]);
      const options = { connectors: connectors.map((c) => c.name) };
      const rest = structuredClone(entry);
      for (const f of fields) deletePath(rest, f.key);
      const back = kind === 'connectors' ? '#/connectors' : name ? link(kind, name) : `#/${kind}`;
      el.innerHTML = String(html`
        <h1>${name ? `Edit ${noun} ${name}` : `New ${noun}`}</h1>
        <form class="entry" id="entry-form" novalidate>
          <div class="problems" id="problems" role="alert" hidden></div>
          ${fields.map((f) => fieldMarkup(f, getPath(entry, f.key), options, !!name))}
          <div class="field" data-field="*">
            <label for="f-rest">Other keys <small class="muted">(JSON, as in the file)</small></label>
            <div><textarea id="f-rest" name="rest" rows="${Math.min(14, 3 + JSON.stringify(rest, null, 2).split('\n').length)}" spellcheck="false">${JSON.stringify(rest, null, 2)}</textarea>
            <small class="help">Any other key of the README's configuration reference, e.g. <code>{"buffer": {"segment_bytes": "10MB"}}</code>.</small>
            <div class="field-error" hidden></div></div>
          </div>
          <div class="buttons">
            <button type="submit" class="primary">${name ? 'Save' : `Create ${noun}`}</button>
            <a class="button" href="${back}">Cancel</a>
            ${name && kind === 'connectors' ? html`<button type="button" data-action="test">Test connectivity</button><span class="test-result" id="test-result"></span>` : ''}
            ${name ? html`<button type="button" class="danger" data-action="delete">Delete</button>` : ''}
          </div>
        </form>`);
      const form = el.querySelector('form');
      const box = el.querySelector('#problems');
      form.addEventListener('click', (ev) => {
        const add = ev.target.closest('[data-add-row]');
        if (add) {
          const f = fields.find((x) => x.key === add.dataset.addRow);
          form.querySelector(`[data-rows="${CSS.escape(f.key)}"] tbody`).insertAdjacentHTML('beforeend', String(rowMarkup(f)));
        }
        if (ev.target.closest('[data-remove-row]')) ev.target.closest('tr').remove();
        if (ev.target.closest('[data-action=delete]')) deleteEntry(ctx, kind, name, `#/${kind}`);
        if (ev.target.closest('[data-action=test]')) {
          const out = el.querySelector('#test-result');
          testConnector(name, (r) => { out.textContent = r.text; out.className = `test-result ${r.state}`; });
        }
      });
      form.addEventListener('submit', async (ev) => {
        ev.preventDefault();
        let body;
        try {
          const extra = form.elements.rest.value.trim();
          try {
            body = extra ? JSON.parse(extra) : {};
          } catch (e) {
            throw new FieldError('*', `not JSON: ${e.message}`);
          }
          if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new FieldError('*', 'must be a JSON object');
          for (const f of fields) {
            const v = readField(form, f);
            if (v !== undefined) setPath(body, f.key, v);
          }
        } catch (e) {
          if (!(e instanceof FieldError)) throw e;
          showProblems(form, box, e, kind, fields);
          return;
        }
        const button = form.querySelector('button[type=submit]');
        button.disabled = true;
        try {
          const saved = name ? await api('PUT', entryPath(kind, name), body) : await api('POST', `/api/v1/${kind}`, body);
          showProblems(form, box, null);
          const n = body.name ?? name;
          ctx.flash(`${name ? 'Saved' : 'Created'} ${noun} ${n}`);
          ctx.go(kind === 'connectors' ? '#/connectors' : link(kind, saved?.name ?? n));
        } catch (e) {
          if (e instanceof ApiError && e.status !== 401) showProblems(form, box, e, kind, fields);
        } finally {
          button.disabled = false;
        }
      });
    },
  };
}
