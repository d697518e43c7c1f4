#!/usr/bin/node
// One HTTP/1.1 GET over a bare tls.connect() with the given ALPN list (and optionally a
// client certificate): the Node hook (lang/PROTOCOL.md) dresses only connections whose
// ALPN offers http/1.1 and that carry no client certificate.
// usage: node_hook_tls.js HOST PORT PATH [--alpn p1,p2] [--cert FILE --key FILE]
// stdout: the response body (the origin's JSON echo), then one line
// {"tls": {"alpn", "protocol", "authorized"}}. Exit 0 iff the status was 2xx.
'use strict';
const tls = require('tls');
const fs = require('fs');

const [host, port, path, ...rest] = process.argv.slice(2);
const opts = { host, port: Number(port), servername: host };
for (let i = 0; i < rest.length; i++) {
  if (rest[i] === '--alpn') opts.ALPNProtocols = rest[++i].split(',');
  else if (rest[i] === '--cert') opts.cert = fs.readFileSync(rest[++i]);
  else if (rest[i] === '--key') opts.key = fs.readFileSync(rest[++i]);
  else { process.stderr.write(`node_hook_tls.js: unknown option ${rest[i]}\n`); process.exit(2); }
}

const s = tls.connect(opts, () => {
  s.write(`GET ${path} HTTP/1.1\r\nHost: ${host}${port === '443' ? '' : ':' + port}\r\nConnection: close\r\n\r\n`);
});
s.setTimeout(30000, () => s.destroy(new Error('timeout')));
const parts = [];
s.on('data', (d) => parts.push(d));
s.on('end', () => {
  const all = Buffer.concat(parts).toString('latin1');
  const i = all.indexOf('\r\n\r\n');
  const status = Number(all.slice(9, 12));
  process.stdout.write(all.slice(i + 4).replace(/\n?$/, '\n'));
  process.stdout.write(JSON.stringify({ tls: { alpn: s.alpnProtocol, protocol: s.getProtocol(),
                                               authorized: s.authorized } }) + '\n');
  process.exitCode = status >= 200 && status < 300 ? 0 : 1;
  s.destroy();
});
s.on('error', (e) => { process.stderr.write(`node_hook_tls.js: ${e.code || ''} ${e.message}\n`); process.exitCode = 1; });
