#!/usr/bin/node
// https from a worker thread: an `https` GET, then a `fetch` GET, both made inside a
// worker_threads Worker (the Node hook, lang/PROTOCOL.md, runs in workers too, from
// NODE_OPTIONS, and learns its settings from the main thread's environment data).
// usage: node_hook_worker.js BASE_URL
// stdout: the two answers' bodies (one line each: the origin's JSON echo), then one
// line {"worker": {"hook_var", "patched"}}: whether the worker still saw
// LUNAR_NODE_HOOK in its environment, and whether its tls.connect is the hook's.
// Exit 0 iff both answers were 2xx.
'use strict';
const { Worker, isMainThread, parentPort, workerData } = require('worker_threads');

if (isMainThread) {
  const w = new Worker(__filename, { workerData: { base: process.argv[2] } });
  let failed = true;
  w.on('message', (m) => {
    if (m.error) { process.stderr.write(`node_hook_worker.js: worker: ${m.error}\n`); return; }
    for (const b of m.bodies) process.stdout.write(b.endsWith('\n') ? b : b + '\n');
    process.stdout.write(JSON.stringify({ worker: m.report }) + '\n');
    failed = !m.ok;
  });
  w.on('error', (e) => { process.stderr.write(`node_hook_worker.js: ${e.stack || e}\n`); });
  w.on('exit', () => { process.exitCode = failed ? 1 : 0; });
} else {
  const https = require('https');
  const report = { hook_var: process.env.LUNAR_NODE_HOOK !== undefined,
                   patched: !!require('tls').connect[Symbol.for('lunar-node-hook')] };
  const get = (url) => new Promise((resolve, reject) => {
    const req = https.get(url, { agent: false }, (res) => {
      const parts = [];
      res.on('data', (d) => parts.push(d));
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(parts).toString() }));
    });
    req.setTimeout(30000, () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
  (async () => {
    const a = await get(`${workerData.base}/https`);
    const r = await fetch(`${workerData.base}/fetch`, { signal: AbortSignal.timeout(30000) });
    const b = { status: r.status, body: await r.text() };
    const ok = [a, b].every((x) => x.status >= 200 && x.status < 300);
    parentPort.postMessage({ bodies: [a.body, b.body], report, ok });
  })().catch((e) => parentPort.postMessage({ error: `${e.stack || e} ${e.cause ? e.cause.stack || e.cause : ''}` }));
}
