// The dashboard: login, hash routing and the status poll that every page
// reads. Live pages re-render from the latest /api/v1/status each poll; form
// pages mount once and are left alone so typing is never interrupted.

import { ApiError, get, onUnauthorized, token } from './api.js';
import { html, patch } from './dom.js';
import { History } from './history.js';
import { overviewPage } from './overview.js';
import { flowsPage } from './flows.js';
import { sinksPage, sinkPage } from './sinks.js';
import { sourcesPage, sourcePage } from './sources.js';
import { connectorsPage } from './connectors.js';
import { rulesPage, rulePage } from './rules.js';
import { entryFormPage } from './forms.js';

const POLL_MS = 1500;

const view = document.getElementById('view');
const nav = document.getElementById('nav');
const live = document.getElementById('live');
const logout = document.getElementById('logout');

const ctx = {
  snap: null,
  hist: new History(),
  go: (hash) => { location.hash = hash; },
  flash,
  // refresh re-renders the current page from the last status, e.g. after
  // a page changed its own state.
  refresh: () => update(),
};

let page = null;
// pageEl is new for every page, so the listeners a page adds go with it.
let pageEl = null;
let timer = 0;
let polling = false;

function pageFor(parts) {
  const [a, b, c] = parts;
  switch (a) {
    case undefined: return overviewPage();
    case 'flows': return flowsPage();
    case 'rules': return b === undefined ? rulesPage() : rulePage(b);
    case 'sinks':
      if (b === undefined) return sinksPage();
      return c === 'edit' ? entryFormPage('sinks', b) : sinkPage(b);
    case 'sources':
      if (b === undefined) return sourcesPage();
      return c === 'edit' ? entryFormPage('sources', b) : sourcePage(b);
    case 'connectors': return b === undefined ? connectorsPage() : entryFormPage('connectors', b);
    case 'new': return b === 'rules' ? rulePage(null) : entryFormPage(b, null);
    default: return null;
  }
}

function render() {
  if (!polling) return;
  const parts = location.hash.replace(/^#\/?/, '').split('/').filter(Boolean).map(decodeURIComponent);
  page?.destroy?.();
  page = pageFor(parts) ?? { title: 'Not found', live: () => html`<h1>Not found</h1><p><a href="#/">Overview</a></p>` };
  document.title = `${page.title} · mqkafka`;
  for (const a of nav.querySelectorAll('a')) {
    a.classList.toggle('active', a.dataset.nav === (parts[0] === 'new' ? parts[1] : parts[0] ?? 'overview'));
  }
  pageEl = document.createElement('div');
  pageEl.className = `page page-${parts[0] ?? 'overview'}`;
  view.replaceChildren(pageEl);
  if (page.mount) {
    Promise.resolve(page.mount(pageEl, ctx)).catch(showError);
  }
  update();
}

function update() {
  if (!page || !ctx.snap) return;
  try {
    if (page.live) patch(pageEl, page.live(ctx));
    page.update?.(ctx);
  } catch (e) {
    showError(e);
  }
}

function showError(e) {
  if (e instanceof ApiError && e.status === 401) return;
  console.warn(e);
  flash(e.message || String(e), 'error');
}

async function poll() {
  clearTimeout(timer);
  if (!polling) return;
  try {
    const snap = await get('/api/v1/status');
    ctx.snap = snap;
    ctx.hist.push(snap);
    live.textContent = 'live';
    live.className = 'live ok';
    update();
  } catch (e) {
    if (e.status === 401) return;
    live.textContent = 'no answer';
    live.className = 'live down';
    live.title = e.message;
  }
  if (polling) timer = setTimeout(poll, POLL_MS);
}

async function start() {
  polling = true;
  nav.hidden = false;
  live.hidden = false;
  logout.hidden = false;
  // The server's last five minutes fill the charts at once after a reload.
  try {
    ctx.hist.load(await get('/api/v1/rates'));
  } catch (e) {
    if (e.status === 401) return;
    showError(e);
  }
  render();
  poll();
}

function showLogin(message) {
  polling = false;
  clearTimeout(timer);
  page?.destroy?.();
  page = null;
  ctx.snap = null;
  nav.hidden = true;
  live.hidden = true;
  logout.hidden = true;
  document.title = 'Log in · mqkafka';
  pageEl = null;
  view.replaceChildren(document.getElementById('login-tpl').content.cloneNode(true));
  const err = document.getElementById('login-error');
  if (message) {
    err.textContent = message;
    err.hidden = false;
  }
  const form = document.getElementById('login-form');
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    token.set(form.elements.token.value);
    try {
      await get('/api/v1/status');
      start();
    } catch (e) {
      if (e.status !== 401) {
        err.textContent = `The admin API did not answer: ${e.message}`;
        err.hidden = false;
      }
    }
  });
  document.getElementById('token').focus();
}

let flashTimer = 0;
function flash(message, kind = 'ok') {
  let el = document.getElementById('flash');
  if (!el) {
    el = document.createElement('div');
    el.id = 'flash';
    el.setAttribute('role', 'status');
    document.body.append(el);
  }
  el.textContent = message;
  el.className = kind;
  clearTimeout(flashTimer);
  flashTimer = setTimeout(() => el.remove(), kind === 'error' ? 8000 : 3000);
}

onUnauthorized(() => {
  const had = token.get() !== '';
  token.clear();
  showLogin(had ? 'That token was not accepted. Log in again.' : '');
});

logout.addEventListener('click', () => {
  token.clear();
  showLogin('');
});

window.addEventListener('hashchange', render);

// With no token stored, the first call tells whether the API wants one at
// all ([admin] token may be unset on a loopback listener).
get('/api/v1/status').then(start, (e) => {
  if (e.status !== 401) showLogin(`The admin API did not answer: ${e.message}`);
});
