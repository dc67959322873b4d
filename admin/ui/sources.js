// Sources: the list, and a page per source with its lag and topic mapping.

import { html, link, num, rate, statusBadge, sum } from './dom.js';
import { lineChart } from './chart.js';
import { entryPage } from './forms.js';

function topics(c) {
  const t = Array.isArray(c?.topic) ? c.topic : c?.topic ? [c.topic] : [];
  return [...new Set([...t, ...(c?.topic_mapping || []).map((m) => m.kafka_topic)])];
}

export function sourcesPage() {
  return {
    title: 'Sources',
    live({ snap }) {
      const list = snap.sources || [];
      return html`<h1>Sources <a class="button" href="#/new/sources">New source</a></h1>
        ${list.length ? html`<table class="list" id="sources">
          <thead><tr><th>name</th><th>status</th><th>connector</th><th>Kafka topics</th>
            <th class="n">received</th><th class="n">success</th><th class="n">failed</th><th class="n">dropped</th>
            <th class="n">lag</th><th class="n">msgs/s</th></tr></thead>
          <tbody>${list.map((k) => html`<tr>
            <td><a href="${link('sources', k.name)}">${k.name}</a></td><td>${statusBadge(k.status)}</td><td>${k.config?.connector}</td>
            <td>${topics(k.config).map((t) => html`<code>${t}</code> `)}</td>
            <td class="n">${num(k.received)}</td><td class="n">${num(k.success)}</td><td class="n">${num(k.failed)}</td>
            <td class="n">${num(sum(Object.values(k.dropped || {})))}</td><td class="n">${num(sum((k.lag || []).map((l) => l.lag)))}</td>
            <td class="n">${rate(k.rates.success.last_5s)}</td></tr>`)}</tbody>
        </table>` : html`<p class="muted">No sources yet.</p>`}`;
    },
  };
}

export function sourcePage(name) {
  return entryPage('sources', name, (k, { hist }) => {
    const c = k.config || {};
    const lag = [...(k.lag || [])].sort((a, b) => a.topic.localeCompare(b.topic) || a.partition - b.partition);
    return html`<div class="cards">
        <div class="card"><div class="label">received</div><div class="value">${num(k.received)}</div></div>
        <div class="card"><div class="label">success</div><div class="value">${num(k.success)}</div></div>
        <div class="card"><div class="label">failed</div><div class="value">${num(k.failed)}</div></div>
        <div class="card"><div class="label">dropped</div><div class="value">${num(sum(Object.values(k.dropped || {})))}</div>
          <div class="sub">${Object.entries(k.dropped || {}).filter(([, n]) => n).map(([r, n]) => `${r} ${num(n)}`).join(', ') || 'none'}</div></div>
        <div class="card"><div class="label">lag</div><div class="value">${num(sum(lag.map((l) => l.lag)))}</div></div>
      </div>
      <section class="panel">
        <h2>Rate, last 5 minutes</h2>
        ${lineChart([
          { name: 'received', cls: 's3', points: hist.series(`source:${name}:received`) },
          { name: 'success', cls: 's2', points: hist.series(`source:${name}:success`) },
        ], hist.now())}
      </section>
      <div class="columns">
        <section class="panel">
          <h2>Topic mapping</h2>
          ${c.topic_mapping?.length ? html`<table class="list">
            <thead><tr><th>Kafka topic</th><th>MQTT topic</th><th class="n">QoS</th><th>retain</th><th>payload</th></tr></thead>
            <tbody>${c.topic_mapping.map((m) => html`<tr><td><code>${m.kafka_topic}</code></td><td><code>${m.mqtt_topic}</code></td>
              <td class="n">${m.qos}</td><td>${m.retain ? 'yes' : 'no'}</td><td><code>${m.payload_template}</code></td></tr>`)}</tbody>
          </table>` : html`<p class="muted">No topic_mapping: only rules reading <code>$bridges/kafka_consumer:${name}</code> see its messages.</p>`}
          <h2>Lag per partition</h2>
          ${lag.length ? html`<table class="list"><thead><tr><th>topic</th><th class="n">partition</th><th class="n">lag</th></tr></thead>
            <tbody>${lag.map((l) => html`<tr><td><code>${l.topic}</code></td><td class="n">${l.partition}</td><td class="n">${num(l.lag)}</td></tr>`)}</tbody></table>`
            : html`<p class="muted">No partitions assigned yet.</p>`}
        </section>
        <section class="panel">
          <h2>Consumer</h2>
          <dl class="kv">
            <dt>connector</dt><dd>${c.connector}</dd>
            <dt>topics</dt><dd>${topics(c).join(', ')}</dd>
            <dt>group_id</dt><dd>${c.group_id || `mqkafka-${name}`}</dd>
            <dt>offset_reset_policy</dt><dd>${c.offset_reset_policy}</dd>
            <dt>offset_commit_interval</dt><dd>${c.offset_commit_interval}</dd>
            <dt>key / value encoding</dt><dd>${c.key_encoding_mode} / ${c.value_encoding_mode}</dd>
            <dt>max_batch_bytes</dt><dd>${c.max_batch_bytes}</dd>
            <dt>max_wait_time</dt><dd>${c.max_wait_time}</dd>
            <dt>headers_as_user_properties</dt><dd>${String(!!c.headers_as_user_properties)}</dd>
          </dl>
        </section>
      </div>`;
  });
}
