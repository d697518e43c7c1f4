// lunar-node-hook.cjs: the Node.js side of liblunar_intercept's https support.
//
// The contract with the preload is lang/PROTOCOL.md; section numbers below refer to it.
//
// Node carries its own TLS (OpenSSL linked into the binary), so the preload only ever
// sees ciphertext from it and cannot divert https. This hook, injected by the preload
// through NODE_OPTIONS=--require, makes a qualifying tls.connect() speak plaintext
// HTTP/1.1 on a plain TCP socket to the origin's port, dressed up as a TLS socket for
// the program. The preload then treats those bytes like any diverted https request and
// keeps every routing decision. Whenever the bytes must reach the real origin, the
// preload moves the socket to a loopback relay run here, which makes the real TLS
// connection with the program's own settings (CA, verification, SNI...), so the
// program still gets its runtime's own certificate errors.
//
// Rules this file keeps:
// - It must never break the program: anything unexpected at start leaves Node untouched
//   (inert), and anything unexpected while deciding about a connection falls back to
//   Node's real tls.connect.
// - Start-up cost is one require('tls') (needed to patch it) and worker_threads; the
//   relay server and everything else is created at the first dressed connection only.
// - Nothing here keeps the process alive: the relay and its sockets are unref'ed.
'use strict';

const HOOK_ENV = 'LUNAR_NODE_HOOK';
const ENV_DATA_KEY = 'lunar-node-hook';
// Set on our tls.connect wrapper: a second copy of the hook (or a test) can tell Node's
// tls.connect is already ours and must not be wrapped twice.
const HOOKED = Symbol.for('lunar-node-hook');

const GREETING_MAX = 256;           // bytes, CRLF included (section 5)
const GREETING_TIMEOUT_MS = 5000;
const GREETING_RE = /^LUNAR-RELAY\/1 ([0-9a-f]{32}) (0|[1-9][0-9]{0,14})\r\n$/;

// What the tests (lang/node/test/hook_test.js) can look at; nothing here is API.
const state = {
  active: false,
  relayPort: 0,
  connections: () => registry.size,
};
// This file is meant as CommonJS, but a package.json saying "type": "module" in a
// directory above it makes Node evaluate it as an ES module (Node >= 20.19 require()s
// ES modules), where neither `require` nor `module` exist. Builtins then come from
// process.getBuiltinModule (Node >= 20.16); without either we stay inert rather than
// throw, since a throw here would stop the program before its first line.
const load = typeof require === 'function' ? require
  : (typeof process.getBuiltinModule === 'function' ? process.getBuiltinModule : null);
if (typeof module === 'object' && module !== null) module.exports = state;

// conn-id -> { socket, options }: the dressed sockets the relay may be asked to carry.
// Entries leave when their socket closes, so a long-lived process does not accumulate them.
const registry = new Map();
let lastConnId = 0;
let config = null;          // { pid, token, ports: Set<number>, length }
let originalConnect = null;

// ---- 2. start ---------------------------------------------------------------------

function parseHookValue(value) {
  if (typeof value !== 'string') return null;
  const f = value.split(' ');
  if (f.length !== 5 || f[0] !== 'v1') return null;
  const [, pid, token, ports, length] = f;
  if (!/^[1-9][0-9]{0,9}$/.test(pid) || !/^[0-9a-f]{32}$/.test(token)) return null;
  if (!/^[0-9]{1,5}(,[0-9]{1,5})*$/.test(ports)) return null;
  const portSet = new Set(ports.split(',').map(Number));
  for (const p of portSet) if (p < 1 || p > 65535) return null;
  if (length !== '-' && !/^(0|[1-9][0-9]{0,9})$/.test(length)) return null;
  return { pid: Number(pid), token, ports: portSet, length: length === '-' ? null : Number(length) };
}

// The preload appended ` --require "<dir>/lunar-node-hook.cjs"` (no space when the
// original was empty or unset). Cutting at `length` BYTES (not UTF-16 units: the
// preload counts bytes) gives the user's value back. We only cut when what would be
// removed is recognisably that --require: if something else rewrote NODE_OPTIONS in
// between, a blind cut could mangle the user's options, and leaving them is harmless.
function restoreNodeOptions(length) {
  const cur = process.env.NODE_OPTIONS;
  if (cur === undefined) return;
  const bytes = Buffer.from(cur, 'utf8');
  const cut = length === null ? 0 : length;
  if (bytes.length < cut) return;
  const tail = bytes.toString('latin1', cut);
  const ours = (cut === 0 ? /^--require[ =]/ : /^ --require[ =]/).test(tail) &&
               tail.includes('lunar-node-hook');
  if (!ours) return;
  if (length === null) delete process.env.NODE_OPTIONS;
  else process.env.NODE_OPTIONS = bytes.toString('utf8', 0, cut);
}

function start() {
  if (load === null) return;
  const wt = load('worker_threads');
  let value;
  if (wt.isMainThread) {
    value = process.env[HOOK_ENV];
    if (value === undefined) return;
    // Gone from the environment at once: the program and its children must see the
    // environment the user gave, and a child node without the preload must stay inert.
    delete process.env[HOOK_ENV];
    const parsed = parseHookValue(value);
    if (!parsed) return;
    restoreNodeOptions(parsed.length);
    // A child that inherited the variables without the preload: its connections would
    // carry a marker nobody takes out, so it must not dress anything.
    if (parsed.pid !== process.pid) return;
    // A worker's process.env is a copy made without the variable; environment data is
    // how it learns the token and ports (cloned into every worker started after this).
    wt.setEnvironmentData(ENV_DATA_KEY, value);
    config = parsed;
  } else {
    const parsed = parseHookValue(wt.getEnvironmentData(ENV_DATA_KEY));
    if (!parsed || parsed.pid !== process.pid) return;
    config = parsed;
  }
  install();
}

function install() {
  const tls = load('tls');
  if (tls.connect[HOOKED]) return;
  originalConnect = tls.connect;
  const connect = function connect(...args) {
    let plan = null;
    try {
      plan = planDress(args);
    } catch (_) {
      plan = null;  // an option we do not understand: real TLS, as without the hook
    }
    if (plan === null) return Reflect.apply(originalConnect, this, args);
    return dress(plan.options, plan.callback);
  };
  Object.defineProperty(connect, HOOKED, { value: true });
  // https, the http Agent and undici's fetch all look tls.connect up on the module
  // object at call time, so replacing the property is enough.
  tls.connect = connect;
  state.active = true;
}

// ---- 3. which calls are dressed ------------------------------------------------------

// Node's own normalisation (net._normalizeArgs + tls's normalizeConnectArgs), redone
// here on a copy: Node merges into the caller's object, and we must not change what
// the caller gave when we end up calling the original.
function normaliseArgs(args) {
  const last = args[args.length - 1];
  const callback = typeof last === 'function' ? last : undefined;
  const a0 = args[0];
  let options;
  if (a0 !== null && typeof a0 === 'object') {
    options = Object.assign({}, a0);
  } else if (typeof a0 === 'string' && !(Number(a0) >= 0)) {
    options = { path: a0 };  // a pipe name, as net's isPipeName decides
  } else {
    options = { port: a0 };
    if (args.length > 1 && typeof args[1] === 'string') options.host = args[1];
  }
  if (args[1] !== null && typeof args[1] === 'object') Object.assign(options, args[1]);
  else if (args[2] !== null && typeof args[2] === 'object') Object.assign(options, args[2]);
  return { options, callback };
}

function portOf(p) {
  if (typeof p === 'number' && Number.isInteger(p)) return p;
  if (typeof p === 'string' && /^[0-9]{1,5}$/.test(p)) return Number(p);
  return null;  // absent or odd: Node's own validation must have its say
}

// ALPN may be given as strings, Buffers, or one wire-format buffer (length-prefixed).
function alpnOffersHttp11(alpn) {
  if (alpn === undefined || alpn === null) return true;
  const names = [];
  if (Array.isArray(alpn)) {
    for (const a of alpn) {
      if (typeof a === 'string') names.push(a);
      else if (ArrayBuffer.isView(a)) names.push(Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('latin1'));
      else return false;
    }
  } else if (ArrayBuffer.isView(alpn)) {
    const b = Buffer.from(alpn.buffer, alpn.byteOffset, alpn.byteLength);
    for (let i = 0; i < b.length; i += 1 + b[i]) names.push(b.toString('latin1', i + 1, i + 1 + b[i]));
  } else {
    return false;
  }
  return names.includes('http/1.1');
}

function planDress(args) {
  if (relay.error) return null;  // no relay: dressing could not fail safe
  const { options, callback } = normaliseArgs(args);
  const port = portOf(options.port);
  // The port must be given: tls.connect has no default and throws without one, which
  // it should still do. (PROTOCOL.md's "default 443" comes from https' Agent, which
  // always passes the port.)
  if (port === null || !config.ports.has(port)) return null;
  if (options.socket != null || options.path != null) return null;
  // A client certificate or a PSK authenticates the program to the origin inside TLS;
  // the proxy cannot do that on its behalf.
  if (options.cert != null || options.key != null || options.pfx != null) return null;
  if (options.pskCallback != null) return null;
  if (!alpnOffersHttp11(options.ALPNProtocols)) return null;
  if (options.host != null && typeof options.host !== 'string') return null;
  options.port = port;
  return { options, callback };
}

// ---- 4. the dressed socket -------------------------------------------------------------

// Written by us as the socket's first write; _write swaps it for the marker line once
// the relay's port is known. Going through the stream keeps the program's writes
// queued behind it, in order, whatever they are and whenever they come.
const MARKER_SLOT = Buffer.alloc(0);
let DressedSocket = null;

function dressedSocketClass() {
  if (DressedSocket) return DressedSocket;
  const net = load('net');
  DressedSocket = class DressedSocket extends net.Socket {
    constructor(options, connId) {
      // What tls.connect hands to its TLSSocket's own socket.
      super({ allowHalfOpen: options.allowHalfOpen, highWaterMark: options.highWaterMark,
              onread: options.onread, signal: options.signal });
      this.lunarConnId = connId;
      const name = options.servername || options.host || 'localhost';
      this.lunarPeerName = name;
      this.lunarPeerIsIp = net.isIP(name) !== 0;
      // The TLSSocket surface programs and clients read (https, undici check these).
      this.encrypted = true;
      this.authorized = true;
      this.authorizationError = null;
      this.alpnProtocol = false;  // undici: anything but 'h2' means HTTP/1.1
      this.servername = options.servername || false;  // what Node reports for a client
      // TLS clients see 'connect' (TCP) and later 'secureConnect'; programs wait for the
      // latter (undici, the tls.connect callback). A tick later, so the program's own
      // 'connect' listeners run first, as with a real handshake.
      this.once('connect', () => process.nextTick(() => {
        if (!this.destroyed) this.emit('secureConnect');
      }));
    }

    _write(chunk, encoding, cb) {
      if (chunk === MARKER_SLOT) this.lunarWriteMarker(cb);
      else super._write(chunk, encoding, cb);
    }

    _writev(chunks, cb) {
      // Only reachable if the stream was corked before our first write, which we never
      // do; kept so the marker can never be skipped.
      if (chunks.length && chunks[0].chunk === MARKER_SLOT) {
        this.lunarWriteMarker((err) => {
          if (err) { cb(err); return; }
          if (chunks.length > 1) super._writev(chunks.slice(1), cb);
          else cb();
        });
      } else {
        super._writev(chunks, cb);
      }
    }

    // The marker goes out in a write call of its own (one uv_write: one write syscall),
    // the first on the socket; the stream holds everything else until it completes.
    lunarWriteMarker(cb) {
      whenRelayListening((err, port) => {
        if (this.destroyed) return;
        if (err) { this.destroy(err); return; }
        const line = `LUNAR-HOOK/1 ${config.token} ${port} ${this.lunarConnId}\r\n`;
        super._write(Buffer.from(line, 'latin1'), 'buffer', cb);
      });
    }

    getPeerCertificate() {
      const n = this.lunarPeerName;
      return { subject: { CN: n }, issuer: {},
               subjectaltname: (this.lunarPeerIsIp ? 'IP Address:' : 'DNS:') + n };
    }
    getCertificate() { return {}; }
    getPeerX509Certificate() { return undefined; }
    getX509Certificate() { return undefined; }
    getProtocol() { return 'TLSv1.3'; }
    getCipher() {
      return { name: 'TLS_AES_256_GCM_SHA384', standardName: 'TLS_AES_256_GCM_SHA384', version: 'TLSv1.3' };
    }
    getEphemeralKeyInfo() { return {}; }
    getSharedSigalgs() { return []; }
    getSession() { return undefined; }
    getTLSTicket() { return undefined; }
    getFinished() { return undefined; }
    getPeerFinished() { return undefined; }
    isSessionReused() { return false; }
    setSession() {}
    setServername(name) { this.servername = name; }
    setMaxSendFragment() { return true; }
    disableRenegotiation() {}
    enableTrace() {}
    renegotiate(options, callback) {
      if (typeof callback === 'function') process.nextTick(callback, null);
      return true;
    }
    // Keying material stands for a real session's secrets (channel binding, etc.);
    // inventing some would let a program believe in a binding that does not exist.
    exportKeyingMaterial() {
      throw new Error('lunar-node-hook: no TLS keying material on a connection diverted by Lunar');
    }
  };
  return DressedSocket;
}

// The options the relay's real tls.connect gets: the program's own, minus what belongs
// to the program's socket and cannot be shared with a second one (its read buffer, its
// abort signal, its idle timeout, its local port), with ALPN fixed to HTTP/1.1.
function relayOptionsOf(options) {
  const o = Object.assign({}, options, { ALPNProtocols: ['http/1.1'] });
  for (const k of ['socket', 'path', 'onread', 'signal', 'timeout', 'localPort']) delete o[k];
  return o;
}

const NET_CONNECT_KEYS = ['host', 'localAddress', 'localPort', 'family', 'hints', 'lookup',
                          'noDelay', 'keepAlive', 'keepAliveInitialDelay', 'autoSelectFamily',
                          'autoSelectFamilyAttemptTimeout'];

function dress(options, callback) {
  const Socket = dressedSocketClass();
  startRelay();
  const id = ++lastConnId;
  const socket = new Socket(options, id);
  if (callback) socket.once('secureConnect', callback);
  if (options.timeout) socket.setTimeout(options.timeout);
  const conn = { port: options.port };
  for (const k of NET_CONNECT_KEYS) if (options[k] !== undefined) conn[k] = options[k];
  socket.connect(conn);  // throws for bad arguments, as tls.connect would
  registry.set(id, { socket, options: relayOptionsOf(options) });
  socket.once('close', () => registry.delete(id));
  // After connect(): before it a net.Socket rejects writes; from here on writes queue
  // until the TCP connection is up, ours first.
  socket.write(MARKER_SLOT);
  return socket;
}

// ---- 5. the relay ----------------------------------------------------------------------

const relay = { server: null, port: 0, error: null, waiters: [] };

function whenRelayListening(cb) {
  if (relay.port) cb(null, relay.port);
  else if (relay.error) cb(relay.error);
  else relay.waiters.push(cb);
}

function settleRelay(err) {
  if (err) relay.error = err;
  const waiters = relay.waiters;
  relay.waiters = [];
  for (const w of waiters) w(relay.error, relay.port);
}

// listen(0, '127.0.0.1') learns its port only after a tick (Node looks the address up
// first, even an IP literal), hence the waiters. `exclusive`: in a cluster worker the
// port would otherwise be asked of the primary over IPC.
function startRelay() {
  if (relay.server) return;
  const net = load('net');
  const server = net.createServer({ allowHalfOpen: true }, onRelayConnection);
  relay.server = server;
  server.on('error', (err) => {
    if (!relay.port) settleRelay(err);
  });
  server.listen({ port: 0, host: '127.0.0.1', exclusive: true }, () => {
    relay.port = server.address().port;
    state.relayPort = relay.port;
    settleRelay(null);
  });
  server.unref();
}

function tokenMatches(token) {
  // Constant time: the token is what keeps other local processes out of the relay.
  const want = config.token;
  if (token.length !== want.length) return false;
  let diff = 0;
  for (let i = 0; i < want.length; i++) diff |= token.charCodeAt(i) ^ want.charCodeAt(i);
  return diff === 0;
}

function reset(sock) {
  if (typeof sock.resetAndDestroy === 'function') sock.resetAndDestroy();
  else sock.destroy();
}

function onRelayConnection(conn) {
  conn.unref();
  conn.on('error', () => {});  // every end of the connection is handled through 'close'
  let buf = null;
  const timer = setTimeout(() => conn.destroy(), GREETING_TIMEOUT_MS);
  timer.unref();
  const onData = (chunk) => {
    buf = buf ? Buffer.concat([buf, chunk]) : chunk;
    const eol = buf.indexOf('\r\n');
    if (eol < 0 || eol + 2 > GREETING_MAX) {
      if (eol >= 0 || buf.length >= GREETING_MAX) { clearTimeout(timer); reset(conn); }
      return;
    }
    conn.removeListener('data', onData);
    conn.removeListener('end', onEnd);
    conn.pause();
    clearTimeout(timer);
    const m = GREETING_RE.exec(buf.toString('latin1', 0, eol + 2));
    const entry = m && tokenMatches(m[1]) ? registry.get(Number(m[2])) : undefined;
    if (!entry || entry.socket.destroyed) { reset(conn); return; }
    bridge(conn, entry, buf.subarray(eol + 2));
  };
  const onEnd = () => { clearTimeout(timer); conn.destroy(); };
  conn.on('data', onData);
  conn.on('end', onEnd);
  conn.once('close', () => clearTimeout(timer));
}

// One accepted connection = one new, real TLS session to the origin with the program's
// options; the preload may move the same dressed socket here several times.
function bridge(conn, entry, rest) {
  let origin;
  try {
    origin = originalConnect(entry.options);
  } catch (err) {
    if (!entry.socket.destroyed) entry.socket.destroy(err);
    conn.destroy();
    return;
  }
  origin.unref();
  let secure = false;
  origin.once('secureConnect', () => { secure = true; });
  origin.on('error', (err) => {
    if (!secure) {
      // Certificate rejected, handshake or connect failed: the program gets this very
      // error object, as from its own tls.connect without the hook.
      if (!entry.socket.destroyed) entry.socket.destroy(err);
      conn.destroy();
    } else {
      reset(conn);  // e.g. a reset by the origin: abrupt on the program's side too
    }
  });
  conn.on('error', () => origin.destroy());
  // Either end closing ends the other; half-closes travel through pipe() ('end' -> end()),
  // and destroySoon() still lets already queued bytes out before the close.
  conn.once('close', () => { if (!origin.destroyed) origin.destroySoon(); });
  origin.once('close', () => { if (!conn.destroyed) conn.destroySoon(); });
  if (rest.length) origin.write(rest);
  conn.pipe(origin);
  origin.pipe(conn);
}

try {
  start();
} catch (_) {
  // Never let the hook break the program: whatever failed, Node stays as it was unless
  // tls.connect was already replaced (then install() completed and this is unreachable).
}
