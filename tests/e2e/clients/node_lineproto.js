#!/usr/bin/node
// Non-HTTP on port 80 with Node's net (libuv, epoll, non-blocking):
//   node_lineproto.js banner IP PORT   server speaks first
//   node_lineproto.js echo IP PORT     client speaks first (binary)
// stdout: one JSON line; exit 0 iff the exchange was right.
'use strict';
const net = require('net');
const [kind, ip, port] = process.argv.slice(2);
const sock = net.connect({ host: ip, port: parseInt(port, 10) });
let buf = Buffer.alloc(0);
const out = { kind };
const timer = setTimeout(() => { out.error = 'timeout'; finish(false); }, 5000);
function finish(ok) {
  clearTimeout(timer);
  out.ok = ok;
  process.stdout.write(JSON.stringify(out) + '\n');
  sock.destroy();
  process.exitCode = ok ? 0 : 1;
}
const data = Buffer.concat([Buffer.from([0x16, 0x03, 0x01]), Buffer.alloc(4096, 0xab)]);
sock.on('connect', () => {
  out.peer = `${sock.remoteAddress}:${sock.remotePort}`;
  if (kind === 'echo') sock.write(data);
});
let stage = 0;
sock.on('data', (d) => {
  buf = Buffer.concat([buf, d]);
  if (kind === 'echo') {
    if (buf.length >= data.length) finish(buf.equals(data));
    return;
  }
  for (;;) {
    const i = buf.indexOf('\r\n');
    if (i < 0) return;
    const line = buf.subarray(0, i).toString('latin1');
    buf = buf.subarray(i + 2);
    if (stage === 0) { out.banner = line; if (!line.startsWith('220 ')) return finish(false); sock.write('HELLO\r\n'); stage = 1; }
    else if (stage === 1) { out.r1 = line; if (line !== '250 HELLO') return finish(false); sock.write('QUIT\r\n'); stage = 2; }
    else { out.r2 = line; return finish(line === '221 bye'); }
  }
});
sock.on('error', (e) => { out.error = String(e); finish(false); });
