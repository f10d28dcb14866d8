// Structural validation: ajv against ConfigSchema, its errors turned into one clear sentence per problem.
// ajv with allErrors reports, for a union ("host:port" string | server mapping), the errors of every branch
// plus "must match a schema in anyOf"; we keep only the branch whose JSON type the value has, or say in one
// line which types are allowed.
import { Ajv, type ErrorObject } from 'ajv';
import { ConfigSchema } from './schema.js';
import type { KeyPath, PathIssue } from './issues.js';

const ajv = new Ajv({ allErrors: true, verbose: true, strict: true });
const validate = ajv.compile(ConfigSchema);

type JsonType = 'null' | 'boolean' | 'integer' | 'number' | 'string' | 'array' | 'object';

function typeMatches(schemaType: unknown, value: unknown): boolean {
  switch (schemaType) {
    case 'null':
      return value === null;
    case 'boolean':
      return typeof value === 'boolean';
    case 'integer':
      return Number.isInteger(value);
    case 'number':
      return typeof value === 'number';
    case 'string':
      return typeof value === 'string';
    case 'array':
      return Array.isArray(value);
    case 'object':
      return typeof value === 'object' && value !== null && !Array.isArray(value);
    default:
      return false;
  }
}

function describeType(schema: Record<string, unknown>): string {
  if (typeof schema['title'] === 'string') return schema['title'];
  const t = schema['type'] as JsonType | undefined;
  switch (t) {
    case 'null':
      return 'null';
    case 'boolean':
      return 'true or false';
    case 'integer':
      return 'a whole number';
    case 'number':
      return 'a number';
    case 'string':
      return Array.isArray(schema['enum']) ? `one of ${(schema['enum'] as string[]).join(', ')}` : 'a string';
    case 'array': {
      const items = (schema['items'] ?? {}) as Record<string, unknown>;
      if (items['type'] === 'string' && items['enum'] === undefined) return 'a list of strings';
      return items['type'] === 'object' ? 'a list of mappings' : 'a list';
    }
    case 'object':
      return 'a mapping';
    default:
      return 'something else';
  }
}

function joinAlternatives(parts: string[]): string {
  if (parts.length <= 1) return parts.join('');
  return `${parts.slice(0, -1).join(', ')} or ${parts[parts.length - 1]}`;
}

/**
 * Keeps, for every anyOf, only the errors of the branch the value's type selects. Deepest unions first, so
 * an outer union's filtering also drops what an inner one synthesised in a branch that was not chosen.
 */
function resolveUnions(errors: ErrorObject[]): ErrorObject[] {
  let rest = [...errors];
  const unions = rest.filter((e) => e.keyword === 'anyOf').sort((a, b) => b.schemaPath.length - a.schemaPath.length);
  for (const u of unions) {
    const branches = u.schema as Record<string, unknown>[];
    const chosen = branches.findIndex((b) => typeMatches(b['type'], u.data));
    // The same union schema applies to every item of a list: its errors belong to this value's subtree.
    const inside = (e: ErrorObject) =>
      e.schemaPath.startsWith(`${u.schemaPath}/`) &&
      (e.instancePath === u.instancePath || e.instancePath.startsWith(`${u.instancePath}/`));
    rest = rest.filter((e) => e !== u && (!inside(e) || e.schemaPath.startsWith(`${u.schemaPath}/${chosen}/`)));
    if (chosen < 0) {
      rest.push({
        ...u,
        keyword: 'union-type',
        message: `must be ${joinAlternatives(branches.map(describeType))}`,
      });
    }
  }
  return rest;
}

function pointerToPath(pointer: string, root: unknown): (string | number)[] {
  if (pointer === '') return [];
  const out: (string | number)[] = [];
  let node: unknown = root;
  for (const raw of pointer.slice(1).split('/')) {
    const seg = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (Array.isArray(node)) {
      out.push(Number(seg));
      node = node[Number(seg)];
    } else {
      out.push(seg);
      node = typeof node === 'object' && node !== null ? (node as Record<string, unknown>)[seg] : undefined;
    }
  }
  return out;
}

function levenshtein(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return row[b.length]!;
}

function unknownKeyMessage(key: string, allowed: string[]): string {
  const close = allowed
    .map((k) => ({ k, d: levenshtein(key.toLowerCase(), k) }))
    .filter(({ d }) => d <= Math.max(1, Math.floor(key.length / 3)))
    .sort((x, y) => x.d - y.d)[0];
  const hint = close === undefined ? `allowed: ${allowed.join(', ')}` : `did you mean "${close.k}"?`;
  return `unknown key "${key}" (${hint})`;
}

function toIssue(e: ErrorObject, root: unknown): PathIssue {
  const path: KeyPath = pointerToPath(e.instancePath, root);
  const params = e.params as Record<string, unknown>;
  const parent = (e.parentSchema ?? {}) as Record<string, unknown>;
  switch (e.keyword) {
    case 'additionalProperties': {
      const key = String(params['additionalProperty']);
      const allowed = Object.keys((parent['properties'] as object | undefined) ?? {});
      return { path: [...path, key], message: unknownKeyMessage(key, allowed), at: 'key' };
    }
    case 'required':
      return { path: [...path, String(params['missingProperty'])], message: 'required key is missing', at: 'parent' };
    case 'type':
      return { path, message: `must be ${describeType(parent)}` };
    case 'union-type':
      return { path, message: e.message ?? 'has the wrong type' };
    case 'enum':
      return { path, message: `must be one of ${(params['allowedValues'] as unknown[]).join(', ')}` };
    case 'minItems':
      return { path, message: params['limit'] === 1 ? 'must not be empty' : `must have at least ${String(params['limit'])} items` };
    case 'minProperties':
      return { path, message: 'must not be empty' };
    case 'minLength':
      return { path, message: 'must not be empty' };
    case 'maxLength':
      return { path, message: `must be at most ${String(params['limit'])} characters` };
    case 'uniqueItems':
      return { path, message: `lists the same value twice (items ${String(params['j'])} and ${String(params['i'])})` };
    case 'minimum':
    case 'maximum': {
      const lo = parent['minimum'];
      const hi = parent['maximum'];
      const what = parent['type'] === 'integer' ? 'a whole number' : 'a number';
      if (typeof lo === 'number' && typeof hi === 'number') return { path, message: `must be ${what} from ${lo} to ${hi}` };
      return { path, message: e.keyword === 'minimum' ? `must be at least ${String(lo)}` : `must be at most ${String(hi)}` };
    }
    default:
      return { path, message: e.message ?? `fails the "${e.keyword}" rule` };
  }
}

/** Every structural problem of `value` (already parsed YAML) against ConfigSchema. */
export function checkSchema(value: unknown): PathIssue[] {
  if (validate(value)) return [];
  return resolveUnions(validate.errors ?? []).map((e) => toIssue(e, value));
}
