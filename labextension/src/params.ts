/** Pipeline parameters form: typed input kinds and parsing of the edited values. */
import type { IParameter } from './types';

export type InputKind = 'int' | 'float' | 'bool' | 'str' | 'json';

export function inputKind(param: IParameter): InputKind {
  switch (param.type) {
    case 'int':
    case 'float':
    case 'bool':
    case 'str':
      return param.type;
    default:
      return 'json';
  }
}

/** The text shown in an input for a parameter's default value. */
export function displayValue(param: IParameter): string | boolean {
  const kind = inputKind(param);
  if (kind === 'bool') {
    return Boolean(param.value);
  }
  if (kind === 'str') {
    return param.value === null || param.value === undefined ? '' : String(param.value);
  }
  if (kind === 'json') {
    return JSON.stringify(param.value);
  }
  return String(param.value);
}

/**
 * Values to send for the edited parameters (untouched ones are left to the notebook's defaults),
 * or per-parameter error texts.
 */
export function parseParameters(
  params: IParameter[],
  edits: Record<string, string | boolean>
): { values: Record<string, unknown>; errors: Record<string, string> } {
  const values: Record<string, unknown> = {};
  const errors: Record<string, string> = {};
  for (const p of params) {
    if (!(p.name in edits)) {
      continue;
    }
    const raw = edits[p.name];
    const kind = inputKind(p);
    const text = typeof raw === 'string' ? raw.trim() : '';
    switch (kind) {
      case 'bool':
        values[p.name] = Boolean(raw);
        break;
      case 'int':
        if (!/^[-+]?\d+$/.test(text)) {
          errors[p.name] = `${p.name} must be a whole number (got '${text}')`;
        } else {
          values[p.name] = parseInt(text, 10);
        }
        break;
      case 'float':
        if (text === '' || !isFinite(Number(text))) {
          errors[p.name] = `${p.name} must be a number (got '${text}')`;
        } else {
          values[p.name] = Number(text);
        }
        break;
      case 'str':
        values[p.name] = typeof raw === 'string' ? raw : String(raw);
        break;
      case 'json':
        try {
          values[p.name] = JSON.parse(text);
        } catch {
          errors[p.name] = `${p.name} must be a JSON literal such as [1, 2] or {"a": 1} (got '${text}')`;
        }
        break;
    }
  }
  return { values, errors };
}

/** Names of the parameters whose edited value differs from the notebook's (a value typed back is not). */
export function changedParams(params: IParameter[], edits: Record<string, string | boolean>): Set<string> {
  const changed = new Set<string>();
  for (const p of params) {
    if (!(p.name in edits)) {
      continue;
    }
    const edit = edits[p.name];
    const original = displayValue(p);
    const kind = inputKind(p);
    if (kind === 'int' || kind === 'float') {
      const text = String(edit).trim();
      if (text === '' || Number(text) !== Number(original)) {
        changed.add(p.name);
      }
    } else if (kind === 'json') {
      try {
        if (JSON.stringify(JSON.parse(String(edit))) !== JSON.stringify(p.value)) {
          changed.add(p.name);
        }
      } catch {
        changed.add(p.name);
      }
    } else if (edit !== original) {
      changed.add(p.name);
    }
  }
  return changed;
}

/** Disabled buttons' reasons as lines to show (buttons with the same reason share a line). */
export function reasonLines(blocked: Array<[string, string | null | undefined]>): string[] {
  const byReason = new Map<string, string[]>();
  for (const [label, reason] of blocked) {
    if (reason) {
      byReason.set(reason, [...(byReason.get(reason) ?? []), label]);
    }
  }
  return [...byReason.entries()].map(([reason, labels]) => `${labels.join(', ')}: ${reason}`);
}
