#!/usr/bin/node
// Common client interface, Node's global fetch (undici, its own HTTP/1.1 client):
// keep-alive pool for --repeat; --chunked streams the body (duplex 'half'), which
// undici sends with Transfer-Encoding: chunked.
'use strict';
const fs = require('fs');

const argv = process.argv.slice(2);
const method = argv[0], url = argv[1];
let body = null, repeat = 1, chunked = false;
const headers = {};
for (let i = 2; i < argv.length; i++) {
  const a = argv[i];
  if (a === '--data-file') body = fs.readFileSync(argv[++i]);
  else if (a === '--header') { const h = argv[++i]; const j = h.indexOf(':'); headers[h.slice(0, j).trim()] = h.slice(j + 1).trim(); }
  else if (a === '--repeat') repeat = parseInt(argv[++i], 10);
  else if (a === '--chunked') chunked = true;
  else if (a === '--verbose') {}
  else { process.stderr.write(`node_fetch.js: unknown option ${a}\n`); process.exit(2); }
}

function streamOf(buf) {
  let off = 0;
  return new ReadableStream({
    pull(ctrl) {
      if (off >= buf.length) { ctrl.close(); return; }
      ctrl.enqueue(new Uint8Array(buf.subarray(off, off + 65536)));
      off += 65536;
    },
  });
}

// If the event loop empties while a request is pending (no socket handle left
// alive), Node would exit 0 silently: report it as the failure it is.
let finished = false;
process.on('exit', (code) => {
  if (!finished && code === 0) {
    process.stderr.write('node_fetch.js: event loop ended before all responses arrived\n');
    process.exitCode = 1;
  }
});

(async () => {
  let rc = 0;
  for (let i = 0; i < repeat; i++) {
    // let undici return the connection to its pool before the next request
    if (i > 0) await new Promise((res) => setTimeout(res, 20));
    const opts = { method, headers, signal: AbortSignal.timeout(30000) };
    if (body !== null) {
      if (chunked) { opts.body = streamOf(body); opts.duplex = 'half'; }
      else opts.body = body;
    }
    const r = await fetch(url, opts);
    const b = Buffer.from(await r.arrayBuffer());
    if (b.length === 0 && method !== 'HEAD' && r.status !== 204 && r.status !== 304) {
      // diagnostic: an empty body is never what the lab's origins send
      process.stderr.write(`node_fetch.js: empty body, status ${r.status} headers ${JSON.stringify([...r.headers])}\n`);
    }
    await new Promise((res) => process.stdout.write(b, res));
    if (r.status < 200 || r.status >= 300) { process.stderr.write(`status ${r.status}\n`); rc = 1; }
  }
  finished = true;
  process.exit(rc);
})().catch((e) => { process.stderr.write(`node_fetch.js: ${e.stack || e} ${e.cause ? e.cause.stack || e.cause : ''}\n`); finished = true; process.exit(1); });
