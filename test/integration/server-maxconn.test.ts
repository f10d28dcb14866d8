// Per-server max_connections and the pool queue (issue 14 §2, HAProxy's server maxconn + timeout queue):
// a full server is skipped; when every server is full a connection waits for a slot, in order, at most
// queue.timeout (reason queue-timeout); a full queue is a `limit`. Real clients and backends.
import test from 'ava';
import net, { type Socket } from 'node:net';
import { startBackend, startProxy, type Backend } from '../helpers/proxy-harness.js';

interface Client {
  readonly socket: Socket;
  received(): string;
  readonly closed: Promise<void>;
}

function connect(port: number, first: string): Client {
  const socket = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
  let got = '';
  socket.on('data', (c: Buffer) => (got += c.toString()));
  socket.on('error', () => {});
  // twinport's FIN (a limit, a queue timeout) is answered with ours, as an ordinary client would.
  socket.on('end', () => socket.end());
  socket.write(first);
  const closed = new Promise<void>((r) => socket.on('close', () => r()));
  return { socket, received: () => got, closed };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(cond: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

test('one server with max_connections 1: the second connection waits and gets the slot when the first closes; a full queue is limit; a long wait is queue-timeout', async (t) => {
  const backend: Backend = await startBackend('b');
  const proxy = await startProxy(`
listeners:
  - name: main
    bind: "127.0.0.1:0"
    routes:
      - match: {}
        to: p
pools:
  p:
    queue: { size: 1, timeout: 700ms }
    servers:
      - { address: "127.0.0.1:${backend.port}", max_connections: 1 }
`);
  try {
    const port = proxy.port();
    const first = connect(port, 'GET /1 HTTP/1.1\r\nHost: a\r\n\r\n');
    await until(() => backend.connections.length === 1, 'the first connection at the backend');
    const second = connect(port, 'GET /2 HTTP/1.1\r\nHost: a\r\n\r\n');
    await sleep(150);
    t.is(backend.connections.length, 1, 'the second waits: the server is at its max_connections');
    const third = connect(port, 'GET /3 HTTP/1.1\r\nHost: a\r\n\r\n');
    await third.closed;
    const limited = await proxy.logs.waitForClose((l) => l['reason'] === 'limit');
    t.regex(String(limited['detail']), /every server at max_connections and 1 connections already waiting/);
    t.is(limited['pool'], 'p');
    // The first closes: its slot goes to the second, whose bytes arrive whole.
    first.socket.end();
    first.socket.destroy();
    await until(() => backend.connections.length === 2, 'the waiting connection at the backend');
    const rec = await backend.connection(2);
    await until(() => Buffer.concat(rec.received).toString().includes('GET /2'), 'the second request');
    t.is(Buffer.concat(rec.received).toString(), 'GET /2 HTTP/1.1\r\nHost: a\r\n\r\n');
    // The second now holds the slot: a fourth waits 700 ms and gives up.
    const started = Date.now();
    const fourth = connect(port, 'GET /4 HTTP/1.1\r\nHost: a\r\n\r\n');
    await fourth.closed;
    const waited = Date.now() - started;
    const timedOut = await proxy.logs.waitForClose((l) => l['reason'] === 'queue-timeout');
    t.true(waited >= 650 && waited < 3000, `waited ${waited} ms`);
    t.regex(String(timedOut['detail']), /no server slot in 700ms/);
    t.is(backend.connections.length, 2, 'neither the full-queue nor the timed-out connection reached the server');
    second.socket.destroy();
    await until(() => proxy.runtime.activeConnections === 0, 'every connection closed');
    const pool = [...proxy.runtime.poolRuntimes.values()][0]!;
    t.is(pool.state.slotsTaken(0), 0, 'every slot given back');
  } finally {
    await proxy.stop();
    await backend.close();
  }
});

test('a full server is skipped while another has room; with both full the next connection waits for whichever frees first', async (t) => {
  const a = await startBackend('a');
  const b = await startBackend('b');
  const proxy = await startProxy(`
listeners:
  - name: main
    bind: "127.0.0.1:0"
    routes:
      - match: {}
        to: p
pools:
  p:
    balance: first
    servers:
      - { address: "127.0.0.1:${a.port}", max_connections: 1 }
      - { address: "127.0.0.1:${b.port}", max_connections: 1 }
`);
  try {
    const port = proxy.port();
    // balance: first would send everything to a; max_connections sends the second to b.
    const c1 = connect(port, 'GET /one HTTP/1.1\r\nHost: x\r\n\r\n');
    await until(() => a.connections.length === 1, 'c1 at a');
    const c2 = connect(port, 'GET /two HTTP/1.1\r\nHost: x\r\n\r\n');
    await until(() => b.connections.length === 1, 'c2 at b (a is full)');
    const c3 = connect(port, 'GET /three HTTP/1.1\r\nHost: x\r\n\r\n');
    await sleep(150);
    t.is(a.connections.length + b.connections.length, 2, 'c3 waits');
    c2.socket.destroy();
    await until(() => b.connections.length === 2, 'c3 at b once b freed');
    t.is(a.connections.length, 1);
    for (const c of [c1, c3]) c.socket.destroy();
    await until(() => proxy.runtime.activeConnections === 0, 'every connection closed');
  } finally {
    await proxy.stop();
    await a.close();
    await b.close();
  }
});
