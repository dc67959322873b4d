// Sinks: the list, and a page per sink with its buffer, partition queues
// and a chart of the last five minutes.

import { bytes, html, link, num, rate, statusBadge, sum } from './dom.js';
import { lineChart } from './chart.js';
import { entryPage } from './forms.js';

function dropped(d) {
  return sum(Object.values(d || {}));
}

export function sinksPage() {
  return {
    title: 'Sinks',
    live({ snap }) {
      const sinks = snap.sinks || [];
      return html`<h1>Sinks <a class="button" href="#/new/sinks">New sink</a></h1>
        ${sinks.length ? html`<table class="list" id="sinks">
          <thead><tr><th>name</th><th>status</th><th>connector</th><th>Kafka topic</th><th>buffer</th>
            <th class="n">matched</th><th class="n">success</th><th class="n">failed</th><th class="n">retried</th>
            <th class="n">dropped</th><th class="n">queuing</th><th class="n">inflight</th><th class="n">msgs/s</th></tr></thead>
          <tbody>${sinks.map((k) => html`<tr data-sink="${k.name}">
            <td><a href="${link('sinks', k.name)}">${k.name}</a></td><td>${statusBadge(k.status)}</td><td>${k.connector}</td>
            <td><code>${k.config.topic}</code></td><td>${k.config.buffer.mode}</td>
            <td class="n">${num(k.counters.matched)}</td><td class="n success">${num(k.counters.success)}</td>
            <td class="n">${num(k.counters.failed)}</td><td class="n">${num(k.counters.retried)}</td>
            <td class="n">${num(dropped(k.counters.dropped))}</td><td class="n">${num(k.counters.queuing)}</td>
            <td class="n">${num(k.counters.inflight)}</td><td class="n">${rate(k.rates.success.last_5s)}</td></tr>`)}</tbody>
        </table>` : html`<p class="muted">No sinks yet.</p>`}`;
    },
  };
}

function bufferLimits(b) {
  const rows = [['mode', b.mode], ['per_partition_limit', b.per_partition_limit], ['overflow', b.overflow]];
  if (b.overflow === 'block') rows.push(['block_timeout', b.block_timeout]);
  if (b.mode !== 'memory') {
    rows.push(['segment_bytes', b.segment_bytes], ['fsync', b.fsync]);
    if (b.fsync === 'interval') rows.push(['fsync_interval', b.fsync_interval]);
  }
  if (b.mode === 'hybrid') rows.push(['memory_limit', b.memory_limit]);
  if (b.mode === 'memory') rows.push(['memory_overload_protection', String(b.memory_overload_protection)]);
  return rows;
}

function dl(rows) {
  return html`<dl class="kv">${rows.map(([k, v]) => html`<dt>${k}</dt><dd>${v === '' || v === undefined ? '–' : v}</dd>`)}</dl>`;
}

export function sinkPage(name) {
  return entryPage('sinks', name, (k, { hist }) => {
    const c = k.config;
    // The holding queue matters only while records wait in it for metadata.
    const parts = (k.partitions || []).filter((p) => p.partition >= 0 || p.queuing > 0).sort((a, b) => a.topic.localeCompare(b.topic) || a.partition - b.partition);
    const drops = Object.entries(k.counters.dropped || {}).filter(([, n]) => n);
    return html`<div class="cards">
        <div class="card"><div class="label">matched</div><div class="value">${num(k.counters.matched)}</div></div>
        <div class="card"><div class="label">success</div><div class="value" id="sink-success">${num(k.counters.success)}</div></div>
        <div class="card"><div class="label">failed</div><div class="value">${num(k.counters.failed)}</div></div>
        <div class="card"><div class="label">retried</div><div class="value">${num(k.counters.retried)}</div></div>
        <div class="card"><div class="label">dropped</div><div class="value">${num(dropped(k.counters.dropped))}</div>
          <div class="sub">${drops.map(([r, n]) => `${r} ${num(n)}`).join(', ') || 'none'}</div></div>
        <div class="card"><div class="label">queuing / inflight</div><div class="value">${num(k.counters.queuing)} / ${num(k.counters.inflight)}</div></div>
      </div>
      <section class="panel">
        <h2>Rate, last 5 minutes</h2>
        ${lineChart([
          { name: 'matched', cls: 's1', points: hist.series(`sink:${name}:matched`) },
          { name: 'success', cls: 's2', points: hist.series(`sink:${name}:success`) },
        ], hist.now())}
      </section>
      <div class="columns">
        <section class="panel">
          <h2>Partition queues</h2>
          ${parts.length ? html`<table class="list" id="partitions">
            <thead><tr><th>topic</th><th class="n">partition</th><th class="n">queuing</th><th class="n">queuing_bytes</th><th class="n">inflight</th></tr></thead>
            <tbody>${parts.map((p) => html`<tr><td><code>${p.topic}</code></td>
              <td class="n">${p.partition < 0 ? html`<span title="records waiting for the topic's metadata">holding</span>` : p.partition}</td>
              <td class="n">${num(p.queuing)}</td><td class="n" title="${num(p.queuing_bytes)} bytes">${bytes(p.queuing_bytes)}</td><td class="n">${num(p.inflight)}</td></tr>`)}</tbody>
          </table>` : html`<p class="muted">No partition queues yet: they open with the first record.</p>`}
        </section>
        <section class="panel">
          <h2>Buffer</h2>
          ${dl(bufferLimits(c.buffer))}
          <h2>Kafka</h2>
          ${dl([
            ['connector', k.connector], ['topic', html`<code>${c.topic}</code>`], ['key', html`<code>${c.key}</code>`],
            ['value', html`<code>${c.value}</code>`], ['partition_strategy', c.partition_strategy + (c.partition_strategy === 'fixed' ? ` (${c.partition})` : '')],
            ['required_acks', c.required_acks], ['compression', c.compression], ['query_mode', c.query_mode],
            ['max_inflight', c.max_inflight], ['max_batch_bytes', c.max_batch_bytes], ['max_inflight_bytes', c.max_inflight_bytes], ['max_linger_time', c.max_linger_time],
            ...(c.mqtt_topic_filters?.length ? [['mqtt_topic_filters', c.mqtt_topic_filters.join(', ')]] : []),
          ])}
        </section>
      </div>`;
  });
}
