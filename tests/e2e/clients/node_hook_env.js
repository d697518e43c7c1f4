#!/usr/bin/node
// What a Node program sees of the Node hook (lang/PROTOCOL.md) in its own process and in
// a child `node` started without LD_PRELOAD, then one https GET from each.
// usage: node_hook_env.js URL [--child | --child-inherits HOOK_PATH]
//   --child: the child gets this process's environment, LD_PRELOAD removed;
//   --child-inherits HOOK_PATH: the same, plus the two variables as the library sets
//     them for a node process (NODE_OPTIONS with --require HOOK_PATH appended,
//     LUNAR_NODE_HOOK naming THIS process's pid): a child that inherited them without
//     the library, which must stay inert.
// stdout, per process (this one first): {"report": {"who", "node_options", "hook_var",
// "patched", "heap_limit_mb"}}, then the GET's body (the origin's JSON echo).
// Exit 0 iff every GET was 2xx (and the child exited 0).
'use strict';
const https = require('https');
const v8 = require('v8');
const { spawn } = require('child_process');

const [url, mode, hookPath] = process.argv.slice(2);
const who = mode === '--as-child' ? 'child' : 'parent';

function report() {
  const env = process.env;
  process.stdout.write(JSON.stringify({ report: {
    who,
    node_options: env.NODE_OPTIONS === undefined ? null : env.NODE_OPTIONS,
    hook_var: env.LUNAR_NODE_HOOK === undefined ? null : env.LUNAR_NODE_HOOK,
    patched: !!require('tls').connect[Symbol.for('lunar-node-hook')],
    heap_limit_mb: Math.round(v8.getHeapStatistics().heap_size_limit / 1048576),
  } }) + '\n');
}

function get() {
  return new Promise((resolve, reject) => {
    const req = https.get(`${url}/${who}`, { agent: false }, (res) => {
      const parts = [];
      res.on('data', (d) => parts.push(d));
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(parts).toString() }));
    });
    req.setTimeout(30000, () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

function childEnv() {
  const env = Object.assign({}, process.env);
  delete env.LD_PRELOAD;
  if (mode === '--child-inherits') {
    const orig = env.NODE_OPTIONS;
    const len = orig === undefined ? '-' : String(Buffer.byteLength(orig));
    env.NODE_OPTIONS = `${orig ? orig + ' ' : ''}--require "${hookPath}"`;
    env.LUNAR_NODE_HOOK = `v1 ${process.pid} ${'5'.repeat(32)} 80,443 ${len}`;
  }
  return env;
}

(async () => {
  report();
  const r = await get();
  process.stdout.write(r.body.endsWith('\n') ? r.body : r.body + '\n');
  let ok = r.status >= 200 && r.status < 300;
  if (mode === '--child' || mode === '--child-inherits') {
    const child = spawn(process.execPath, [__filename, url, '--as-child'],
                        { env: childEnv(), stdio: ['ignore', 'inherit', 'inherit'] });
    const code = await new Promise((resolve) => child.on('exit', (c) => resolve(c)));
    ok = ok && code === 0;
  }
  process.exitCode = ok ? 0 : 1;
})().catch((e) => { process.stderr.write(`node_hook_env.js (${who}): ${e.stack || e}\n`); process.exitCode = 1; });
