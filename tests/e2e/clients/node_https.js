#!/usr/bin/node
// Common client interface, Node `https` (OpenSSL built into node; its CA store plus
// NODE_EXTRA_CA_CERTS): a keep-alive Agent with one socket for all --repeat
// requests; --chunked writes the body without Content-Length (chunked).
'use strict';
const https = require('https');
const fs = require('fs');

const argv = process.argv.slice(2);
const method = argv[0], url = new URL(argv[1]);
let body = null, repeat = 1, chunked = false;
const headers = {};
for (let i = 2; i < argv.length; i++) {
  const a = argv[i];
  if (a === '--data-file') body = fs.readFileSync(argv[++i]);
  else if (a === '--header') { const h = argv[++i]; const j = h.indexOf(':'); headers[h.slice(0, j).trim()] = h.slice(j + 1).trim(); }
  else if (a === '--repeat') repeat = parseInt(argv[++i], 10);
  else if (a === '--chunked') chunked = true;
  else if (a === '--verbose') {}
  else { process.stderr.write(`node_https.js: unknown option ${a}\n`); process.exit(2); }
}
const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });

function once() {
  return new Promise((resolve, reject) => {
    const h = Object.assign({}, headers);
    if (body !== null && !chunked) h['Content-Length'] = body.length;
    const req = https.request({ host: url.hostname.replace(/^\[(.*)\]$/, '$1'), port: url.port || 443, path: url.pathname + url.search,
                               method, headers: h, agent }, (res) => {
      const parts = [];
      res.on('data', (d) => parts.push(d));
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(parts) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.setTimeout(30000, () => req.destroy(new Error('timeout')));
    if (body !== null) {
      if (chunked) { for (let i = 0; i < body.length; i += 65536) req.write(body.subarray(i, i + 65536)); }
      else req.write(body);
    }
    req.end();
  });
}

// If the event loop empties while a request is pending (no socket handle left
// alive), Node would exit 0 silently: report it as the failure it is.
let finished = false;
process.on('exit', (code) => {
  if (!finished && code === 0) {
    process.stderr.write('node_https.js: event loop ended before all responses arrived\n');
    process.exitCode = 1;
  }
});

(async () => {
  let rc = 0;
  for (let i = 0; i < repeat; i++) {
    const r = await once();
    await new Promise((res) => process.stdout.write(r.body, res));
    if (r.status < 200 || r.status >= 300) { process.stderr.write(`status ${r.status}\n`); rc = 1; }
  }
  agent.destroy();
  finished = true;
  process.exitCode = rc;
})().catch((e) => { process.stderr.write(`node_https.js: ${e.stack || e}\n`); finished = true; process.exitCode = 1; agent.destroy(); });
