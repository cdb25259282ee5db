// api.js — the dashboard's only contact with the daemon: JSON calls with the bearer token, and
// the live stats stream.
//
// The stream is Server-Sent Events, but EventSource cannot send an Authorization header (and
// the token must never go into the URL), so LiveStream reads it with fetch() and a
// ReadableStream and parses the event lines itself (the WHATWG "event stream" rules: data,
// event, id, retry fields; comments; CR, LF or CRLF line ends). After an error or a closed
// stream it reconnects with exponential backoff and jitter, sending Last-Event-ID so the
// server skips a snapshot the page already shows. A stream that stays silent longer than
// three heartbeats is treated as dead and reconnected.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code);
    this.status = status; // HTTP status, 0 for a network failure
    this.code = code; // the server's error code ("out_of_scope", ...) or "network"
    this.serverMessage = message || '';
  }
}

async function errorOf(res) {
  let text = '';
  try {
    text = await res.text();
  } catch (e) {
    // body unreadable: the status says enough
  }
  let code = 'http_' + res.status;
  let message = '';
  try {
    const data = JSON.parse(text);
    if (data && data.error) {
      code = data.error.code || code;
      message = data.error.message || '';
    }
  } catch (e) {
    message = text.slice(0, 200);
  }
  return new ApiError(res.status, code, message);
}

/** A client bound to a token. Every call resolves to parsed JSON or rejects with ApiError. */
export function makeApi(token) {
  async function call(method, path, body) {
    const headers = { Authorization: 'Bearer ' + token, Accept: 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let res;
    try {
      res = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: 'no-store',
        credentials: 'omit',
      });
    } catch (e) {
      throw new ApiError(0, 'network', String((e && e.message) || e));
    }
    if (!res.ok) throw await errorOf(res);
    try {
      return await res.json();
    } catch (e) {
      throw new ApiError(res.status, 'bad_json', 'The answer was not JSON.');
    }
  }
  return {
    get: (path) => call('GET', path),
    post: (path, body) => call('POST', path, body === undefined ? {} : body),
  };
}

/** Builds "path?k=v&..." leaving out empty values. */
export function withQuery(path, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, v);
  const s = q.toString();
  return s ? path + '?' + s : path;
}

const sleep = (ms, signal) =>
  new Promise((resolve) => {
    const id = setTimeout(resolve, ms);
    if (signal) signal.addEventListener('abort', () => { clearTimeout(id); resolve(); }, { once: true });
  });

/**
 * The live stream of one URL. onEvent(type, data, id) for each dispatched event;
 * onState(state, info): 'connecting', 'live', 'retry' (info: seconds), 'failed' (info: ApiError,
 * for answers a retry cannot fix: 400, 401, 403, 404).
 */
export class LiveStream {
  constructor(url, token, onEvent, onState) {
    this.url = url;
    this.token = token;
    this.onEvent = onEvent;
    this.onState = onState;
    this.lastId = '';
    this.retryMs = 1000;
    this.stopped = true;
    this.stop_ = new AbortController();
  }

  start() {
    this.stopped = false;
    this.run();
  }

  stop() {
    this.stopped = true;
    this.stop_.abort();
    if (this.ctrl) this.ctrl.abort();
  }

  async run() {
    let failures = 0;
    while (!this.stopped) {
      this.onState('connecting');
      let opened = false;
      try {
        opened = await this.once();
      } catch (e) {
        if (e instanceof ApiError && [400, 401, 403, 404].includes(e.status)) {
          if (!this.stopped) this.onState('failed', e);
          return;
        }
        // network trouble, 5xx, a dead stream: retry below
      }
      if (this.stopped) return;
      failures = opened ? 1 : failures + 1;
      const base = Math.min(this.retryMs * 2 ** (failures - 1), 30000);
      const wait = Math.round(base * (0.5 + Math.random() * 0.5));
      this.onState('retry', Math.max(1, Math.round(wait / 1000)));
      await sleep(wait, this.stop_.signal);
    }
  }

  /** One connection until it ends; true if it was open (200) at some point. */
  async once() {
    this.ctrl = new AbortController();
    const headers = { Authorization: 'Bearer ' + this.token, Accept: 'text/event-stream' };
    if (this.lastId) headers['Last-Event-ID'] = this.lastId;
    let res;
    try {
      res = await fetch(this.url, { headers, cache: 'no-store', credentials: 'omit', signal: this.ctrl.signal });
    } catch (e) {
      throw new ApiError(0, 'network', String((e && e.message) || e));
    }
    if (!res.ok) throw await errorOf(res);
    if (!res.body) throw new ApiError(0, 'network', 'no stream body');
    this.onState('live');
    const reader = res.body.getReader();
    const decoder = new TextDecoder('utf-8');
    let buf = '';
    let data = [];
    let type = '';
    let silence = null;
    const arm = () => {
      clearTimeout(silence);
      silence = setTimeout(() => this.ctrl.abort(), 50000); // heartbeats come every 15 s
    };
    arm();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        arm();
        buf += decoder.decode(value, { stream: true });
        // complete lines only; a CR at the very end may be the first half of CRLF
        for (;;) {
          const m = /\r\n|\r|\n/.exec(buf);
          if (!m || (m[0] === '\r' && m.index === buf.length - 1)) break;
          const line = buf.slice(0, m.index);
          buf = buf.slice(m.index + m[0].length);
          if (line === '') {
            if (data.length) {
              let parsed = null;
              try {
                parsed = JSON.parse(data.join('\n'));
              } catch (e) {
                parsed = null;
              }
              if (parsed !== null) this.onEvent(type || 'message', parsed, this.lastId);
            }
            data = [];
            type = '';
            continue;
          }
          if (line[0] === ':') continue; // comment (heartbeat)
          const colon = line.indexOf(':');
          const field = colon < 0 ? line : line.slice(0, colon);
          let val = colon < 0 ? '' : line.slice(colon + 1);
          if (val[0] === ' ') val = val.slice(1);
          if (field === 'data') data.push(val);
          else if (field === 'event') type = val;
          else if (field === 'id' && !val.includes('\0')) this.lastId = val;
          else if (field === 'retry' && /^\d+$/.test(val)) this.retryMs = Math.max(500, Number(val));
        }
      }
    } catch (e) {
      // aborted (stop, or silence) or the connection broke: the caller decides
    } finally {
      clearTimeout(silence);
      try {
        reader.releaseLock();
      } catch (e) {
        // already released
      }
    }
    return true;
  }
}
