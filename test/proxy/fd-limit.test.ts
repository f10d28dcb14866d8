// The connection ceiling derived from RLIMIT_NOFILE (src/proxy/fd-limit.ts); the process-level behaviour
// is test/integration/fd-ceiling.test.ts.
import test from 'ava';
import { connectionCeiling, FD_SPARE, openDescriptors, softNofileLimit } from '../../src/proxy/fd-limit.js';

const LIMITS = `Limit                     Soft Limit           Hard Limit           Units
Max cpu time              unlimited            unlimited            seconds
Max open files            1024                 524288               files
Max locked memory         8388608              8388608              bytes
`;

test('the soft limit is read from /proc/self/limits; unlimited and unreadable are told apart', (t) => {
  t.is(softNofileLimit(LIMITS), 1024);
  t.is(softNofileLimit(LIMITS.replace('1024 ', 'unlimited ')), Infinity);
  t.is(softNofileLimit('nothing here'), undefined);
  const own = softNofileLimit();
  t.true(own === undefined || own > 0);
  t.true((openDescriptors() ?? 1) > 0);
});

test('two descriptors per connection after those open at start and the spare; a lower max_connections wins', (t) => {
  t.deepEqual(connectionCeiling(undefined, 1024, 30), { limit: Math.floor((1024 - 30 - FD_SPARE) / 2), why: '481 connections: RLIMIT_NOFILE 1024' });
  t.deepEqual(connectionCeiling(100, 1024, 30), { limit: 100, why: 'max_connections 100' });
  t.deepEqual(connectionCeiling(5000, 1024, 30)?.limit, 481, 'a configured value above what descriptors allow is not honoured');
  t.is(connectionCeiling(undefined, Infinity, 30), undefined);
  t.deepEqual(connectionCeiling(7, undefined, undefined), { limit: 7, why: 'max_connections 7' });
  t.is(connectionCeiling(undefined, 40, 30)?.limit, 1, 'never below one');
});
