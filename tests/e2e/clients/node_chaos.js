#!/usr/bin/node
// Many requests through one keep-alive http.Agent, with integrity checks.
// usage: node_chaos.js URL N [CONCURRENCY=4] [CLOSE_EVERY=5]
// URL's path is the tag. N requests, CONCURRENCY at a time, through an Agent
// (keepAlive, maxSockets CONCURRENCY) that destroys every CLOSE_EVERY-th socket
// it could keep, so that sockets are renewed. Request i: every third a POST
// of a deterministic body of 0..20000 bytes to TAG (the origin's echo must show
// its sha256 and length), otherwise GET /bytes/<n>?tag=TAG (the body must be the
// lab origin's pattern: bytes 0..250 repeated).
// stdout: one JSON object {"requests", "ok", "failures" (first 20), "elapsed"};
// exit 0 iff every request succeeded.
'use strict';
const http = require('http');
const crypto = require('crypto');

const url = new URL(process.argv[2]);
const N = parseInt(process.argv[3], 10);
const CONC = parseInt(process.argv[4] || '4', 10);
const CLOSE_EVERY = parseInt(process.argv[5] || '5', 10);
const tag = url.pathname;
// every CLOSE_EVERY-th time a socket could go back to the pool it is destroyed
// instead (documented Agent hook), so that new connections keep being made
class RenewingAgent extends http.Agent {
  keepSocketAlive(socket) {
    this.released = (this.released || 0) + 1;
    if (CLOSE_EVERY > 0 && this.released % CLOSE_EVERY === 0) return false;
    return super.keepSocketAlive(socket);
  }
}
const agent = new RenewingAgent({ keepAlive: true, maxSockets: CONC });

function pattern(n) {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = i % 251;
  return b;
}

// deterministic per-request sizes and bodies (xorshift)
let seed = 0x9e3779b9;
function rnd(max) {
  seed ^= seed << 13; seed >>>= 0;
  seed ^= seed >>> 17;
  seed ^= seed << 5; seed >>>= 0;
  return seed % (max + 1);
}

function one(i) {
  const post = i % 3 === 2;
  const size = rnd(post ? 20000 : 30000);
  const body = post ? crypto.createHash('sha512').update(String(i)).digest().toString('hex').repeat(Math.ceil(size / 128) + 1).slice(0, size) : null;
  const headers = {};
  if (post) { headers['Content-Type'] = 'application/octet-stream'; headers['Content-Length'] = Buffer.byteLength(body); }
  const path = post ? `${tag}?i=${i}` : `/bytes/${size}?tag=${tag}&i=${i}`;
  return new Promise((resolve) => {
    const req = http.request({ host: url.hostname, port: url.port || 80, path, method: post ? 'POST' : 'GET', headers, agent }, (res) => {
      const parts = [];
      res.on('data', (d) => parts.push(d));
      res.on('error', (e) => resolve(`request ${i}: response error ${e}`));
      res.on('end', () => {
        const data = Buffer.concat(parts);
        if (res.statusCode !== 200) return resolve(`request ${i}: status ${res.statusCode} ${data.subarray(0, 200)}`);
        if (post) {
          let echo;
          try { echo = JSON.parse(data); } catch (e) { return resolve(`request ${i}: POST answer not the origin's echo: ${data.subarray(0, 200)}`); }
          const want = crypto.createHash('sha256').update(body).digest('hex');
          if (echo.body_sha256 !== want || echo.body_len !== Buffer.byteLength(body)) return resolve(`request ${i}: POST body differs at the origin`);
          return resolve(null);
        }
        if (!data.equals(pattern(size))) return resolve(`request ${i}: GET /bytes/${size}: ${data.length} bytes, content differs`);
        resolve(null);
      });
    });
    req.on('error', (e) => resolve(`request ${i}: ${e}`));
    req.setTimeout(15000, () => req.destroy(new Error('timeout')));
    if (post) req.write(body);
    req.end();
  });
}

let finished = false;
process.on('exit', (code) => {
  if (!finished && code === 0) {
    process.stderr.write('node_chaos.js: event loop ended before all responses arrived\n');
    process.exitCode = 1;
  }
});

(async () => {
  const t0 = Date.now();
  const stats = { requests: 0, ok: 0, failures: [] };
  let next = 0;
  async function lane() {
    while (next < N) {
      const i = next++;
      const err = await one(i);
      stats.requests++;
      if (err) { if (stats.failures.length < 20) stats.failures.push(err); } else stats.ok++;
    }
  }
  await Promise.all(Array.from({ length: CONC }, lane));
  stats.elapsed = (Date.now() - t0) / 1000;
  agent.destroy();
  finished = true;
  await new Promise((res) => process.stdout.write(JSON.stringify(stats) + '\n', res));
  process.exitCode = stats.ok === N ? 0 : 1;
})().catch((e) => { process.stderr.write(`node_chaos.js: ${e.stack || e}\n`); finished = true; process.exitCode = 1; });
