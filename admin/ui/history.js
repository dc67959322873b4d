// The counters of the last five minutes, sampled from /api/v1/status polls.
// The server keeps only a minute of rates, and charts need more; keeping
// them here costs the server nothing.

export const SPAN = 5 * 60 * 1000;

// counters flattens a status snapshot into the counters that get charted
// or labelled with a rate.
function counters(s) {
  const v = {
    'broker:in': s.broker.messages_received,
    'broker:out': s.broker.messages_sent,
  };
  for (const k of s.sinks || []) {
    v[`sink:${k.name}:success`] = k.counters.success;
    v[`sink:${k.name}:matched`] = k.counters.matched;
  }
  for (const k of s.sources || []) {
    v[`source:${k.name}:success`] = k.success;
    v[`source:${k.name}:received`] = k.received;
  }
  for (const r of s.rules || []) {
    v[`rule:${r.id}:matched`] = r.matched;
    v[`rule:${r.id}:passed`] = r.passed;
  }
  return v;
}

export class History {
  constructor() { this.samples = []; }

  push(snap) {
    const t = Date.parse(snap.time) || Date.now();
    const last = this.samples.at(-1);
    if (last && t <= last.t) return;
    this.samples.push({ t, v: counters(snap) });
    while (this.samples.length && this.samples[0].t < t - SPAN - 5000) this.samples.shift();
  }

  // rate is key's per-second rate over about the last window ms.
  rate(key, window = 5000) {
    const n = this.samples.at(-1);
    if (!n) return 0;
    const o = this.samples.find((s) => s.t >= n.t - window - 500 && s.v[key] !== undefined) ?? n;
    if (o === n || n.v[key] === undefined) return 0;
    // A replaced sink starts its counters at zero again: not a negative rate.
    return Math.max(0, n.v[key] - o.v[key]) / ((n.t - o.t) / 1000);
  }

  // series is key's rate between consecutive samples, as [time, rate] points.
  series(key) {
    const out = [];
    for (let i = 1; i < this.samples.length; i++) {
      const a = this.samples[i - 1];
      const b = this.samples[i];
      if (a.v[key] === undefined || b.v[key] === undefined) continue;
      out.push([b.t, Math.max(0, b.v[key] - a.v[key]) / ((b.t - a.t) / 1000)]);
    }
    return out;
  }

  // sumSeries adds up the series of several keys, sample by sample.
  sumSeries(keys) {
    const total = new Map();
    for (const k of keys) for (const [t, r] of this.series(k)) total.set(t, (total.get(t) || 0) + r);
    return [...total.entries()].sort((a, b) => a[0] - b[0]);
  }

  now() { return this.samples.at(-1)?.t ?? Date.now(); }
}
