// Flows: every path a message can take, drawn as columns of nodes joined by
// edges labelled with their current rate, as EMQX's Flow Designer shows
// them (read-only). Every rate is the server's over the same last 5 s, so
// that the edges along one path agree.

// r5 is the 5-second rate of an entry's counter.
const r5 = (entry, counter) => entry.rates?.[counter]?.last_5s ?? 0;

import { get } from './api.js';
import { html, link, rate } from './dom.js';

const NODE_W = 200;
const NODE_H = 44;
const GAP_X = 84;
const GAP_Y = 14;
const HEAD = 34;
const MAX_LABEL = 25;

class Graph {
  constructor(columns) {
    this.columns = columns;
    this.nodes = new Map();
    this.edges = [];
  }

  node(id, col, props) {
    if (!this.nodes.has(id)) this.nodes.set(id, { id, col, ...props });
    return id;
  }

  edge(from, to, r, title) {
    if (!this.edges.some((e) => e.from === from && e.to === to)) this.edges.push({ from, to, rate: r, title });
  }
}

function republishTopic(cfg, ruleID, action) {
  const i = Number(action.split('#').pop());
  return cfg?.rules?.find((r) => r.id === ruleID)?.republish?.[i]?.topic;
}

// actions adds a rule's outgoing edges: to sinks and to republish topics.
function actions(g, r, ruleNode, col, cfg, passed, sinkCol) {
  for (const a of r.actions || []) {
    if (a.startsWith('kafka_producer:')) {
      const sink = a.slice('kafka_producer:'.length);
      g.edge(ruleNode, g.node(`sink:${sink}`, sinkCol, { type: 'sink', label: sink, href: link('sinks', sink) }), passed, 'passed');
    } else if (a.startsWith('republish:')) {
      const topic = republishTopic(cfg, r.id, a) ?? a;
      g.edge(ruleNode, g.node(`mqtt:${topic}`, col, { type: 'mqtt', label: topic, sub: 'republish' }), passed, 'passed');
    }
  }
}

function sinkTopics(g, s, sinkCol) {
  for (const k of s.sinks || []) {
    const id = g.node(`sink:${k.name}`, sinkCol, { type: 'sink', label: k.name, href: link('sinks', k.name) });
    Object.assign(g.nodes.get(id), { status: k.status, sub: `${k.config.buffer?.mode ?? ''} buffer` });
    const t = g.node(`kafka:${k.config.topic}`, sinkCol + 1, { type: 'kafka', label: k.config.topic });
    g.edge(id, t, r5(k, 'success'), 'acknowledged by Kafka');
  }
}

// egress: MQTT topic filters → rules → sinks → Kafka topics.
function egress(s, cfg) {
  const g = new Graph(['MQTT topic filters', 'Rules', 'Sinks', 'Kafka topics']);
  for (const r of s.rules || []) {
    if (!r.from?.length) continue;
    const shorthand = r.id.startsWith('sink:');
    const rn = g.node(`rule:${r.id}`, 1, {
      type: 'rule', label: r.id, href: shorthand ? link('sinks', r.id.slice(5)) : link('rules', r.id),
      sub: `${rate(r5(r, 'matched'))}/s matched`,
    });
    for (const f of r.from) {
      g.edge(g.node(`filter:${f}`, 0, { type: 'filter', label: f }), rn, r.from.length === 1 ? r5(r, 'matched') : null, 'matched');
    }
    actions(g, r, rn, 3, cfg, r5(r, 'passed'), 2);
  }
  sinkTopics(g, s, 2);
  return g;
}

// ingress: Kafka topics → sources → MQTT topics, and → rules reading the
// source → their sinks or republish topics.
function ingress(s, cfg) {
  const g = new Graph(['Kafka topics', 'Sources', 'Rules', 'MQTT topics, sinks']);
  for (const src of s.sources || []) {
    const c = src.config || {};
    const sn = g.node(`source:${src.name}`, 1, { type: 'source', label: src.name, status: src.status, href: link('sources', src.name) });
    const topics = new Set([...(Array.isArray(c.topic) ? c.topic : c.topic ? [c.topic] : []), ...(c.topic_mapping || []).map((m) => m.kafka_topic)]);
    const received = r5(src, 'received');
    for (const t of topics) g.edge(g.node(`kafka:${t}`, 0, { type: 'kafka', label: t }), sn, topics.size === 1 ? received : null, 'received');
    for (const m of c.topic_mapping || []) {
      const mn = g.node(`mqtt:${m.mqtt_topic}`, 3, { type: 'mqtt', label: m.mqtt_topic, sub: `QoS ${m.qos}${m.retain ? ', retained' : ''}` });
      g.edge(sn, mn, c.topic_mapping.length === 1 ? r5(src, 'success') : null, 'published to MQTT');
    }
  }
  for (const r of s.rules || []) {
    if (!r.sources?.length) continue;
    const rn = g.node(`rule:${r.id}`, 2, { type: 'rule', label: r.id, href: link('rules', r.id), sub: `${rate(r5(r, 'matched'))}/s matched` });
    for (const name of r.sources) {
      const sn = g.node(`source:${name}`, 1, { type: 'source', label: name, href: link('sources', name) });
      g.edge(sn, rn, r.sources.length === 1 ? r5(r, 'matched') : null, 'matched');
    }
    actions(g, r, rn, 3, cfg, r5(r, 'passed'), 3);
  }
  return g;
}

// layout places nodes in their columns, ordering each column by where its
// predecessors are so that edges cross as little as a single pass allows.
// An edge that spans columns gets a waypoint in each column it crosses,
// placed like a node, so that it runs between the nodes and not through them.
function layout(g) {
  const cols = g.columns.map(() => []);
  for (const n of g.nodes.values()) cols[n.col].push(n);
  const links = [];
  for (const e of g.edges) {
    e.via = [];
    let prev = g.nodes.get(e.from);
    for (let c = prev.col + 1; c < g.nodes.get(e.to).col; c++) {
      const w = { id: `${e.from}>${e.to}@${c}`, col: c, waypoint: true };
      cols[c].push(w);
      e.via.push(w);
      links.push([prev, w]);
      prev = w;
    }
    links.push([prev, g.nodes.get(e.to)]);
  }
  const rows = Math.max(1, ...cols.map((c) => c.length));
  const height = HEAD + rows * (NODE_H + GAP_Y);
  cols.forEach((col, ci) => {
    if (ci > 0) {
      const key = (n) => {
        const ys = links.filter(([, to]) => to === n).map(([from]) => from.y);
        return ys.length ? ys.reduce((a, b) => a + b, 0) / ys.length : Infinity;
      };
      const keys = new Map(col.map((n) => [n, key(n)]));
      col.sort((a, b) => (keys.get(a) === keys.get(b) ? 0 : keys.get(a) - keys.get(b)));
    }
    const top = HEAD + ((rows - col.length) * (NODE_H + GAP_Y)) / 2;
    col.forEach((n, i) => {
      n.x = 10 + ci * (NODE_W + GAP_X);
      n.y = top + i * (NODE_H + GAP_Y);
    });
  });
  return { width: 20 + g.columns.length * NODE_W + (g.columns.length - 1) * GAP_X, height };
}

function short(s) {
  return s.length > MAX_LABEL ? `${s.slice(0, MAX_LABEL - 1)}…` : s;
}

function drawNode(n) {
  const body = html`<g class="node ${n.type} ${n.status || ''}" transform="translate(${n.x},${n.y})">
    <title>${n.type}: ${n.label}${n.status ? ` (${n.status})` : ''}</title>
    <rect width="${NODE_W}" height="${NODE_H}" rx="8"/>
    <rect class="stripe" width="6" height="${NODE_H}" rx="3"/>
    ${n.status ? html`<circle class="dot" cx="${NODE_W - 12}" cy="12" r="5"/>` : ''}
    <text class="label" x="14" y="${n.sub ? 19 : 27}">${short(n.label)}</text>
    ${n.sub ? html`<text class="sub" x="14" y="35">${n.sub}</text>` : ''}
  </g>`;
  return n.href ? html`<a href="${n.href}">${body}</a>` : body;
}

function drawEdge(g, e) {
  const a = g.nodes.get(e.from);
  const b = g.nodes.get(e.to);
  // Points in pairs: where the edge leaves a column and where it enters the next.
  const pts = [[a.x + NODE_W, a.y + NODE_H / 2]];
  for (const w of e.via) pts.push([w.x, w.y + NODE_H / 2], [w.x + NODE_W, w.y + NODE_H / 2]);
  pts.push([b.x, b.y + NODE_H / 2]);
  let d = `M${pts[0]}`;
  for (let i = 0; i + 1 < pts.length; i += 2) {
    const [[x1, y1], [x2, y2]] = [pts[i], pts[i + 1]];
    const dx = (x2 - x1) / 2;
    d += ` C${x1 + dx},${y1} ${x2 - dx},${y2} ${x2},${y2}`;
    if (i + 2 < pts.length) d += ` L${pts[i + 2]}`;
  }
  const label = e.rate === null || e.rate === undefined ? '' : `${rate(e.rate)}/s`;
  const [[x1, y1], [x2, y2]] = pts;
  return html`<g class="edge ${e.rate > 0 ? 'on' : ''}">
    <title>${a.label} → ${b.label}${e.title ? `: ${label} ${e.title}` : ''}</title>
    <path d="${d}"/>
    ${label ? html`<text class="rate" x="${(x1 + x2) / 2}" y="${(y1 + y2) / 2}" dy="-0.4em" text-anchor="middle">${label}</text>` : ''}
  </g>`;
}

function draw(g, id, empty) {
  if (!g.nodes.size) return html`<p class="muted">${empty}</p>`;
  const { width, height } = layout(g);
  const heads = g.columns.map((c, i) => html`<text class="colhead" x="${10 + i * (NODE_W + GAP_X)}" y="16">${c}</text>`);
  return html`<svg id="${id}" class="flow" viewBox="0 0 ${width} ${height}" width="${width}" role="img" aria-label="${g.columns.join(' → ')}">
    ${heads}
    ${g.edges.map((e) => drawEdge(g, e))}
    ${[...g.nodes.values()].map(drawNode)}
  </svg>`;
}

export function flowsPage() {
  let cfg = null;
  const load = () => get('/api/v1/config').then((c) => { cfg = c; }, () => {});
  let loader = 0;
  return {
    title: 'Flows',
    mount() {
      load();
      // Republish topics come from the configuration, which changes rarely.
      loader = setInterval(load, 10000);
    },
    destroy() { clearInterval(loader); },
    live({ snap }) {
      return html`<h1>Flows <small class="muted">rates are messages per second over the last 5 s</small></h1>
        <section class="panel flow-panel">
          <h2>MQTT → Kafka</h2>
          <div class="scroll">${draw(egress(snap, cfg), 'flow-egress', 'No rule reads MQTT topics, and there are no sinks.')}</div>
        </section>
        <section class="panel flow-panel">
          <h2>Kafka → MQTT</h2>
          <div class="scroll">${draw(ingress(snap, cfg), 'flow-ingress', 'No sources are configured.')}</div>
        </section>
        <p class="legend">
          <span class="lg filter">MQTT topic filter</span><span class="lg rule">rule</span><span class="lg sink">sink</span>
          <span class="lg kafka">Kafka topic</span><span class="lg source">source</span><span class="lg mqtt">MQTT topic</span>
          <span class="muted">A dashed, moving edge carries messages now. Click a rule, sink or source for its page.</span>
        </p>`;
    },
  };
}
