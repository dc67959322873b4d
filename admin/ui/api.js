// The REST API with the token from this tab's session. The token lives in
// sessionStorage (gone when the tab closes) and travels only in the
// Authorization header, never in a URL.

const KEY = 'mqkafka.token';

export const token = {
  get: () => sessionStorage.getItem(KEY) ?? '',
  set: (t) => sessionStorage.setItem(KEY, t),
  clear: () => sessionStorage.removeItem(KEY),
};

// ApiError is a non-2xx answer: the API's {code, message, problems}.
export class ApiError extends Error {
  constructor(status, body) {
    super(body?.message || `HTTP ${status}`);
    this.status = status;
    this.code = body?.code || '';
    this.problems = body?.problems || [];
  }
}

// onUnauthorized is called on any 401, so that every page returns to the
// login form the same way.
let unauthorized = () => {};
export function onUnauthorized(fn) { unauthorized = fn; }

export async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  const t = token.get();
  if (t) headers.Authorization = `Bearer ${t}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: 'no-store',
    credentials: 'omit',
  });
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = { message: text }; }
  if (res.status === 401) {
    unauthorized();
    throw new ApiError(401, data);
  }
  if (!res.ok) throw new ApiError(res.status, data);
  return data;
}

export const get = (path) => api('GET', path);

// entryPath is the REST path of one entry of kind.
export const entryPath = (kind, name) => `/api/v1/${kind}/${encodeURIComponent(name)}`;

// testConnector runs the API's connectivity test and reports into show.
export async function testConnector(name, show) {
  show({ state: 'running', text: 'testing…' });
  try {
    const r = await api('POST', `${entryPath('connectors', name)}/test`);
    show({ state: 'ok', text: r.status });
  } catch (e) {
    if (e.status !== 401) show({ state: 'failed', text: e.message });
  }
}
