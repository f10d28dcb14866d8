// The migration record's cost on the connection path (issue 13 §2), without sockets: ns per noted
// connection for the recorder alone, flushed every 4096 like a 1 s batch under load. The whole-proxy
// cost is the S1/S2 cell `twinport-record` vs `twinport` (bench/run.ts); this isolates the part the
// record adds. `npm run build && node dist/bench/record-cost.js`
import { readFileSync } from 'node:fs';
import { MigrationRecorder } from '../src/migration/record.js';
import { Detector } from '../src/protocol/detector.js';

const N = 1_000_000;
const r = new MigrationRecorder({ maxNames: 10_000, maxPendingClients: 10_000, maxPendingTlsStacks: 2_000 });
const rounds: { plain: number; tls: number }[] = [];
for (let round = 0; round < 5; round++) {
  let t0 = process.hrtime.bigint();
  for (let i = 0; i < N; i++) {
    r.notePlaintext('bench', 'keystone.internal', 'http', `10.0.${(i >> 8) & 3}.${i & 255}`, 'python-requests/2.31', 'GET', '/v3/auth/tokens', 'spliced', 'observe');
    if ((i & 4095) === 0) r.take();
  }
  const plain = Number(process.hrtime.bigint() - t0) / N;
  t0 = process.hrtime.bigint();
  for (let i = 0; i < N; i++) {
    r.noteTls('bench', 'keystone.internal', () => '1.3', ['h2'], () => 't13d1516h2_8daaf6152771_02713d6af862');
    if ((i & 4095) === 0) r.take();
  }
  rounds.push({ plain, tls: Number(process.hrtime.bigint() - t0) / N });
}
const median = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
console.log(`notePlaintext: ${median(rounds.map((x) => x.plain)).toFixed(0)} ns/connection (median of 5 × ${N}, 1024 distinct clients)`);
console.log(`noteTls:       ${median(rounds.map((x) => x.tls)).toFixed(0)} ns/connection (JA4 itself not included: sampled, see docs/migration.md)`);

// What JA4 adds to a hello (why the record samples it and the close line has it behind log.ja4): the
// chromium fixture parsed, then parsed and fingerprinted.
const hello = readFileSync(new URL('../../test/fixtures/chromium.bin', import.meta.url));
const H = 50_000;
function perHello(withJa4: boolean): number {
  let sink = 0;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < H; i++) {
    const d = new Detector({}).detect(hello, { final: false });
    if (withJa4 && d.kind === 'match' && d.protocol === 'tls') sink += d.fields.ja4.length;
  }
  if (sink < 0) console.log(sink);
  return Number(process.hrtime.bigint() - t0) / H / 1000;
}
const parse: number[] = [];
const ja4: number[] = [];
for (let round = 0; round < 5; round++) {
  parse.push(perHello(false));
  ja4.push(perHello(true));
}
console.log(`ClientHello parse: ${median(parse).toFixed(2)} µs; parse + JA4: ${median(ja4).toFixed(2)} µs (chromium fixture, median of 5 × ${H})`);
