// HTTP/2 prior-knowledge preface probe (RFC 9113 §3.4), with curl's real first flight.
import test from 'ava';
import net from 'node:net';
import { spawn } from 'node:child_process';
import { H2C_PREFACE, createH2cProbe } from '../../src/protocol/h2c-preface.js';
import { createHttpProbe } from '../../src/protocol/http-head.js';
import { testWithTools } from '../helpers/tools.js';

const MORE = { final: false };
const FINAL = { final: true };

test('the preface is the 24 octets of RFC 9113 §3.4', (t) => {
  t.is(H2C_PREFACE.length, 24);
  t.is(H2C_PREFACE.toString('hex'), '505249202a20485454502f322e300d0a0d0a534d0d0a0d0a');
});

test('every strict prefix is need-more (reject when final); the whole preface matches with consumed 24', (t) => {
  const probe = createH2cProbe();
  for (let n = 0; n < 24; n++) {
    t.is(probe.probe(H2C_PREFACE.subarray(0, n), MORE).kind, 'need-more', `prefix ${n}`);
    t.is(probe.probe(H2C_PREFACE.subarray(0, n), FINAL).kind, 'reject', `final prefix ${n}`);
  }
  const withSettings = Buffer.concat([H2C_PREFACE, Buffer.from('000000040000000000', 'hex')]);
  t.deepEqual(probe.probe(withSettings, MORE), { kind: 'match', protocol: 'h2c', fields: {}, consumed: 24 });
});

test('one wrong byte in the first line is not h2c; after the line "PRI * HTTP/2.0\\r\\n" it is a broken h2c preface', (t) => {
  for (let i = 0; i < 24; i++) {
    const b = Buffer.from(H2C_PREFACE);
    b[i] = b[i]! ^ 0x20;
    const expected = i < 16 ? { kind: 'reject', reason: 'h2c.preface.mismatch' } : { kind: 'reject', reason: 'h2c.preface.mismatch', protocol: 'h2c' };
    t.deepEqual(createH2cProbe().probe(b.subarray(0, i + 1), MORE), expected, `byte ${i}`);
  }
  t.deepEqual(createH2cProbe().probe(H2C_PREFACE.subarray(0, 20), { final: true }), { kind: 'reject', reason: 'h2c.preface.incomplete', protocol: 'h2c' });
  t.deepEqual(createH2cProbe().probe(H2C_PREFACE.subarray(0, 10), { final: true }), { kind: 'reject', reason: 'h2c.preface.incomplete' });
  t.is(createH2cProbe().probe(Buffer.from('GET / HTTP/1.1\r\n'), MORE).kind, 'reject');
});

testWithTools({ curl: 'curl' }, 'curl --http2-prior-knowledge: h2c matches, the HTTP/1 probe says not mine', async (t) => {
  const server = net.createServer();
  let child: ReturnType<typeof spawn> | undefined;
  try {
    const got = new Promise<Buffer>((resolve) => {
      server.once('connection', (sock) => {
        let buf = Buffer.alloc(0);
        sock.on('error', () => {});
        sock.on('data', (d) => {
          buf = Buffer.concat([buf, d]);
          if (buf.length >= 24) {
            sock.destroy();
            resolve(buf);
          }
        });
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    const c = spawn('curl', ['-s', '-o', '/dev/null', '--max-time', '10', '--http2-prior-knowledge', `http://127.0.0.1:${port}/`], { stdio: 'ignore' });
    child = c;
    const exited = new Promise((r) => c.on('exit', r));
    const bytes = await got;
    await exited;
    const v = createH2cProbe().probe(bytes, MORE);
    t.deepEqual(v, { kind: 'match', protocol: 'h2c', fields: {}, consumed: 24 });
    const h1 = createHttpProbe().probe(bytes, MORE);
    t.is(h1.kind, 'reject');
    t.false(h1.kind === 'reject' && h1.protocol !== undefined);
  } finally {
    child?.kill();
    server.close();
  }
});
