// Where the config fixtures and docs are, from the compiled test in dist/test/config/.
import { fileURLToPath } from 'node:url';

export const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));

export function fixture(name: string): string {
  return `${repoRoot}test/fixtures/config/${name}`;
}
