// Where a key path is in the YAML text. Errors point at the value that is wrong, at the key itself when the
// key is unknown, and at the mapping that lacks a key when one is missing; a path that does not exist in
// the text (a default, a demo config) falls back to the deepest node that does.
import { isAlias, isMap, isScalar, isSeq, type Document, type LineCounter, type Node } from 'yaml';
import type { KeyPath, PathIssue } from './issues.js';

export interface Place {
  readonly line: number;
  readonly col: number;
}

function startOf(node: Node | null | undefined): number | undefined {
  return node?.range?.[0];
}

/** A `key:` with nothing after it parses as an empty null scalar that sits at the end of the line. */
function isEmptyScalar(node: unknown): boolean {
  return isScalar(node) && node.value === null && (node.source === '' || node.source === undefined);
}

export function locate(doc: Document, lines: LineCounter, issue: PathIssue): Place {
  const path: KeyPath = issue.at === 'parent' ? issue.path.slice(0, -1) : issue.path;
  let node: unknown = doc.contents;
  let offset = startOf(doc.contents as Node | null) ?? 0;
  for (let i = 0; i < path.length; i++) {
    if (isAlias(node)) node = node.resolve(doc);
    const seg = path[i]!;
    const last = i === path.length - 1;
    if (isMap(node)) {
      const pair = node.items.find((p) => String(isScalar(p.key) ? p.key.value : p.key) === String(seg));
      if (pair === undefined) break;
      const keyStart = startOf(pair.key as Node | null);
      if (last && (issue.at === 'key' || pair.value === null || isEmptyScalar(pair.value))) {
        offset = keyStart ?? offset;
        break;
      }
      node = pair.value;
      offset = startOf(node as Node | null) ?? keyStart ?? offset;
    } else if (isSeq(node) && typeof seg === 'number') {
      const item = node.items[seg];
      if (item === undefined) break;
      node = item;
      offset = startOf(item as Node | null) ?? offset;
    } else {
      break;
    }
  }
  const pos = lines.linePos(offset);
  return { line: Math.max(pos.line, 1), col: Math.max(pos.col, 1) };
}
