// Overview: the figures an operator looks at first, refreshed every poll.

import { html, link, num, rate, since, statusBadge, sum } from './dom.js';
import { lineChart } from './chart.js';

// drops lists every non-zero drop counter with where it happened.
function drops(s) {
  const out = [];
  for (const k of s.sinks || []) {
    for (const [reason, n] of Object.entries(k.counters.dropped || {})) if (n) out.push({ where: `sink ${k.name}`, href: link('sinks', k.name), reason, n });
  }
  for (const k of s.sources || []) {
    for (const [reason, n] of Object.entries(k.dropped || {})) if (n) out.push({ where: `source ${k.name}`, href: link('sources', k.name), reason, n });
  }
  const broker = Object.entries(s.broker.dropped || {}).filter(([, n]) => n);
  for (const [reason, n] of broker) out.push({ where: 'MQTT broker', reason, n });
  if (!broker.length && s.broker.messages_dropped) out.push({ where: 'MQTT broker', reason: 'slow_subscriber', n: s.broker.messages_dropped });
  return out.sort((a, b) => b.n - a.n);
}

function card(label, value, sub, id) {
  return html`<div class="card" data-k="${id}"><div class="label">${label}</div><div class="value">${value}</div><div class="sub">${sub}</div></div>`;
}

// clusterPanel lists the nodes of the cluster as this node sees them.
function clusterPanel(c) {
  return html`<section class="panel" id="cluster">
    <h2>Cluster ${c.name} <small class="muted">this node ${c.node} · Kafka ${c.kafka} · ${num(c.routes)} routes to other nodes ·
      ${num(c.messages_out)} publishes out, ${num(c.messages_in)} in, ${num(c.messages_dropped)} dropped</small></h2>
    <table class="list" id="cluster-nodes">
      <thead><tr><th>node</th><th>status</th><th>MQTT</th><th>version</th><th class="n">connections</th><th class="n">routes</th><th>last heartbeat</th></tr></thead>
      <tbody>${(c.nodes || []).map((n) => html`<tr><td>${n.id}</td><td>${statusBadge(n.status)}</td><td>${n.address}</td><td>${n.version}</td>
        <td class="n">${num(n.connections)}</td><td class="n">${num(n.routes)}</td><td>${since(n.last_heartbeat)} ago</td></tr>`)}</tbody>
    </table>
  </section>`;
}

export function overviewPage() {
  return {
    title: 'Overview',
    live({ snap: s, hist }) {
      const sinks = s.sinks || [];
      const sources = s.sources || [];
      const kafkaOut = sum(sinks.map((k) => k.rates.success.last_5s));
      const kafkaIn = sum(sources.map((k) => k.rates.success.last_5s));
      const ds = drops(s);
      const byReason = {};
      for (const d of ds) byReason[d.reason] = (byReason[d.reason] || 0) + d.n;
      const chart = lineChart([
        { name: 'MQTT in', cls: 's1', points: hist.series('broker:messages_received') },
        { name: 'Kafka out', cls: 's2', points: hist.sumSeries(sinks.map((k) => `sink:${k.name}:success`)) },
        { name: 'Kafka in', cls: 's3', points: hist.sumSeries(sources.map((k) => `source:${k.name}:success`)) },
        { name: 'MQTT out', cls: 's4', points: hist.series('broker:messages_sent') },
      ], hist.now());
      return html`
        <h1>Overview <small class="muted">mqkafka ${s.version} · up ${since(s.started)} · MQTT on ${(s.listeners || []).join(', ') || '–'}</small></h1>
        <div class="cards">
          ${card('Connections', num(s.broker.connections), `${num(s.broker.subscriptions)} subscriptions`, 'connections')}
          ${card('Publishes in /s', rate(s.broker.rates.messages_received.last_5s), `${num(s.broker.messages_received)} received`, 'mqtt-in')}
          ${card('Publishes out /s', rate(s.broker.rates.messages_sent.last_5s), `${num(s.broker.messages_sent)} sent`, 'mqtt-out')}
          ${card('Kafka out records/s', rate(kafkaOut), `${num(sum(sinks.map((k) => k.counters.success)))} acknowledged`, 'kafka-out')}
          ${card('Kafka in records/s', rate(kafkaIn), `${num(sum(sources.map((k) => k.success)))} handed to MQTT`, 'kafka-in')}
          ${card('Dropped', num(sum(ds.map((d) => d.n))), Object.keys(byReason).length ? Object.entries(byReason).map(([r, n]) => `${r} ${num(n)}`).join(', ') : 'nothing dropped', 'dropped')}
        </div>
        <section class="panel">
          <h2>Throughput, last 5 minutes</h2>
          ${chart}
        </section>
        <div class="columns">
          <section class="panel">
            <h2>Connectors, sinks and sources</h2>
            <table class="list" id="status-table">
              <thead><tr><th>kind</th><th>name</th><th>status</th><th class="n">msgs/s</th></tr></thead>
              <tbody>
              ${(s.connectors || []).map((c) => html`<tr><td>connector</td><td><a href="#/connectors">${c.name}</a></td><td>${statusBadge(c.status)}</td><td class="n"></td></tr>`)}
              ${sinks.map((k) => html`<tr><td>sink</td><td><a href="${link('sinks', k.name)}">${k.name}</a></td><td>${statusBadge(k.status)}</td><td class="n">${rate(k.rates.success.last_5s)}</td></tr>`)}
              ${sources.map((k) => html`<tr><td>source</td><td><a href="${link('sources', k.name)}">${k.name}</a></td><td>${statusBadge(k.status)}</td><td class="n">${rate(k.rates.success.last_5s)}</td></tr>`)}
              </tbody>
            </table>
          </section>
          <section class="panel">
            <h2>Drops by reason</h2>
            ${ds.length ? html`<table class="list" id="drops">
              <thead><tr><th>reason</th><th>where</th><th class="n">count</th></tr></thead>
              <tbody>${ds.map((d) => html`<tr><td><code>${d.reason}</code></td><td>${d.href ? html`<a href="${d.href}">${d.where}</a>` : d.where}</td><td class="n">${num(d.n)}</td></tr>`)}</tbody>
            </table>` : html`<p class="muted" id="drops">Nothing dropped since the start.</p>`}
          </section>
        </div>
        ${s.cluster ? clusterPanel(s.cluster) : ''}`;
    },
  };
}
