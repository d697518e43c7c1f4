#!/usr/bin/node
// One https GET with Node's `https` (no keep-alive), reporting a failure as data: the
// error the runtime raised is what a program sees, and must be the same with the Node
// hook (lang/PROTOCOL.md) as without it.
// usage: node_hook_get.js URL [--servername NAME] [--no-verify]
// stdout: one JSON line {"status", "body"} or {"error": {"code", "message"}};
// exit 0 iff a 2xx answer arrived.
'use strict';
const https = require('https');

const argv = process.argv.slice(2);
const url = argv[0];
const opts = { agent: false };
for (let i = 1; i < argv.length; i++) {
  if (argv[i] === '--servername') opts.servername = argv[++i];
  else if (argv[i] === '--no-verify') opts.rejectUnauthorized = false;
  else { process.stderr.write(`node_hook_get.js: unknown option ${argv[i]}\n`); process.exit(2); }
}

const req = https.get(url, opts, (res) => {
  const parts = [];
  res.on('data', (d) => parts.push(d));
  res.on('end', () => {
    process.stdout.write(JSON.stringify({ status: res.statusCode, body: Buffer.concat(parts).toString() }) + '\n');
    process.exitCode = res.statusCode >= 200 && res.statusCode < 300 ? 0 : 1;
  });
});
req.setTimeout(30000, () => req.destroy(new Error('timeout')));
req.on('error', (e) => {
  process.stdout.write(JSON.stringify({ error: { code: e.code || null, message: e.message } }) + '\n');
  process.exitCode = 1;
});
