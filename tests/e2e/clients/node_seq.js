#!/usr/bin/node
// Requests on ONE keep-alive connection (an Agent with keepAlive, maxSockets 1), one
// step after the other; http or https as BASE_URL says (https: through the Node hook,
// lang/PROTOCOL.md, whose dressed socket the library moves between the proxy and the
// hook's relay per request). usage: node_seq.js BASE_URL INTERVAL STEP...
//   STEP: PATH or PATH|Name: value|... (headers of that request only)
// "[client] request I" on stderr before each request; INTERVAL seconds after each
// response. stdout: one JSON line per request {"i", "ts", "status", "len", "sha256",
// "connections" (distinct sockets used so far), "reused"} or {"i", "error"}.
'use strict';
const crypto = require('crypto');

const [base, interval, ...steps] = process.argv.slice(2);
const u = new URL(base);
const secure = u.protocol === 'https:';
const client = require(secure ? 'https' : 'http');
const agent = new client.Agent({ keepAlive: true, maxSockets: 1 });
const sockets = new Set();

function once(path, headers) {
  return new Promise((resolve, reject) => {
    const req = client.request({ host: u.hostname, port: u.port || (secure ? 443 : 80), path, method: 'GET', headers, agent }, (res) => {
      const parts = [];
      res.on('data', (d) => parts.push(d));
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(parts), reused: req.reusedSocket }));
      res.on('error', reject);
    });
    req.on('socket', (s) => sockets.add(s));
    req.on('error', reject);
    req.setTimeout(30000, () => req.destroy(new Error('timeout')));
    req.end();
  });
}

(async () => {
  let rc = 0;
  for (let i = 0; i < steps.length; i++) {
    const [path, ...hs] = steps[i].split('|');
    const headers = {};
    for (const h of hs) { const j = h.indexOf(':'); headers[h.slice(0, j).trim()] = h.slice(j + 1).trim(); }
    process.stderr.write(`[client] request ${i}\n`);
    const rec = { i, ts: Date.now() / 1000 };
    try {
      const r = await once(path, headers);
      Object.assign(rec, { status: r.status, len: r.body.length, reused: r.reused,
                           sha256: crypto.createHash('sha256').update(r.body).digest('hex') });
      if (r.status < 200 || r.status >= 300) rc = 1;
    } catch (e) {
      rec.error = `${e.code || ''} ${e.message}`;
      rc = 1;
    }
    rec.connections = sockets.size;
    process.stdout.write(JSON.stringify(rec) + '\n');
    if (i + 1 < steps.length) await new Promise((r) => setTimeout(r, parseFloat(interval) * 1000));
  }
  agent.destroy();
  process.exitCode = rc;
})();
