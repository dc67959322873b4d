// The counters of the last five minutes, for the charts: the server's
// one-second samples (/api/v1/rates) when the page loads, then those of
// each /api/v1/status poll.

export const SPAN = 5 * 60 * 1000;

// counters flattens a status snapshot into the counters that get charted,
// keyed as /api/v1/rates keys them.
function counters(s) {
  const v = {
    'broker:messages_received': s.broker.messages_received,
    'broker:messages_sent': s.broker.messages_sent,
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
    this.add(Date.parse(snap.time) || Date.now(), counters(snap));
  }

  // load takes the server's history, {times_unix_ms, counters: {key: [...]}},
  // before any poll's sample.
  load(h) {
    h.times_unix_ms.forEach((t, i) => {
      const v = {};
      for (const [k, col] of Object.entries(h.counters)) if (col[i] !== null) v[k] = col[i];
      this.add(t, v);
    });
  }

  add(t, v) {
    const last = this.samples.at(-1);
    if (last && t <= last.t) return;
    this.samples.push({ t, v });
    while (this.samples.length && this.samples[0].t < t - SPAN - 5000) this.samples.shift();
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
