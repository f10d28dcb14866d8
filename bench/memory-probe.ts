// Loaded into twinport by bench/memory-burst.ts through NODE_OPTIONS=--import (a one-off instrumented run:
// twinport itself has no such hook). Every 250 ms it overwrites TWINPORT_BENCH_MEMORY_FILE with
// process.memoryUsage(), so the bench can set V8's own figures (heap, external, ArrayBuffers) beside the
// RSS and the malloc arena it reads from /proc. The timer is unref'd: it never keeps twinport alive.
import { existsSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import v8 from 'node:v8';

const file = process.env['TWINPORT_BENCH_MEMORY_FILE'];
if (file !== undefined && file !== '') {
  const write = (): void => {
    try {
      // A diagnostic run (--expose-gc in NODE_OPTIONS) may ask for one full collection through a trigger
      // file: it tells garbage nobody collected from memory something still holds.
      const gc = (globalThis as { gc?: () => void }).gc;
      if (gc !== undefined && existsSync(`${file}.gc`)) {
        rmSync(`${file}.gc`);
        gc();
      }
      const spaces = Object.fromEntries(v8.getHeapSpaceStatistics().map((s) => [s.space_name, { size: s.space_size, used: s.space_used_size }]));
      // Written aside and renamed, so the bench never reads a half-written file.
      writeFileSync(`${file}.tmp`, JSON.stringify({ at: Date.now(), ...process.memoryUsage(), spaces }));
      renameSync(`${file}.tmp`, file);
    } catch {
      // the bench went away: nothing to report to
    }
  };
  write();
  setInterval(write, 250).unref();
}
