// The mission's main use case: twinport on the service port in front of a real HAProxy whose frontends
// `accept-proxy`. Requests over both protocols succeed and HAProxy's own log shows the real client
// address (the client connects from 127.0.0.2; twinport reaches HAProxy from 127.0.0.1).
import test from 'ava';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { generate } from 'selfsigned';
import { startProxy, freePort } from '../helpers/proxy-harness.js';
import { testWithTools } from '../helpers/tools.js';


function get(mod: typeof http | typeof https, port: number, host: string): Promise<{ status: number; body: string; localPort: number }> {
  return new Promise((resolve, reject) => {
    const req = mod.request(
      { host: '127.0.0.1', port, path: '/', localAddress: '127.0.0.2', headers: { host }, servername: host, rejectUnauthorized: false, agent: false },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, localPort: req.socket?.localPort ?? 0 }));
      },
    );
    req.on('socket', (s) => s.once('connect', () => ((req as unknown as { lp: number }).lp = s.localPort ?? 0)));
    req.on('error', reject);
    req.end();
  });
}

testWithTools({ haproxy: 'haproxy' }, 'in front of HAProxy: http and https both served; HAProxy logs the real client address', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'twp-haproxy-'));
  const pems = await generate([{ name: 'commonName', value: 'keystone.example' }], { keyType: 'ec', curve: 'P-256', algorithm: 'sha256' });
  writeFileSync(join(dir, 'cert.pem'), `${pems.cert.trim()}\n${pems.private.trim()}\n`);
  const [httpPort, httpsPort] = [await freePort(), await freePort()];
  writeFileSync(
    join(dir, 'haproxy.cfg'),
    `global
    log stdout format raw local0
defaults
    mode http
    log global
    timeout connect 2s
    timeout client 10s
    timeout server 10s
    log-format "fe=%ft client=%ci:%cp"
frontend fe_http
    bind 127.0.0.1:${httpPort} accept-proxy
    http-request return status 200 content-type text/plain string "haproxy http"
frontend fe_https
    bind 127.0.0.1:${httpsPort} accept-proxy ssl crt ${join(dir, 'cert.pem')}
    http-request return status 200 content-type text/plain string "haproxy https"
`,
  );
  const haproxy = spawn('haproxy', ['-db', '-f', join(dir, 'haproxy.cfg')], { stdio: ['ignore', 'pipe', 'pipe'] });
  const logLines: string[] = [];
  let notify: (() => void) | undefined;
  createInterface({ input: haproxy.stdout }).on('line', (l) => {
    logLines.push(l);
    notify?.();
  });
  let stderr = '';
  haproxy.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const waitLog = (re: RegExp): Promise<string> =>
    new Promise((resolve) => {
      const check = (): void => {
        const hit = logLines.find((l) => re.test(l));
        if (hit !== undefined) resolve(hit);
      };
      const prev = notify;
      notify = () => {
        prev?.();
        check();
      };
      check();
    });
  const proxy = await startProxy(`
listeners:
  - name: keystone
    bind: "127.0.0.1:0"
    routes:
      - match: { protocol: tls }
        to: haproxy-tls
      - match: { protocol: [http, h2c] }
        to: haproxy-http
pools:
  haproxy-tls:
    servers: [{ address: "127.0.0.1:${httpsPort}", send_proxy: v2 }]
  haproxy-http:
    servers: [{ address: "127.0.0.1:${httpPort}", send_proxy: v1 }]
`);
  try {
    // HAProxy is ready once its frontends accept.
    for (let i = 0; i < 100; i++) {
      const ok = await new Promise<boolean>((r) => {
        const s = net.connect(httpsPort, '127.0.0.1', () => {
          s.destroy();
          r(true);
        });
        s.on('error', () => r(false));
      });
      if (ok) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const port = proxy.port();
    const plain = await get(http, port, 'keystone.example');
    t.deepEqual([plain.status, plain.body], [200, 'haproxy http']);
    const secure = await get(https, port, 'keystone.example');
    t.deepEqual([secure.status, secure.body], [200, 'haproxy https']);
    const closes = await Promise.all([1, 2].map((n) => proxy.logs.waitFor((l) => l.msg === 'close' && l['conn'] === n)));
    const clientPorts = closes.map((l) => String(l['client']));
    t.true(clientPorts.every((c) => c.startsWith('127.0.0.2:')), clientPorts.join(' '));
    // HAProxy saw exactly the client twinport logged (address and port), not twinport's own address.
    const h = await waitLog(/fe=fe_http client=/);
    const s = await waitLog(/fe=fe_https~? client=/);
    t.is(h.split('client=')[1], clientPorts[0]);
    t.is(s.split('client=')[1], clientPorts[1]);
  } finally {
    await proxy.stop();
    haproxy.kill('SIGKILL');
    if (haproxy.exitCode !== null) t.log(stderr);
  }
});
