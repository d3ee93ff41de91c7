/** State logic of the sidebar's Services section (pure: tested with Jest). */
import type { IAppInfo, IServiceInfo, ITryAnswer } from './types';

/** The example payload the "try it" box starts with. */
export const EXAMPLE_PAYLOAD = '{"inputs": [1, 2, 3]}';

/** One row per `%%service` cell of the notebook, with the supervisor's state when it has one. */
export function serviceRows(app: IAppInfo | null, listed: IServiceInfo[]): IServiceInfo[] {
  const byName = new Map(listed.map(s => [s.name, s]));
  const declared = (app?.nodes ?? []).filter(n => n.kind === 'service').map(n => n.id);
  const rows: IServiceInfo[] = declared.map(
    name =>
      byName.get(name) ?? {
        app: app?.app?.name ?? '',
        name,
        notebook: '',
        state: 'stopped',
        kind: 'custom',
        model: null,
        version: null,
        port: null,
        pid: null,
        url: null,
        restarts: 0,
        log: null,
        error: null
      }
  );
  // a service still registered but no longer in the notebook is shown too (so it can be stopped)
  return [...rows, ...listed.filter(s => !declared.includes(s.name))];
}

/** Whether to keep polling: a state that changes by itself. */
export function isSettling(rows: IServiceInfo[]): boolean {
  return rows.some(s => s.state === 'starting' || s.state === 'restarting');
}

/** "clf version 3", "predict() of the cell", or "" (stopped, nothing known). */
export function servedText(s: IServiceInfo): string {
  if (s.model) {
    return s.version ? `${s.model} version ${s.version}` : s.model;
  }
  return s.kind === 'custom' ? 'predict() of its cell' : '';
}

/** The payload textarea's text as JSON, or the reason it is not JSON. */
export function parsePayload(text: string): { ok: true; value: unknown } | { ok: false; error: string } {
  if (!text.trim()) {
    return { ok: false, error: 'The payload is empty: write a JSON object such as {"inputs": [1, 2]}.' };
  }
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch (err) {
    return { ok: false, error: `The payload is not JSON: ${(err as Error).message}` };
  }
}

/** The service's answer as a headline ("200 OK" / "422 refused") and pretty JSON (or its text). */
export function answerView(a: ITryAnswer): { ok: boolean; head: string; body: string } {
  const ok = a.status >= 200 && a.status < 300;
  const reason: Record<number, string> = { 400: 'bad request', 422: 'refused: the payload does not fit', 500: 'predict() failed', 503: 'not ready' };
  const head = ok ? `✔ ${a.status} OK` : `✖ ${a.status} ${reason[a.status] ?? 'error'}`;
  const error = !ok && a.answer && typeof a.answer === 'object' ? (a.answer as { error?: unknown }).error : undefined;
  // a refusal shows the service's error text; an answer shows its JSON
  const body = typeof error === 'string' ? error : typeof a.answer === 'string' ? a.answer : JSON.stringify(a.answer, null, 2);
  return { ok, head, body };
}
