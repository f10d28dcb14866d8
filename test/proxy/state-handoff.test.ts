// What a binary upgrade hands over (cli/state-handoff.ts): health up/down and learned affinity go through
// the file into a new runtime's HealthChecker and AffinitySet. The processes themselves are in
// test/integration/upgrade.test.ts.
import test from 'ava';
import { existsSync } from 'node:fs';
import { dirname } from 'node:path';
import pino from 'pino';
import { AffinitySet } from '../../src/affinity/affinity-set.js';
import { STATE_FILE_ENV, takeStateFile, writeStateFile } from '../../src/cli/state-handoff.js';
import { parseConfigText } from '../../src/config/load.js';
import { HealthChecker } from '../../src/health/health-checker.js';
import { PoolState } from '../../src/routing/pool-state.js';

const config = parseConfigText(
  `listeners:
  - bind: "127.0.0.1:0"
    routes: [{ match: { protocol: tls }, to: tlsPool }]
pools:
  tlsPool:
    affinity: tls
    health: { type: tcp, interval: 1h }
    servers: ["127.0.0.1:1001", "127.0.0.1:1002"]
`,
  'handoff.yaml',
);
const silent = pino({ level: 'silent' });
const pools = () => new Map(Object.values(config.pools).map((p) => [p.name, { config: p, state: new PoolState(p) }] as const));

test('learned affinity and health go through the state file into the next process; the file and its directory are removed once read', (t) => {
  const oldPools = pools();
  const oldAffinity = new AffinitySet(silent);
  oldAffinity.apply(oldPools);
  const table = (oldPools.get('tlsPool') as { affinity?: { learned: { learn(k: string, s: string): boolean; get(k: string): string | undefined } } }).affinity!.learned;
  table.learn('sid:aa', '127.0.0.1:1002');
  table.learn('tkt:bb', '127.0.0.1:1001');
  const oldHealth = new HealthChecker(silent);
  oldHealth.seedWith([{ pool: 'tlsPool', server: '127.0.0.1:1002', up: false }]);
  oldHealth.apply(oldPools);
  const oldStatus = oldHealth.status();
  oldHealth.stop();
  t.deepEqual(oldStatus.map((h) => h.up), [true, false]);

  const env: NodeJS.ProcessEnv = {};
  env[STATE_FILE_ENV] = writeStateFile({ health: oldStatus.map((h) => ({ pool: h.pool, server: h.server, up: h.up })), affinity: oldAffinity.dump() }, {});
  const file = env[STATE_FILE_ENV]!;
  const { state, problem } = takeStateFile(env);
  t.is(problem, undefined);
  t.false(existsSync(file));
  t.false(existsSync(dirname(file)));
  t.false(STATE_FILE_ENV in env, 'read once');

  const newPools = pools();
  const health = new HealthChecker(silent);
  health.seedWith(state!.health);
  health.apply(newPools);
  health.stop();
  const affinity = new AffinitySet(silent);
  affinity.seedWith(state!.affinity);
  affinity.apply(newPools);
  const state2 = newPools.get('tlsPool')!.state;
  t.deepEqual([state2.isUp(0), state2.isUp(1)], [true, false], 'the server the old process knew to be down starts down');
  const learned = (newPools.get('tlsPool') as { affinity?: { learned: { get(k: string): string | undefined; size: number } } }).affinity!.learned;
  t.is(learned.size, 2);
  t.is(learned.get('sid:aa'), '127.0.0.1:1002');
  t.is(learned.get('tkt:bb'), '127.0.0.1:1001');
  oldAffinity.close();
  affinity.close();
});

test('an unreadable or foreign state file is a problem to report, not a failure', (t) => {
  t.deepEqual(takeStateFile({}), {});
  const r = takeStateFile({ [STATE_FILE_ENV]: '/nonexistent/state.json' });
  t.regex(r.problem ?? '', /ENOENT/);
});

test('a pool with passive health only is not seeded down: no active check would ever bring the server back', (t) => {
  const passive = parseConfigText(
    'listeners:\n  - bind: "127.0.0.1:0"\n    routes: [{ match: { protocol: tls }, to: p }]\npools:\n  p:\n    passive_health: { fall: 1, down_for: 1h }\n    servers: ["127.0.0.1:1001"]\n',
    'passive.yaml',
  );
  const pool = Object.values(passive.pools)[0]!;
  const pools = new Map([[pool.name, { config: pool, state: new PoolState(pool) }]]);
  const health = new HealthChecker(silent);
  health.seedWith([{ pool: 'p', server: '127.0.0.1:1001', up: false }]);
  health.apply(pools);
  t.true(pools.get('p')!.state.isUp(0));
  health.stop();
});
