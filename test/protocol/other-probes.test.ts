// The "other" probes: ssh, socks5, openvpn, adb, xmpp — real clients where installed (ssh, curl --socks5),
// openings built from the protocol descriptions otherwise, and the parser-contract properties.
import test from 'ava';
import fc from 'fast-check';
import net from 'node:net';
import { spawn } from 'node:child_process';
import { adbProbe, createOtherProbes, openvpnProbe, socks5Probe, sshProbe, xmppProbe } from '../../src/protocol/other-probes.js';
import { detect } from '../../src/protocol/detector.js';
import { createHttpProbe } from '../../src/protocol/http-head.js';
import type { Probe, ProbeOptions } from '../../src/protocol/verdict.js';
import type { OtherMatch } from '../../src/protocol/other-probes.js';
import { testWithTools } from '../helpers/tools.js';

const MORE: ProbeOptions = { final: false };
const FINAL: ProbeOptions = { final: true };

/** OpenVPN P_CONTROL_HARD_RESET_CLIENT_V2 without tls-auth: len 14, op 7<<3, session id, 0 acks, packet id 0. */
const OPENVPN_RESET = Buffer.from('000e38' + '0123456789abcdef' + '00' + '00000000', 'hex');

function adbConnect(payload: string): Buffer {
  const head = Buffer.alloc(24);
  const data = Buffer.from(payload);
  const cnxn = 0x4e584e43;
  head.writeUInt32LE(cnxn, 0);
  head.writeUInt32LE(0x01000001, 4); // A_VERSION
  head.writeUInt32LE(256 * 1024, 8); // MAX_PAYLOAD
  head.writeUInt32LE(data.length, 12);
  head.writeUInt32LE(data.reduce((s, b) => s + b, 0), 16);
  head.writeUInt32LE((cnxn ^ 0xffffffff) >>> 0, 20);
  return Buffer.concat([head, data]);
}

const XMPP_OPEN =
  "<?xml version='1.0'?><stream:stream to='im.example.com' version='1.0' xml:lang='en' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";

/** Valid first flights, with the probe that must match them and the bytes that belong to the match. */
const SAMPLES: Array<{ probe: Probe<OtherMatch>; name: string; bytes: Buffer; consumed: number }> = [
  { probe: sshProbe, name: 'ssh', bytes: Buffer.from('SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13\r\n'), consumed: 40 },
  { probe: sshProbe, name: 'ssh', bytes: Buffer.from('SSH-1.99-Cisco-1.25\n'), consumed: 20 },
  { probe: socks5Probe, name: 'socks5', bytes: Buffer.from([5, 2, 0, 2]), consumed: 4 },
  { probe: openvpnProbe, name: 'openvpn', bytes: OPENVPN_RESET, consumed: 16 },
  { probe: adbProbe, name: 'adb', bytes: adbConnect('host::features=shell_v2,cmd'), consumed: 24 + Buffer.byteLength('host::features=shell_v2,cmd') },
  { probe: xmppProbe, name: 'xmpp', bytes: Buffer.from(`${XMPP_OPEN}<starttls/>`), consumed: XMPP_OPEN.length },
  { probe: xmppProbe, name: 'xmpp', bytes: Buffer.from(`<stream:stream xmlns="jabber:server" to="b.example">`), consumed: 52 },
];

for (const s of SAMPLES) {
  test(`${s.name}: ${JSON.stringify(s.bytes.subarray(0, 24).toString('latin1'))}… matches; every strict prefix is need-more`, (t) => {
    t.deepEqual(s.probe.probe(s.bytes, MORE), { kind: 'match', protocol: 'other', fields: { name: s.name }, consumed: s.consumed });
    for (let n = 0; n < s.consumed; n++) {
      t.is(s.probe.probe(s.bytes.subarray(0, n), MORE).kind, 'need-more', `prefix ${n}`);
      t.is(s.probe.probe(s.bytes.subarray(0, n), FINAL).kind, 'reject', `final prefix ${n}`);
    }
  });
}

for (const [title, probe, input, reason, recognised] of [
  ['SSH banner with a NUL', sshProbe, 'SSH-2.0-Open\0SSH\r\n', 'other.ssh.bad-banner', true],
  ['SSH banner without software version', sshProbe, 'SSH-2.0-\r\n', 'other.ssh.bad-banner', true],
  ['SSH banner with a bare CR', sshProbe, 'SSH-2.0-x\ry\r\n', 'other.ssh.bad-banner', true],
  ['SSH banner over 255 bytes', sshProbe, `SSH-2.0-${'x'.repeat(300)}`, 'other.ssh.too-long', true],
  ['SSH-1.5 (protocol 1 only)', sshProbe, 'SSH-1.5-old\r\n', 'other.ssh.mismatch', false],
  ['SOCKS4', socks5Probe, '\x04\x01\x00\x50\x7f\x00\x00\x01\x00', 'other.socks5.mismatch', false],
  ['SOCKS5 with zero methods', socks5Probe, '\x05\x00', 'other.socks5.mismatch', false],
  ['SOCKS5 offering 0xFF', socks5Probe, '\x05\x01\xff', 'other.socks5.mismatch', false],
  ['SOCKS5 offering a method twice', socks5Probe, '\x05\x02\x00\x00', 'other.socks5.mismatch', false],
  ['OpenVPN data opcode', openvpnProbe, '\x00\x0e\x30', 'other.openvpn.mismatch', false],
  ['OpenVPN reset with key id 1', openvpnProbe, '\x00\x0e\x39', 'other.openvpn.mismatch', false],
  ['OpenVPN length 2', openvpnProbe, '\x00\x02\x38', 'other.openvpn.mismatch', false],
  ['ADB header with a wrong magic', adbProbe, Buffer.concat([Buffer.from('CNXN'), Buffer.alloc(20)]).toString('latin1'), 'other.adb.mismatch', false],
  ['XMPP stream without the jabber namespace', xmppProbe, "<stream:stream xmlns='urn:other'>", 'other.xmpp.mismatch', false],
  ['XML that is not a stream', xmppProbe, "<?xml version='1.0'?><html>", 'other.xmpp.mismatch', false],
] as const) {
  test(`refused: ${title} → ${reason}`, (t) => {
    const v = probe.probe(Buffer.from(input, 'latin1'), MORE);
    t.deepEqual(v, recognised ? { kind: 'reject', reason, protocol: 'other' } : { kind: 'reject', reason });
  });
}

test('a plain-text OpenVPN reset with non-zero acks is refused (the 14-byte form has none)', (t) => {
  const b = Buffer.from(OPENVPN_RESET);
  b[11] = 1;
  t.is(openvpnProbe.probe(b, MORE).kind, 'reject');
});

test('createOtherProbes returns the table in order, with distinct names', (t) => {
  t.deepEqual(
    createOtherProbes().map((p) => p.name),
    ['ssh', 'socks5', 'openvpn', 'adb', 'xmpp'],
  );
});

test('every sample is matched by exactly one probe of the table, and the detector answers that probe', (t) => {
  for (const s of SAMPLES) {
    const matches = createOtherProbes().filter((p) => p.probe(s.bytes, FINAL).kind === 'match');
    t.deepEqual(matches.map((p) => p.name), [s.name]);
    // The HTTP probe may claim a banner that starts with a token and a space (an SSH banner with
    // comments), but a match of a later probe still wins over its refusal.
    const d = detect(s.bytes, FINAL);
    t.true(d.kind === 'match' && d.protocol === 'other', `${s.name}: ${JSON.stringify(d)}`);
  }
});

test('property: arbitrary bytes give every probe a verdict, never a throw; one byte never matches; final is never need-more', (t) => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 400 }), fc.boolean(), (arr, final) => {
      const bytes = Buffer.from(arr);
      return createOtherProbes().every((p) => {
        const v = p.probe(bytes, { final });
        if (final && v.kind === 'need-more') return false;
        if (bytes.length <= 1 && v.kind === 'match') return false;
        return true;
      });
    }),
    { numRuns: 2000 },
  );
  t.pass();
});

test('property: a decision on a prefix is the decision on the whole (any chunking gives the same verdict)', (t) => {
  const inputs = fc.oneof(
    fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.from(a)),
    fc
      .tuple(fc.constantFrom(...SAMPLES.map((s) => s.bytes)), fc.nat(), fc.integer({ min: 0, max: 255 }))
      .map(([b, at, x]) => {
        const c = Buffer.from(b);
        c[at % c.length] = x;
        return c;
      }),
  );
  fc.assert(
    fc.property(inputs, fc.nat(), (bytes, cut) => {
      const n = bytes.length === 0 ? 0 : cut % bytes.length;
      return createOtherProbes().every((p) => {
        const early = p.probe(bytes.subarray(0, n), MORE);
        return early.kind === 'need-more' || JSON.stringify(early) === JSON.stringify(p.probe(bytes, MORE));
      });
    }),
    { numRuns: 2000 },
  );
  t.pass();
});

// ----------------------------------------------------------------------------------------- real clients

/** Accepts one connection, returns its bytes once `enough` holds, then drops it. */
async function captureClient(args: { cmd: string; argv: (port: number) => string[] }, enough: (b: Buffer) => boolean): Promise<Buffer> {
  const server = net.createServer();
  let child: ReturnType<typeof spawn> | undefined;
  try {
    const got = new Promise<Buffer>((resolve, reject) => {
      server.once('connection', (sock) => {
        let buf = Buffer.alloc(0);
        sock.on('error', () => {});
        sock.on('data', (d) => {
          buf = Buffer.concat([buf, d]);
          if (enough(buf)) {
            sock.destroy();
            resolve(buf);
          }
        });
        sock.on('end', () => reject(new Error(`client closed after ${buf.length} bytes`)));
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const c = spawn(args.cmd, args.argv((server.address() as net.AddressInfo).port), { stdio: 'ignore' });
    child = c;
    const exited = new Promise((r) => c.on('exit', r));
    const bytes = await got;
    await exited;
    return bytes;
  } finally {
    child?.kill();
    server.close();
  }
}

testWithTools({ ssh: 'openssh-client' }, "ssh: the OpenSSH client's banner matches", async (t) => {
  const bytes = await captureClient(
    {
      cmd: 'ssh',
      argv: (port) => ['-p', String(port), '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'ConnectTimeout=10', 'nobody@127.0.0.1', 'true'],
    },
    (b) => b.includes(0x0a),
  );
  t.true(bytes.toString('latin1').startsWith('SSH-2.0-'));
  t.deepEqual(sshProbe.probe(bytes, MORE), { kind: 'match', protocol: 'other', fields: { name: 'ssh' }, consumed: bytes.indexOf(0x0a) + 1 });
});

testWithTools({ curl: 'curl' }, "socks5: curl's greeting matches", async (t) => {
  const bytes = await captureClient(
    { cmd: 'curl', argv: (port) => ['-s', '-o', '/dev/null', '--max-time', '10', '--socks5', `127.0.0.1:${port}`, 'http://socks.example.test/'] },
    (b) => b.length >= 2 && b.length >= 2 + b[1]!,
  );
  t.is(bytes[0], 5);
  t.deepEqual(socks5Probe.probe(bytes, MORE), { kind: 'match', protocol: 'other', fields: { name: 'socks5' }, consumed: 2 + bytes[1]! });
});
