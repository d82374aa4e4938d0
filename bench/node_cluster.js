// Node's own cluster hello world, the peer of sockserve in bench/run.py.
// PORT and WORKERS from the environment; NODE_CLUSTER_SCHED_POLICY=rr|none picks
// round-robin (master accepts) or SCHED_NONE (workers accept on a shared socket).
'use strict';
const cluster = require('node:cluster');
const http = require('node:http');

const port = Number(process.env.PORT || 8000);
const workers = Number(process.env.WORKERS || 2);

if (cluster.isPrimary) {
  for (let i = 0; i < workers; i++) cluster.fork();
  process.on('SIGTERM', () => {
    for (const id in cluster.workers) cluster.workers[id].process.kill('SIGTERM');
    process.exit(0);
  });
} else {
  http.createServer((req, res) => {
    const body = `hello world from worker ${cluster.worker.id} (pid ${process.pid})\n`;
    res.writeHead(200, {
      'content-type': 'text/plain; charset=utf-8',
      'content-length': Buffer.byteLength(body),
    });
    res.end(body);
  }).listen(port, '127.0.0.1');
}
