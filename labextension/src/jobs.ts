/** Finished build/deploy jobs told in a few readable lines: what failed and the fix, not raw JSON. */
import type { IJob } from './types';

export interface IJobFailure {
  /** What failed, one or a few sentences. */
  message: string;
  /** How to fix it, when the job said. */
  fix: string | null;
  /** Further problems (import checks, validation messages), one line each. */
  details: string[];
}

/** Split "… Fix: do this" (the CLI's sentences) into the message and the fix. */
export function splitFix(text: string): { message: string; fix: string | null } {
  const m = /^([\s\S]*?)[.;]?\s*\b[Ff]ix:\s*([\s\S]+)$/.exec(text.trim());
  return m ? { message: m[1].trim(), fix: m[2].trim() } : { message: text.trim(), fix: null };
}

function lastLines(log: string, count: number): string {
  const lines = log
    .split('\n')
    .map(l => l.trim())
    .filter(l => l && !/^[{}[\],]+$/.test(l));
  return lines.slice(-count).join('\n');
}

/** The failure of a finished job from its CLI JSON (`result`), else the end of its log. */
export function jobFailure(job: IJob): IJobFailure {
  const result = (job.result ?? null) as any;
  const details: string[] = [];
  if (result && typeof result === 'object') {
    for (const m of Array.isArray(result.messages) ? result.messages : []) {
      if (m && m.severity === 'error') {
        details.push(`${m.cell ? `cell ${m.cell}: ` : ''}${m.text}${m.fix ? ` — fix: ${m.fix}` : ''}`);
      }
    }
    for (const [name, step] of Object.entries((result.steps ?? {}) as Record<string, any>)) {
      for (const p of step?.import_check?.problems ?? []) {
        details.push(`${name}: ${p.error ?? p.module}${p.fix ? ` — fix: ${p.fix}` : ''}`);
      }
    }
    if (typeof result.error === 'string' && result.error) {
      const [first, ...rest] = result.error.split('\n');
      const { message, fix } = splitFix(first);
      return { message, fix, details: [...rest.filter(Boolean), ...details] };
    }
    if (details.length) {
      return { message: `${details.length} problem${details.length === 1 ? '' : 's'} found`, fix: null, details };
    }
  }
  const tail = lastLines(String(job.log ?? ''), 3);
  const { message, fix } = splitFix(tail || `exit code ${String(job.exit_code ?? '?')}`);
  return { message, fix, details };
}

function cut(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/**
 * One notification line: what failed, then the fix. JupyterLab cuts long toasts, so the message
 * is shortened first (the log dialog has everything).
 */
export function failureText(label: string, failure: IJobFailure): string {
  // parenthesised details (the engine's own error text) are in the log dialog
  const message = failure.message.replace(/\s*\((?:[^()]|\([^()]*\))*\)/g, '') || failure.message;
  const head = `${label} failed: ${cut(message, failure.fix ? 90 : 200)}`;
  return failure.fix ? `${head} — Fix: ${cut(failure.fix, 160)}` : head;
}
