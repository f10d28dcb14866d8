// Tests that drive real programs (openssl, curl, haproxy…). Under CI=true a missing program is a test
// failure, never a skip; elsewhere the test is skipped with the Debian package to install.
import test, { type ExecutionContext } from 'ava';
import { spawnSync } from 'node:child_process';

const cache = new Map<string, boolean>();

export function hasTool(cmd: string): boolean {
  let ok = cache.get(cmd);
  if (ok === undefined) {
    const r = spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' });
    ok = r.status === 0;
    cache.set(cmd, ok);
  }
  return ok;
}

/** tool → Debian package that provides it */
export type ToolNeeds = Record<string, string>;

export function testWithTools(
  needs: ToolNeeds,
  title: string,
  fn: (t: ExecutionContext) => Promise<void> | void,
): void {
  const missing = Object.entries(needs).filter(([cmd]) => !hasTool(cmd));
  if (missing.length === 0) {
    test(title, fn);
    return;
  }
  const what = missing.map(([cmd, pkg]) => `${cmd} (apt-get install -y ${pkg})`).join(', ');
  if (process.env['CI'] === 'true') {
    test(title, (t) => {
      t.fail(`missing tool under CI: ${what}`);
    });
  } else {
    test.skip(`${title} — needs ${what}`, () => {});
  }
}
