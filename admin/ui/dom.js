// Small DOM helpers: escaped HTML templates, an in-place DOM patch for the
// live pages, and number formatting.

class Raw {
  constructor(s) { this.s = s; }
  toString() { return this.s; }
}

// raw marks a string as HTML that must not be escaped again.
export const raw = (s) => new Raw(String(s));

export function esc(v) {
  return String(v ?? '').replace(/[&<>"']/g, (c) =>
    ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}

function part(v) {
  if (v instanceof Raw) return v.s;
  if (Array.isArray(v)) return v.map(part).join('');
  if (v === false || v === null || v === undefined) return '';
  return esc(v);
}

// html is a template tag: every interpolated value is escaped unless it is
// raw() or another html`` result, so names from the config cannot inject markup.
export function html(strings, ...vals) {
  let out = strings[0];
  vals.forEach((v, i) => { out += part(v) + strings[i + 1]; });
  return new Raw(out);
}

// patch replaces el's content by markup, reusing the nodes that stay, so a
// page refreshed every second keeps its scroll position, focus and any link
// the user is pressing.
export function patch(el, markup) {
  const next = document.createElement(el.tagName);
  next.innerHTML = String(markup);
  morphChildren(el, next);
}

function morphChildren(from, to) {
  const have = [...from.childNodes];
  const want = [...to.childNodes];
  want.forEach((w, i) => {
    const h = have[i];
    if (!h) {
      from.appendChild(w);
    } else if (h.nodeType !== w.nodeType || h.nodeName !== w.nodeName) {
      from.replaceChild(w, h);
    } else if (h.nodeType === Node.ELEMENT_NODE) {
      morphAttributes(h, w);
      morphChildren(h, w);
    } else if (h.nodeValue !== w.nodeValue) {
      h.nodeValue = w.nodeValue;
    }
  });
  for (let i = want.length; i < have.length; i++) have[i].remove();
}

function morphAttributes(h, w) {
  for (const a of [...h.attributes]) if (!w.hasAttribute(a.name)) h.removeAttribute(a.name);
  for (const a of [...w.attributes]) if (h.getAttribute(a.name) !== a.value) h.setAttribute(a.name, a.value);
}

export function num(n) {
  if (n === undefined || n === null || Number.isNaN(n)) return '–';
  return Math.round(n).toLocaleString('en-US');
}

// rate formats messages per second with sensible precision.
export function rate(r) {
  if (!r) return '0';
  if (r >= 1000) return (r / 1000).toFixed(r >= 10000 ? 0 : 1) + 'k';
  if (r >= 10) return r.toFixed(0);
  return r.toFixed(1);
}

export function bytes(n) {
  if (!n) return '0 B';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(n >= 100 ? 0 : 1) : n) + ' ' + units[i];
}

// duration formats Go's nanoseconds as Go writes them ("5s", "1m30s", "100ms").
export function duration(ns) {
  if (!ns) return '0s';
  const ms = ns / 1e6;
  if (ms < 1000) return `${+ms.toFixed(3)}ms`;
  let s = Math.round(ms / 1000);
  const h = Math.floor(s / 3600); s %= 3600;
  const m = Math.floor(s / 60); s %= 60;
  return (h ? `${h}h` : '') + (m ? `${m}m` : '') + (s || (!h && !m) ? `${s}s` : '');
}

export function since(iso) {
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  return duration(s * 1e9);
}

export function sum(values) {
  return values.reduce((a, b) => a + (b || 0), 0);
}

export function statusBadge(status) {
  return html`<span class="badge ${status || 'unknown'}">${status || 'unknown'}</span>`;
}

// link is the hash route of a page; names are encoded so any name works.
export function link(...parts) {
  return '#/' + parts.map(encodeURIComponent).join('/');
}
