// make bench: sequential keep-alive GETs from Node, one at a time on one agent socket.
//   node node_client.js URL REQUESTS WARMUP HEADERS_JSON
// Prints "us_per_req X" for the REQUESTS after the warm-up (the warm-up pays the connect,
// the hook's and the library's set-up).
'use strict';
const [url, requests, warmup, headersJson] = process.argv.slice(2);
const target = new URL(url);
const secure = target.protocol === 'https:';
const client = require(secure ? 'https' : 'http');
const agent = new client.Agent({ keepAlive: true, maxSockets: 1 });
const headers = JSON.parse(headersJson);

function once() {
  return new Promise((resolve, reject) => {
    client.get({ host: target.hostname, port: target.port || (secure ? 443 : 80),
                 path: target.pathname, headers, agent }, (res) => {
      res.resume();
      res.on('end', () => (res.statusCode === 200 ? resolve()
                                                  : reject(new Error('status ' + res.statusCode))));
    }).on('error', reject);
  });
}

(async () => {
  for (let i = 0; i < Number(warmup); i++) await once();
  const start = process.hrtime.bigint();
  for (let i = 0; i < Number(requests); i++) await once();
  const took = Number(process.hrtime.bigint() - start) / 1000;
  console.log('us_per_req', took / Number(requests));
  agent.destroy();
})().catch((e) => { console.error(e.message); process.exit(1); });
