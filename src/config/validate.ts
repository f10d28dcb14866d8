// YAML text → TwinportConfig, or a ConfigError listing every problem with its place. Both the file loader
// and the demo config go through parseConfigText, so there is one validator.
import { LineCounter, parseDocument, visit, type Document } from 'yaml';
import { compileConfig, deepFreeze } from './compile.js';
import { ConfigError, formatKeyPath, type ConfigIssue, type PathIssue } from './issues.js';
import { locate } from './positions.js';
import { checkSchema } from './schema-issues.js';
import type { TwinportConfig } from './types.js';

/**
 * Schema issues and compile issues about the same key say the same thing twice ("must be a string" and
 * "durations need a unit"): compile.ts knows what the value means, so its sentence wins.
 */
function mergeIssues(schema: PathIssue[], compiled: readonly PathIssue[]): PathIssue[] {
  // Only issues about a value cover; one about how keys combine ("sni only holds for TLS") does not
  // replace "must be a string" for the same key.
  const covered = new Set(compiled.filter((i) => i.at === undefined || i.at === 'value').map((i) => formatKeyPath(i.path)));
  return [...schema.filter((i) => !covered.has(formatKeyPath(i.path))), ...compiled];
}

/**
 * The document as plain data. toJS throws on an alias to an anchor that does not exist (the parser accepts
 * it) and on alias expansion past maxAliasCount ("billion laughs"; the yaml default is 100): both are YAML
 * errors in the file, reported at the alias when we can find it.
 */
function toPlainValue(doc: Document, lineCounter: LineCounter, file: string): unknown {
  try {
    return doc.toJS({ maxAliasCount: 100 });
  } catch (e) {
    const issues: ConfigIssue[] = [];
    visit(doc, {
      Alias(_, node) {
        if (node.resolve(doc) !== undefined) return;
        const pos = lineCounter.linePos(node.range?.[0] ?? 0);
        issues.push({ file, line: Math.max(pos.line, 1), col: Math.max(pos.col, 1), path: '', message: `unknown alias *${node.source}` });
      },
    });
    if (issues.length === 0) issues.push({ file, line: 1, col: 1, path: '', message: (e as Error).message });
    throw new ConfigError('TWP_ERR_CONFIG_YAML', issues, { cause: e });
  }
}

/**
 * @param file how to name the file in messages (as the user wrote it)
 * @param source what TwinportConfig.source says (the absolute path, or "<demo>")
 */
export function parseConfigText(text: string, file: string, source: string = file): TwinportConfig {
  const lineCounter = new LineCounter();
  // uniqueKeys (the default) makes a repeated key a YAML error instead of "last one wins".
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const issues = doc.errors.map((e): ConfigIssue => {
      const pos = lineCounter.linePos(e.pos[0]);
      return { file, line: Math.max(pos.line, 1), col: Math.max(pos.col, 1), path: '', message: e.message };
    });
    throw new ConfigError('TWP_ERR_CONFIG_YAML', issues);
  }
  const raw = toPlainValue(doc, lineCounter, file);
  if (raw === null || raw === undefined) {
    throw new ConfigError('TWP_ERR_CONFIG_INVALID', [
      { file, line: 1, col: 1, path: '', message: 'the file is empty: expected a mapping with listeners and pools' },
    ]);
  }
  const compiled = compileConfig(raw, source);
  const pathIssues = mergeIssues(checkSchema(raw), compiled.issues);
  if (pathIssues.length > 0) {
    const seen = new Set<string>();
    const issues: ConfigIssue[] = [];
    for (const i of pathIssues) {
      const place = locate(doc, lineCounter, i);
      const issue: ConfigIssue = { file, line: place.line, col: place.col, path: formatKeyPath(i.path), message: i.message };
      const key = `${issue.path}\0${issue.message}`;
      if (seen.has(key)) continue;
      seen.add(key);
      issues.push(issue);
    }
    // Stable sort: issues at one place keep the order they were found in.
    issues.sort((a, b) => a.line - b.line || a.col - b.col);
    throw new ConfigError('TWP_ERR_CONFIG_INVALID', issues);
  }
  return deepFreeze(compiled.config);
}
