// The admin API as the console uses it: JSON requests with the bearer token from
// sessionStorage, errors turned into ApiError from the API's {"error":{"code","message"}},
// and streaming readers (NDJSON lines, plain text) over fetch + ReadableStream.
// The token lives in sessionStorage only: never in a URL, a cookie or localStorage.

const TOKEN_KEY = 'caas.token';

/** The session's token. */
export const token = {
  get: () => sessionStorage.getItem(TOKEN_KEY),
  set: (t) => sessionStorage.setItem(TOKEN_KEY, t),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
};

/** A failed call: HTTP status (0: no answer), the API's stable code and its message. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
  }
}

let unauthorized = () => {};

/** Called when a request with the session's token gets 401 (the token was rotated or removed). */
export function onUnauthorized(fn) {
  unauthorized = fn;
}

/** The ApiError of a non-2xx answer, from its JSON error body when it has one. */
async function toError(res) {
  let code = `http_${res.status}`;
  let message = res.statusText || `HTTP ${res.status}`;
  try {
    const body = await res.json();
    if (body && body.error) {
      code = body.error.code || code;
      message = body.error.message || message;
    }
  } catch {
    // not JSON (a proxy's page): keep the status line
  }
  return new ApiError(res.status, code, message);
}

/**
 * One request. `opts`: method, body (sent as JSON), accept, signal, token (overrides the
 * session's, for the login check). Resolves to the Response when it is 2xx.
 */
export async function request(path, opts = {}) {
  const headers = { Accept: opts.accept || 'application/json' };
  const t = opts.token ?? token.get();
  if (t) headers.Authorization = `Bearer ${t}`;
  let body;
  if (opts.body !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(opts.body);
  }
  let res;
  try {
    res = await fetch(path, {
      method: opts.method || 'GET',
      headers,
      body,
      signal: opts.signal,
      cache: 'no-store',
      credentials: 'omit',
      redirect: 'error',
    });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, 'network', `the scheduler did not answer (${e.message})`);
  }
  if (!res.ok) {
    const err = await toError(res);
    if (res.status === 401 && opts.token === undefined) unauthorized(err);
    throw err;
  }
  return res;
}

/** GET (or `opts.method`) and parse the JSON answer; `null` for 204. */
export async function json(path, opts = {}) {
  const res = await request(path, opts);
  if (res.status === 204) return null;
  const text = await res.text();
  return text ? JSON.parse(text) : null;
}

/** A JSON call with a body: `send('PUT', path, {instances: 2})`. */
export function send(method, path, body, opts = {}) {
  return json(path, { ...opts, method, body });
}

/**
 * Reads a streamed answer chunk by chunk as text. `onOpen(res)` is called once the answer's
 * head is in; `onText(str)` with each decoded chunk. Resolves when the stream ends.
 */
export async function streamText(path, opts) {
  const res = await request(path, opts);
  if (opts.onOpen) opts.onOpen(res);
  if (!res.body) {
    opts.onText(await res.text());
    return;
  }
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      const s = decoder.decode(value, { stream: true });
      if (s) opts.onText(s);
    }
    const rest = decoder.decode();
    if (rest) opts.onText(rest);
  } finally {
    reader.releaseLock();
  }
}

/**
 * Reads an NDJSON answer: `onLine(obj)` for each complete line, parsed. A line that is not
 * JSON is skipped (reported to the console). Resolves when the stream ends.
 */
export async function streamLines(path, opts) {
  let buf = '';
  const emit = (line) => {
    if (!line.trim()) return;
    let obj;
    try {
      obj = JSON.parse(line);
    } catch {
      console.warn('skipped a line that is not JSON', line.slice(0, 200));
      return;
    }
    opts.onLine(obj);
  };
  await streamText(path, {
    ...opts,
    accept: opts.accept || 'application/x-ndjson',
    onText: (s) => {
      buf += s;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        emit(line);
      }
    },
  });
  emit(buf);
}

/**
 * A call answered with a deploy-style progress stream (`Accept: application/x-ndjson`):
 * `onProgress(line)` for each line; resolves with the final `done` line, rejects with an
 * ApiError for a `failed` line (or an error answer before the stream).
 */
export async function progress(method, path, body, opts = {}) {
  let last = null;
  await streamLines(path, {
    ...opts,
    method,
    body,
    onLine: (line) => {
      last = line;
      if (opts.onProgress) opts.onProgress(line);
    },
  });
  if (!last) throw new ApiError(0, 'stream', 'the answer ended without an outcome');
  if (last.event === 'failed') {
    const e = last.error || {};
    throw new ApiError(200, e.code || 'failed', e.message || 'failed');
  }
  if (last.event !== 'done') throw new ApiError(0, 'stream', 'the answer ended before its outcome');
  return last;
}

/** `encodeURIComponent`, for path segments. */
export const seg = encodeURIComponent;
