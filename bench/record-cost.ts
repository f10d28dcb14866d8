// The migration record's cost on the connection path (issue 13 §2), without sockets: ns per noted
// connection for the recorder alone, flushed every 4096 like a 1 s batch under load. The whole-proxy
// cost is the S1/S2 cell `twinport-record` vs `twinport` (bench/run.ts); this isolates the part the
// record adds. `npm run build && node dist/bench/record-cost.js`
import { MigrationRecorder } from '../src/migration/record.js';

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
