// A line chart as inline SVG: time on x (the last five minutes), rate on y.

import { html, raw, rate } from './dom.js';
import { SPAN } from './history.js';

const H = 200;
const PAD = { l: 44, r: 12, t: 20, b: 22 };

// niceMax rounds up, with a little headroom so that a steady rate is not
// drawn on the top edge, to a number whose half is readable too.
function niceMax(v) {
  if (v <= 0) return 1;
  v *= 1.05;
  const p = 10 ** Math.floor(Math.log10(v));
  return [1, 2, 3, 4, 5, 6, 8, 10].map((m) => m * p).find((m) => m >= v);
}

// lineChart draws series [{name, cls, points: [[t, v], ...]}] ending at now.
export function lineChart(series, now, label = 'msgs/s') {
  // The chart is drawn about as wide as it is shown, so that its text keeps
  // the page's size instead of scaling with the window.
  const W = Math.max(560, Math.min(1400, document.documentElement.clientWidth - 90));
  const x0 = now - SPAN;
  const max = niceMax(Math.max(0, ...series.flatMap((s) => s.points.map((p) => p[1]))));
  const iw = W - PAD.l - PAD.r;
  const ih = H - PAD.t - PAD.b;
  const sx = (t) => PAD.l + ((t - x0) / SPAN) * iw;
  const sy = (v) => PAD.t + ih - (v / max) * ih;

  const grid = [0, 0.5, 1].map((f) => {
    const y = sy(max * f).toFixed(1);
    return html`<line class="grid" x1="${PAD.l}" x2="${W - PAD.r}" y1="${y}" y2="${y}"/>
      <text class="axis" x="${PAD.l - 6}" y="${y}" dy="0.32em" text-anchor="end">${rate(max * f)}</text>`;
  });
  const ticks = [5, 4, 3, 2, 1, 0].map((m) => {
    const x = sx(now - m * 60000).toFixed(1);
    return html`<text class="axis" x="${x}" y="${H - 6}" text-anchor="middle">${m ? `−${m}m` : 'now'}</text>`;
  });
  const lines = series.map((s) => {
    const pts = s.points.filter((p) => p[0] >= x0).map((p) => `${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`);
    return pts.length > 1 ? html`<polyline class="line ${s.cls}" points="${pts.join(' ')}"/>` : '';
  });
  const legend = series.map((s) => {
    const last = s.points.at(-1)?.[1] ?? 0;
    return html`<span class="key ${s.cls}"><i></i>${s.name} <b>${rate(last)}</b></span>`;
  });
  return html`<figure class="chart">
    <svg viewBox="0 0 ${W} ${H}" role="img" aria-label="${label}, last 5 minutes">
      ${grid}${ticks}
      <text class="axis" x="${PAD.l + 4}" y="12">${label}</text>
      ${lines}
    </svg>
    <figcaption>${legend}${series.every((s) => s.points.length < 2) ? raw('<span class="muted">collecting samples…</span>') : ''}</figcaption>
  </figure>`;
}
