// Standalone test of lang/node/lunar-node-hook.cjs, without the preload.
//
//   node lang/node/test/hook_test.js        (exit 0 on success; one line per check)
//
// This process plays the preload's part (lang/PROTOCOL.md sections 1 and 6): it sets
// LUNAR_NODE_HOOK with its own pid, requires the hook, and runs a "front" server on
// 127.0.0.1 whose port is the one intercepted port. A dressed connection to that port
// reaches the front, which checks the marker line, then per request either answers as
// the proxy would (plain HTTP), or moves the request to the hook's relay (greeting +
// the request bytes) and copies the answer back, as the failsafe does. A connection
// that starts with a TLS record (the relay's own connection to the origin, or a
// connection the hook left alone) is passed untouched to the real TLS origin, a
// tls/https server with a self-signed certificate made with openssl at start.
//
// Nothing leaves 127.0.0.1; every server and child process is closed by this script.
'use strict';

const assert = require('assert');
const { execFileSync, spawn } = require('child_process');
const crypto = require('crypto');
const fs = require('fs');
const https = require('https');
const net = require('net');
const os = require('os');
const path = require('path');
const tls = require('tls');
const { Worker } = require('worker_threads');

const HOOK = path.resolve(__dirname, '..', 'lunar-node-hook.cjs');
const HOOKED = Symbol.for('lunar-node-hook');
const TOKEN = crypto.randomBytes(16).toString('hex');
// Non-ASCII on purpose: the preload counts NODE_OPTIONS in bytes, JS strings in UTF-16.
const USER_NODE_OPTIONS = '--max-old-space-size=100 --title="lünar ☾"';
const MARKER_RE = /^LUNAR-HOOK\/1 ([0-9a-f]{32}) ([1-9][0-9]{0,4}) (0|[1-9][0-9]*)\r\n$/;

let failures = 0;
function ok(what) { process.stdout.write(`ok - ${what}\n`); }
async function check(what, fn) {
  try {
    await fn();
    ok(what);
  } catch (e) {
    failures++;
    process.stdout.write(`FAIL - ${what}\n  ${(e && e.stack || String(e)).replace(/\n/g, '\n  ')}\n`);
  }
}
const sha256 = (b) => crypto.createHash('sha256').update(b).digest('hex');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function until(cond, what, ms = 3000) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

// ---- a certificate ----------------------------------------------------------------------

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'lunar-hook-test-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));
execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1',
  '-nodes', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
  '-days', '2', '-keyout', path.join(tmp, 'key.pem'), '-out', path.join(tmp, 'cert.pem')],
{ stdio: ['ignore', 'ignore', 'pipe'] });
const KEY = fs.readFileSync(path.join(tmp, 'key.pem'));
const CERT = fs.readFileSync(path.join(tmp, 'cert.pem'));

// ---- a byte reader -----------------------------------------------------------------------

// Reads a socket as a byte stream: until a delimiter, or n bytes; null at EOF.
class Reader {
  constructor(sock) {
    this.buf = Buffer.alloc(0);
    this.eof = false;
    this.wake = null;
    sock.on('data', (d) => { this.buf = Buffer.concat([this.buf, d]); this.poke(); });
    sock.on('end', () => { this.eof = true; this.poke(); });
    sock.on('close', () => { this.eof = true; this.poke(); });
    sock.on('error', () => {});
  }
  poke() { const w = this.wake; this.wake = null; if (w) w(); }
  async until(delim) {
    for (;;) {
      const i = this.buf.indexOf(delim);
      if (i >= 0) { const out = this.buf.subarray(0, i + delim.length); this.buf = this.buf.subarray(i + delim.length); return out; }
      if (this.eof) return null;
      await new Promise((r) => { this.wake = r; });
    }
  }
  async bytes(n) {
    for (;;) {
      if (this.buf.length >= n) { const out = this.buf.subarray(0, n); this.buf = this.buf.subarray(n); return out; }
      if (this.eof) return null;
      await new Promise((r) => { this.wake = r; });
    }
  }
  async first() {
    while (!this.buf.length && !this.eof) await new Promise((r) => { this.wake = r; });
    return this.buf.length ? this.buf[0] : null;
  }
}

function headerOf(head, name) {
  const m = head.toString('latin1').match(new RegExp(`\\r\\n${name}: *([^\\r]*)\\r\\n`, 'i'));
  return m ? m[1] : null;
}

// One HTTP/1.1 message with Content-Length framing (what our clients send here).
async function readMessage(r) {
  const head = await r.until('\r\n\r\n');
  if (head === null) return null;
  assert.strictEqual(headerOf(head, 'transfer-encoding'), null, 'the test sends Content-Length bodies only');
  const n = Number(headerOf(head, 'content-length') || 0);
  const body = n ? await r.bytes(n) : Buffer.alloc(0);
  if (body === null) return null;
  return { head, body, raw: Buffer.concat([head, body]) };
}

// ---- the TLS origin ----------------------------------------------------------------------

const origin = { requests: [], secureConnections: 0, tcpConnections: 0, tlsErrors: 0 };
const originServer = https.createServer({ key: KEY, cert: CERT, ALPNProtocols: ['http/1.1'] }, (req, res) => {
  const parts = [];
  req.on('data', (d) => parts.push(d));
  req.on('end', () => {
    const body = Buffer.concat(parts);
    const rec = { via: 'origin', method: req.method, path: req.url, host: req.headers.host,
                  alpn: req.socket.alpnProtocol, sni: req.socket.servername,
                  bodySha: sha256(body), bodyLen: body.length };
    origin.requests.push(rec);
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(rec));
  });
});
originServer.on('connection', () => origin.tcpConnections++);
originServer.on('secureConnection', () => origin.secureConnections++);
originServer.on('tlsClientError', () => origin.tlsErrors++);

// ---- the front: the preload's part ----------------------------------------------------------

// Per request on dressed connections: 'proxy' (answer in plain HTTP) or 'relay' (move it
// to the hook's relay); more than the queue holds: 'proxy'.
let plan = [];
const front = { conns: [], tlsPassed: 0, relayConns: 0, open: new Set() };

const frontServer = net.createServer((sock) => {
  front.open.add(sock);
  sock.on('close', () => front.open.delete(sock));
  const rec = { marker: null, requests: [], relayed: [], closedByRelay: false };
  front.conns.push(rec);
  const r = new Reader(sock);
  (async () => {
    if (await r.first() === 0x16) {
      // A TLS record: not a hook connection (the relay's own, or one left undressed).
      front.tlsPassed++;
      rec.tls = true;
      const up = net.connect(originServer.address().port, '127.0.0.1');
      up.on('error', () => sock.destroy());
      sock.on('error', () => up.destroy());
      sock.removeAllListeners('data');
      up.write(r.buf);
      sock.pipe(up);
      up.pipe(sock);
      return;
    }
    const line = await r.until('\r\n');
    rec.marker = line && line.toString('latin1');
    const m = rec.marker && MARKER_RE.exec(rec.marker);
    if (!m || m[1] !== TOKEN) { rec.badMarker = true; sock.destroy(); return; }
    rec.relayPort = Number(m[2]);
    rec.connId = m[3];
    for (;;) {
      const msg = await readMessage(r);
      if (!msg) break;
      const action = plan.length ? plan.shift() : 'proxy';
      rec.requests.push({ action, head: msg.head.toString('latin1'), body: msg.body });
      if (action === 'proxy') {
        const reqLine = msg.head.toString('latin1').split('\r\n')[0].split(' ');
        const answer = Buffer.from(JSON.stringify({
          via: 'proxy', method: reqLine[0], path: reqLine[1], host: headerOf(msg.head, 'host'),
          bodySha: sha256(msg.body), bodyLen: msg.body.length }));
        sock.write(`HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ${answer.length}\r\n\r\n`);
        sock.write(answer);
      } else if (action === 'relay') {
        // The failsafe: greeting + the unanswered request on a new relay connection.
        front.relayConns++;
        const up = net.connect(rec.relayPort, '127.0.0.1');
        const ur = new Reader(up);
        up.write(Buffer.concat([Buffer.from(`LUNAR-RELAY/1 ${TOKEN} ${rec.connId}\r\n`), msg.raw]));
        const answer = await readMessage(ur);
        if (!answer) { rec.closedByRelay = true; up.destroy(); break; }
        rec.relayed.push(answer.body.toString());
        sock.write(answer.raw);
        up.end();
      } else {
        throw new Error(`unknown plan action ${action}`);
      }
    }
    sock.end();
  })().catch((e) => { rec.error = e; sock.destroy(); });
});

// Straight to the relay, as some other local process could: what does it answer?
function probeRelay(port, bytes) {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const s = net.connect(port, '127.0.0.1');
    let data = Buffer.alloc(0);
    let error = null;
    s.on('connect', () => { if (bytes.length) s.write(bytes); });
    s.on('data', (d) => { data = Buffer.concat([data, d]); });
    s.on('error', (e) => { error = e.code; });
    s.on('close', () => resolve({ data, error, ms: Date.now() - t0 }));
  });
}

// ---- client helpers ------------------------------------------------------------------------------

function get(url, options = {}, body = null) {
  return new Promise((resolve, reject) => {
    const req = https.request(url, options, (res) => {
      const parts = [];
      res.on('data', (d) => parts.push(d));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers,
                                    body: Buffer.concat(parts), socket: res.socket }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.setTimeout(10000, () => req.destroy(new Error('client timeout')));
    if (body) req.write(body);
    req.end();
  });
}

async function getError(url, options) {
  try {
    const r = await get(url, options);
    return { ok: r };
  } catch (e) {
    return { error: e };
  }
}

function runNode(args, env) {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '', err = '';
    p.stdout.on('data', (d) => { out += d; });
    p.stderr.on('data', (d) => { err += d; });
    const t = setTimeout(() => p.kill('SIGKILL'), 20000);
    p.on('close', (code) => { clearTimeout(t); resolve({ code, out, err }); });
  });
}

function childEnv(extra) {
  const env = Object.assign({}, process.env);
  delete env.NODE_OPTIONS;
  delete env.LUNAR_NODE_HOOK;
  for (const [k, v] of Object.entries(extra)) {
    if (v === undefined) delete env[k]; else env[k] = v;
  }
  return env;
}

// Prints what a child node sees of the hook once the preload-less start is over.
const REPORT = `console.log(JSON.stringify({ hookEnv: process.env.LUNAR_NODE_HOOK === undefined ? null : process.env.LUNAR_NODE_HOOK,
  nodeOptions: process.env.NODE_OPTIONS === undefined ? null : process.env.NODE_OPTIONS,
  patched: !!require('tls').connect[Symbol.for('lunar-node-hook')] }))`;

// ---- the checks ------------------------------------------------------------------------------------

async function main() {
  await new Promise((r) => originServer.listen(0, '127.0.0.1', r));
  await new Promise((r) => frontServer.listen(0, '127.0.0.1', r));
  const ORIGIN = originServer.address().port;
  const FRONT = frontServer.address().port;
  const base = `https://localhost:${FRONT}`;
  process.stdout.write(`# origin 127.0.0.1:${ORIGIN} (TLS, self-signed), front 127.0.0.1:${FRONT} (intercepted)\n`);

  // What the preload sets before main (section 1).
  process.env.NODE_OPTIONS = `${USER_NODE_OPTIONS} --require "${HOOK}"`;
  process.env.LUNAR_NODE_HOOK = `v1 ${process.pid} ${TOKEN} 80,${FRONT} ${Buffer.byteLength(USER_NODE_OPTIONS)}`;
  const originalConnect = tls.connect;
  const hook = require(HOOK);

  await check('start: LUNAR_NODE_HOOK deleted, NODE_OPTIONS restored byte-exact, tls.connect patched', () => {
    assert.strictEqual(process.env.LUNAR_NODE_HOOK, undefined);
    assert.strictEqual(process.env.NODE_OPTIONS, USER_NODE_OPTIONS);
    assert.ok(hook.active);
    assert.notStrictEqual(tls.connect, originalConnect);
    assert.strictEqual(tls.connect[HOOKED], true);
    assert.strictEqual(require('worker_threads').getEnvironmentData('lunar-node-hook').split(' ')[2], TOKEN);
  });

  await check('start: nothing else loaded until the first dressed connection (no relay yet)', () => {
    assert.strictEqual(hook.relayPort, 0);
    assert.strictEqual(hook.connections(), 0);
  });

  // Record the write calls (one uv_write each) the dressed sockets make once connected.
  const writes = new Map();
  const realWriteGeneric = net.Socket.prototype._writeGeneric;
  net.Socket.prototype._writeGeneric = function (writev, data, encoding, cb) {
    if (this.lunarConnId !== undefined && !this.connecting) {
      const bytes = writev ? Buffer.concat(data.map((c) => Buffer.from(c.chunk, c.encoding)))
        : Buffer.from(data, encoding);
      if (!writes.has(this)) writes.set(this, []);
      writes.get(this).push(bytes.toString('latin1'));
    }
    return realWriteGeneric.call(this, writev, data, encoding, cb);
  };

  await check('tls.connect(port, host, cb), written to at once, first dressed connection: marker first, in a write of its own; connect then secureConnect; plaintext answered', async () => {
    const n0 = front.conns.length;
    const events = [];
    const s = tls.connect(FRONT, 'localhost', () => events.push('callback'));
    s.on('connect', () => events.push('connect'));
    s.on('secureConnect', () => events.push('secureConnect'));
    // Before the relay can know its port (listen() is asynchronous): must queue behind the marker.
    assert.strictEqual(hook.relayPort, 0, 'relay port known synchronously?');
    s.write('GET /raw HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n');
    const r = new Reader(s);
    const head = await r.until('\r\n\r\n');
    assert.ok(head && head.toString().startsWith('HTTP/1.1 200 OK'), String(head));
    assert.deepStrictEqual(events, ['connect', 'callback', 'secureConnect']);
    const rec = front.conns[n0];
    assert.ok(rec.marker && MARKER_RE.test(rec.marker), rec.marker);
    assert.strictEqual(rec.relayPort, hook.relayPort);
    assert.ok(hook.relayPort > 0);
    assert.strictEqual(rec.requests[0].head.split('\r\n')[0], 'GET /raw HTTP/1.1');
    const w = writes.get(s);
    assert.strictEqual(w[0], rec.marker, 'the first write call is the marker, whole and alone');
    assert.ok(w[1].startsWith('GET /raw '), 'the program\'s bytes come in a later write');
    s.destroy();
  });

  await check('https.get via the proxy: plaintext request with Host, the answer; the TLS surface', async () => {
    const n0 = front.conns.length;
    const res = await get(`${base}/a?x=1`, { agent: false });
    assert.strictEqual(res.status, 200);
    const e = JSON.parse(res.body);
    assert.deepStrictEqual([e.via, e.method, e.path, e.host], ['proxy', 'GET', '/a?x=1', `localhost:${FRONT}`]);
    assert.strictEqual(front.conns.length, n0 + 1);
    const s = res.socket;
    assert.strictEqual(s.encrypted, true);
    assert.strictEqual(s.authorized, true);
    assert.strictEqual(s.authorizationError, null);
    assert.strictEqual(s.alpnProtocol, false);
    assert.strictEqual(s.servername, 'localhost');  // https sets it from the host
    assert.strictEqual(s.getProtocol(), 'TLSv1.3');
    assert.strictEqual(s.getCipher().version, 'TLSv1.3');
    assert.deepStrictEqual(s.getPeerCertificate().subject, { CN: 'localhost' });
    assert.strictEqual(s.getPeerCertificate().subjectaltname, 'DNS:localhost');
    assert.strictEqual(s.getSession(), undefined);
    assert.strictEqual(s.getTLSTicket(), undefined);
    assert.strictEqual(s.isSessionReused(), false);
    assert.throws(() => s.exportKeyingMaterial(32, 'x'));
  });

  await check('https POST JSON via the proxy: the body arrives intact', async () => {
    const body = Buffer.from(JSON.stringify({ hello: 'lünar', n: [1, 2, 3] }));
    const res = await get(`${base}/post`, { method: 'POST', agent: false,
      headers: { 'content-type': 'application/json', 'content-length': body.length } }, body);
    const e = JSON.parse(res.body);
    assert.deepStrictEqual([res.status, e.method, e.bodySha], [200, 'POST', sha256(body)]);
  });

  await check('keep-alive Agent: 3 requests, one dressed connection, one marker', async () => {
    const n0 = front.conns.length;
    const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
    const sockets = new Set();
    for (let i = 0; i < 3; i++) {
      const res = await get(`${base}/ka/${i}`, { agent });
      assert.strictEqual(JSON.parse(res.body).path, `/ka/${i}`);
      sockets.add(res.socket);
    }
    agent.destroy();
    assert.strictEqual(sockets.size, 1);
    assert.strictEqual(front.conns.length, n0 + 1);
    assert.strictEqual(front.conns[n0].requests.length, 3);
  });

  await check('failsafe: moved to the relay, real TLS to the origin (ALPN http/1.1, SNI), the origin\'s answer', async () => {
    plan = ['relay'];
    const o0 = origin.secureConnections;
    const res = await get(`${base}/fs`, { agent: false, ca: CERT });
    const e = JSON.parse(res.body);
    assert.deepStrictEqual([res.status, e.via, e.path, e.alpn, e.sni, e.host],
      [200, 'origin', '/fs', 'http/1.1', 'localhost', `localhost:${FRONT}`]);
    assert.strictEqual(origin.secureConnections, o0 + 1);
  });

  await check('one dressed socket moved to the relay twice (a proxy answer between): a new TLS session each time', async () => {
    plan = ['relay', 'proxy', 'relay'];
    const o0 = origin.secureConnections, n0 = front.conns.length;
    const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
    const via = [];
    for (let i = 0; i < 3; i++) {
      const res = await get(`${base}/moves/${i}`, { agent, ca: CERT });
      const e = JSON.parse(res.body);
      assert.strictEqual(e.path, `/moves/${i}`);
      via.push(e.via);
    }
    agent.destroy();
    assert.deepStrictEqual(via, ['origin', 'proxy', 'origin']);
    const dressed = front.conns.slice(n0).filter((c) => !c.tls);
    assert.strictEqual(dressed.length, 1, 'one program connection');
    assert.strictEqual(dressed[0].relayed.length, 2);
    assert.strictEqual(origin.secureConnections, o0 + 2);
  });

  await check('2 MiB POST and a 2 MiB answer through the relay, bytes intact', async () => {
    plan = ['relay'];
    const body = crypto.randomBytes(2 * 1024 * 1024);
    const res = await get(`${base}/big`, { method: 'POST', agent: false, ca: CERT,
      headers: { 'content-length': body.length } }, body);
    const e = JSON.parse(res.body);
    assert.deepStrictEqual([e.via, e.bodyLen, e.bodySha], ['origin', body.length, sha256(body)]);
  });

  for (const [what, opts] of [['no ca (self-signed)', {}], ['a name not in the certificate', { ca: CERT, servername: 'other.test' }]]) {
    await check(`failsafe to an origin the program rejects, ${what}: the runtime's own error, nothing at the origin`, async () => {
      // Without the hook: the origin's own port is not intercepted.
      const direct = await getError(`https://localhost:${ORIGIN}/direct-reject`, Object.assign({ agent: false }, opts));
      assert.ok(direct.error && direct.error.code, 'the origin must be rejected without the hook too');
      plan = ['relay'];
      const n0 = front.conns.length, r0 = origin.requests.length;
      const hooked = await getError(`${base}/reject`, Object.assign({ agent: false }, opts));
      assert.ok(hooked.error, 'accepted a certificate the program rejects');
      assert.strictEqual(hooked.error.code, direct.error.code);
      assert.strictEqual(hooked.error.message, direct.error.message);
      assert.strictEqual(origin.requests.length, r0, 'a request reached the origin');
      await until(() => front.conns[n0] && front.conns[n0].closedByRelay, 'the relay connection to close');
    });
  }

  await check('relay: wrong token, unknown conn-id, over-long or silent greeting -> closed, nothing opened', async () => {
    const port = hook.relayPort;
    const o0 = origin.tcpConnections, t0 = front.tlsPassed;
    // a live dressed socket, so that only the token makes the difference
    const live = tls.connect({ port: FRONT, host: 'localhost' });
    live.on('error', () => {});
    await new Promise((r) => live.once('secureConnect', r));
    await until(() => front.conns.length && front.conns[front.conns.length - 1].connId, 'the marker');
    const id = front.conns[front.conns.length - 1].connId;
    const bad = '0'.repeat(32) === TOKEN ? '1'.repeat(32) : '0'.repeat(32);
    for (const [name, bytes] of [
      ['wrong token', `LUNAR-RELAY/1 ${bad} ${id}\r\nGET / HTTP/1.1\r\n\r\n`],
      ['unknown conn-id', `LUNAR-RELAY/1 ${TOKEN} 987654321\r\nGET / HTTP/1.1\r\n\r\n`],
      ['malformed', `LUNAR-RELAY/2 ${TOKEN} ${id}\r\n`],
      ['over 256 bytes', `LUNAR-RELAY/1 ${TOKEN} ${id}${' '.repeat(300)}\r\n`],
    ]) {
      const p = await probeRelay(port, Buffer.from(bytes));
      assert.strictEqual(p.data.length, 0, `${name}: the relay answered`);
      assert.ok(p.ms < 1000, `${name}: closed after ${p.ms} ms`);
      if (name !== 'over 256 bytes' && name !== 'malformed') assert.strictEqual(p.error, 'ECONNRESET', `${name}: ${p.error}`);
    }
    const silent = await probeRelay(port, Buffer.alloc(0));
    assert.ok(silent.ms >= 4500 && silent.ms < 7000, `silent greeting closed after ${silent.ms} ms`);
    assert.strictEqual(origin.tcpConnections, o0, 'a connection to the origin was opened');
    assert.strictEqual(front.tlsPassed, t0);
    assert.ok(!live.destroyed, 'a bad greeting must not touch the dressed socket');
    live.destroy();
  });

  await check('fetch (undici) via the proxy: GET and POST dressed', async () => {
    const n0 = front.conns.length;
    const r1 = await fetch(`${base}/fetch`);
    const e1 = await r1.json();
    const body = JSON.stringify({ fetch: true });
    const r2 = await fetch(`${base}/fetch-post`, { method: 'POST', body, headers: { 'content-type': 'application/json' } });
    const e2 = await r2.json();
    assert.deepStrictEqual([r1.status, e1.via, e1.path, e1.host], [200, 'proxy', '/fetch', `localhost:${FRONT}`]);
    assert.deepStrictEqual([r2.status, e2.via, e2.bodySha], [200, 'proxy', sha256(Buffer.from(body))]);
    assert.ok(front.conns.length > n0 && front.conns.slice(n0).every((c) => c.marker && !c.tls));
  });

  await check('worker thread: hook from environment data, its own relay; proxy and failsafe', async () => {
    plan = ['proxy', 'relay'];
    const n0 = front.conns.length;
    const code = `
      const { parentPort, workerData } = require('worker_threads');
      const https = require('https');
      const hasVar = process.env.LUNAR_NODE_HOOK !== undefined;
      const hook = require(workerData.hook);  // the preload's --require runs in workers too
      function get(url, opts) {
        return new Promise((resolve, reject) => {
          https.get(url, opts, (res) => { const p = []; res.on('data', (d) => p.push(d));
            res.on('end', () => resolve(JSON.parse(Buffer.concat(p)))); }).on('error', reject);
        });
      }
      (async () => {
        const a = await get(workerData.base + '/worker-proxy', { agent: false });
        const b = await get(workerData.base + '/worker-fs', { agent: false, ca: workerData.ca });
        parentPort.postMessage({ hasVar, active: hook.active, relayPort: hook.relayPort, a, b,
          patched: !!require('tls').connect[Symbol.for('lunar-node-hook')] });
      })().catch((e) => parentPort.postMessage({ error: String(e.stack || e) }));`;
    const w = new Worker(code, { eval: true, workerData: { hook: HOOK, base, ca: CERT.toString() } });
    const msg = await new Promise((resolve, reject) => { w.once('message', resolve); w.once('error', reject); });
    await w.terminate();
    assert.ok(!msg.error, msg.error);
    assert.deepStrictEqual([msg.hasVar, msg.active, msg.patched], [false, true, true]);
    assert.ok(msg.relayPort > 0 && msg.relayPort !== hook.relayPort, 'the worker has a relay of its own');
    assert.deepStrictEqual([msg.a.via, msg.a.path], ['proxy', '/worker-proxy']);
    assert.deepStrictEqual([msg.b.via, msg.b.path, msg.b.alpn], ['origin', '/worker-fs', 'http/1.1']);
    const mine = front.conns.slice(n0).filter((c) => c.marker);
    assert.strictEqual(mine.length, 2);
    assert.ok(mine.every((c) => c.relayPort === msg.relayPort));
  });

  await check('fetch through the relay (child process, CA from NODE_EXTRA_CA_CERTS)', async () => {
    plan = ['relay'];
    const script = `
      process.env.LUNAR_NODE_HOOK = 'v1 ' + process.pid + ' ${TOKEN} ${FRONT} -';
      require(${JSON.stringify(HOOK)});
      fetch('${base}/child-fetch').then((r) => r.json()).then((e) => console.log(JSON.stringify(e)),
        (e) => { console.error(e, e.cause); process.exitCode = 1; });`;
    const r = await runNode(['-e', script], childEnv({ NODE_EXTRA_CA_CERTS: path.join(tmp, 'cert.pem') }));
    assert.strictEqual(r.code, 0, r.err);
    const e = JSON.parse(r.out);
    assert.deepStrictEqual([e.via, e.path, e.alpn, e.sni], ['origin', '/child-fetch', 'http/1.1', 'localhost']);
  });

  await check('not dressed: a port not listed, ALPN h2 only, a client certificate, a caller\'s socket -> real TLS', async () => {
    const n0 = front.conns.length, t0 = front.tlsPassed;
    const res = await get(`https://localhost:${ORIGIN}/direct`, { agent: false, ca: CERT });
    assert.strictEqual(JSON.parse(res.body).via, 'origin');
    assert.strictEqual(front.conns.length, n0, 'an unlisted port reached the front');
    const tries = [
      { ALPNProtocols: ['h2'] },
      { ALPNProtocols: Buffer.from('\x02h2') },
      { cert: CERT, key: KEY },
    ];
    for (const extra of tries) {
      const s = tls.connect(Object.assign({ port: FRONT, host: 'localhost', ca: CERT }, extra));
      s.on('error', () => {});
      assert.ok(!s.lunarConnId, `dressed with ${JSON.stringify(Object.keys(extra))}`);
      await until(() => front.tlsPassed > t0 + tries.indexOf(extra), 'a TLS record at the front');
      s.destroy();
    }
    const plain = net.connect(FRONT, '127.0.0.1');
    const s = tls.connect({ socket: plain, servername: 'localhost', ca: CERT });
    s.on('error', () => {});
    assert.ok(!s.lunarConnId);
    await until(() => front.tlsPassed === t0 + tries.length + 1, 'a TLS record at the front');
    s.destroy();
    // ALPN offering both is dressed
    const both = tls.connect({ port: FRONT, host: 'localhost', ALPNProtocols: ['h2', 'http/1.1'] });
    assert.ok(both.lunarConnId);
    both.destroy();
  });

  for (const [what, length, userOpts] of [
    ['pid mismatch, NODE_OPTIONS unset', '-', null],
    ['pid mismatch, user NODE_OPTIONS', String(Buffer.byteLength('--max-old-space-size=100')), '--max-old-space-size=100'],
  ]) {
    await check(`${what}: inert child (tls.connect untouched), variable deleted, NODE_OPTIONS the user's`, async () => {
      const r = await runNode(['-e', REPORT], childEnv({
        NODE_OPTIONS: `${userOpts ? userOpts + ' ' : ''}--require "${HOOK}"`,
        LUNAR_NODE_HOOK: `v1 ${process.pid} ${TOKEN} ${FRONT} ${length}` }));
      assert.strictEqual(r.code, 0, r.err);
      assert.deepStrictEqual(JSON.parse(r.out), { hookEnv: null, nodeOptions: userOpts, patched: false });
    });
  }

  await check('own pid, NODE_OPTIONS unset (length "-"): active, NODE_OPTIONS deleted', async () => {
    const script = `process.env.NODE_OPTIONS = '--require "${HOOK}"';
      process.env.LUNAR_NODE_HOOK = 'v1 ' + process.pid + ' ${TOKEN} 443 -';
      require(${JSON.stringify(HOOK)}); ${REPORT}`;
    const r = await runNode(['-e', script], childEnv({}));
    assert.strictEqual(r.code, 0, r.err);
    assert.deepStrictEqual(JSON.parse(r.out), { hookEnv: null, nodeOptions: null, patched: true });
  });

  for (const bad of ['v2 PID TOKEN 443 -', 'v1 PID TOKEN 443', 'v1 PID TOKEN 443 - x', 'v1 PID ABC 443 -',
    'v1 PID TOKEN 443,0 -', 'v1 PID TOKEN 443 12x', 'v1  PID TOKEN 443 -']) {
    await check(`malformed ${JSON.stringify(bad)}: inert`, async () => {
      const script = `process.env.LUNAR_NODE_HOOK = ${JSON.stringify(bad)}.replace('PID', process.pid).replace('TOKEN', '${TOKEN}');
        require(${JSON.stringify(HOOK)}); ${REPORT}`;
      const r = await runNode(['-e', script], childEnv({}));
      assert.strictEqual(r.code, 0, r.err);
      assert.strictEqual(JSON.parse(r.out).patched, false);
      assert.strictEqual(JSON.parse(r.out).hookEnv, null);
    });
  }

  await check('beside a package.json saying "type": "module" (evaluated as an ES module): the program starts, the hook works', async () => {
    const dir = path.join(tmp, 'esm', 'lib');
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(tmp, 'esm', 'package.json'), '{"type": "module"}');
    const copy = path.join(dir, 'lunar-node-hook.cjs');
    fs.copyFileSync(HOOK, copy);
    const inert = await runNode(['-e', REPORT], childEnv({
      NODE_OPTIONS: `--require "${copy}"`, LUNAR_NODE_HOOK: `v1 ${process.pid} ${TOKEN} ${FRONT} -` }));
    assert.strictEqual(inert.code, 0, inert.err);
    assert.deepStrictEqual(JSON.parse(inert.out), { hookEnv: null, nodeOptions: null, patched: false });
    const script = `process.env.LUNAR_NODE_HOOK = 'v1 ' + process.pid + ' ${TOKEN} 443 -';
      require(${JSON.stringify(copy)}); ${REPORT}`;
    const active = await runNode(['-e', script], childEnv({}));
    assert.strictEqual(active.code, 0, active.err);
    assert.strictEqual(JSON.parse(active.out).patched, true);
  });

  await check('no leak: every dressed socket closed has left the registry', async () => {
    // Pooled keep-alive sockets (fetch's) are still open: the peer closes them here.
    for (const s of front.open) s.destroy();
    await until(() => hook.connections() === 0, `registry empty (has ${hook.connections()})`);
  });

  net.Socket.prototype._writeGeneric = realWriteGeneric;
  // The relay server is still listening: if it kept the process alive, this would fire.
  setTimeout(() => {
    process.stdout.write('FAIL - the process stays alive after every server closed (the relay?)\n');
    process.exit(1);
  }, 5000).unref();
  frontServer.close();
  originServer.close();
  originServer.closeAllConnections && originServer.closeAllConnections();
  process.on('exit', (code) => {
    if (code === 0) process.stdout.write(failures ? `# ${failures} FAILED\n` : '# all passed; the process ended by itself (relay unref\'ed)\n');
  });
  if (failures) process.exitCode = 1;
}

main().catch((e) => { console.error(e); process.exit(1); });
