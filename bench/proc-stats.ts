// CPU time and memory of a process and its descendants, from /proc (proc(5)). The proxies under test
// may be several processes (nginx: master + worker), so every figure is summed over the tree.
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

/** Clock ticks per second for utime/stime (sysconf(_SC_CLK_TCK)); 100 on Linux in practice. */
export const CLK_TCK = ((): number => {
  const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
  const n = Number(r.stdout?.trim());
  return Number.isInteger(n) && n > 0 ? n : 100;
})();

/** Fields after "(comm)": index 0 is field 3 (state) of proc(5). */
function statFields(pid: number): string[] | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // comm may hold spaces and parentheses: split after the last ')'.
    return text.slice(text.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

export function descendants(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const f = statFields(Number(entry));
    if (f === undefined) continue;
    const ppid = Number(f[1]); // field 4
    const list = children.get(ppid) ?? [];
    list.push(Number(entry));
    children.set(ppid, list);
  }
  const out: number[] = [];
  const stack = [root];
  while (stack.length > 0) {
    const p = stack.pop()!;
    for (const c of children.get(p) ?? []) {
      out.push(c);
      stack.push(c);
    }
  }
  return out;
}

export interface TreeUsage {
  readonly userSec: number;
  readonly sysSec: number;
  /** Minor page faults (field 10): a malloc that keeps giving memory back to the kernel shows here. */
  readonly minorFaults: number;
}

/** CPU split into user and kernel time, and minor faults, of the process tree (proc(5) fields 10, 14, 15). */
export function treeUsage(root: number): TreeUsage {
  let utime = 0;
  let stime = 0;
  let minflt = 0;
  for (const pid of [root, ...descendants(root)]) {
    const f = statFields(pid);
    if (f === undefined) continue;
    minflt += Number(f[7]);
    utime += Number(f[11]);
    stime += Number(f[12]);
  }
  return { userSec: utime / CLK_TCK, sysSec: stime / CLK_TCK, minorFaults: minflt };
}

export function usageDelta(a: TreeUsage, b: TreeUsage): TreeUsage {
  return { userSec: b.userSec - a.userSec, sysSec: b.sysSec - a.sysSec, minorFaults: b.minorFaults - a.minorFaults };
}

/** VmRSS of the process and its descendants, in bytes. */
export function treeRssBytes(root: number): number {
  let kib = 0;
  for (const pid of [root, ...descendants(root)]) {
    try {
      const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      if (m !== null) kib += Number(m[1]);
    } catch {
      // gone: nothing to count
    }
  }
  return kib * 1024;
}

/** The hard RLIMIT_NOFILE this process may give its children (`ulimit -Hn`). */
export function hardNofile(): number {
  const r = spawnSync('sh', ['-c', 'ulimit -Hn'], { encoding: 'utf8' });
  const t = r.stdout?.trim();
  if (t === 'unlimited') return 1 << 20;
  const n = Number(t);
  return Number.isInteger(n) && n > 0 ? n : 1024;
}
