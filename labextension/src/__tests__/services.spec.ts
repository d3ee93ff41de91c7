import { EXAMPLE_PAYLOAD, answerView, isSettling, parsePayload, serviceRows, servedText } from '../services';
import type { IAppInfo, IServiceInfo } from '../types';

const app = (names: string[]): IAppInfo => ({
  path: 'svc.ipynb',
  app: { name: 'scoring', team: null, notebook: 'svc.ipynb' },
  nodes: names.map((id, i) => ({ id, kind: 'service', cell: i + 1, inputs: [], outputs: [] })),
  edges: [],
  parameters: [],
  messages: [],
  valid: true
});

const svc = (name: string, state: string, extra: Partial<IServiceInfo> = {}): IServiceInfo => ({
  app: 'scoring', name, notebook: '/x/svc.ipynb', state, kind: 'custom', model: null, version: null, port: 8000,
  pid: 1, url: 'http://127.0.0.1:8000', restarts: 0, log: null, error: null, ...extra
});

describe('serviceRows', () => {
  it('shows every %%service cell, stopped when the supervisor does not know it', () => {
    const rows = serviceRows(app(['adder', 'scorer']), [svc('scorer', 'running')]);
    expect(rows.map(r => [r.name, r.state])).toEqual([['adder', 'stopped'], ['scorer', 'running']]);
    expect(rows[0].url).toBeNull();
  });
  it('keeps a registered service that left the notebook, so it can be stopped', () => {
    expect(serviceRows(app([]), [svc('old', 'running')]).map(r => r.name)).toEqual(['old']);
    expect(serviceRows(null, [])).toEqual([]);
  });
});

describe('isSettling', () => {
  it('polls while a service starts or restarts, not once it runs, stopped or failed', () => {
    expect(isSettling([svc('a', 'starting')])).toBe(true);
    expect(isSettling([svc('a', 'running'), svc('b', 'restarting')])).toBe(true);
    expect(isSettling([svc('a', 'running'), svc('b', 'failed'), svc('c', 'stopped')])).toBe(false);
  });
});

describe('servedText', () => {
  it('names the model and its version, or the cell for a custom service', () => {
    expect(servedText(svc('a', 'running', { kind: 'mlflow', model: 'clf', version: '3' }))).toBe('clf version 3');
    expect(servedText(svc('a', 'starting', { kind: 'mlflow', model: 'clf' }))).toBe('clf');
    expect(servedText(svc('a', 'running'))).toBe('predict() of its cell');
  });
});

describe('parsePayload', () => {
  it('accepts the example and refuses empty or broken JSON with a reason', () => {
    expect(parsePayload(EXAMPLE_PAYLOAD)).toEqual({ ok: true, value: { inputs: [1, 2, 3] } });
    const empty = parsePayload('  ');
    expect(empty.ok).toBe(false);
    const broken = parsePayload('{"inputs": [1,');
    expect(broken.ok === false && broken.error.startsWith('The payload is not JSON')).toBe(true);
  });
});

describe('answerView', () => {
  it('shows a 200 as OK with pretty JSON and a 422 as refused with the error text', () => {
    expect(answerView({ status: 200, answer: { predictions: [6] } })).toEqual({
      ok: true, head: '✔ 200 OK', body: '{\n  "predictions": [\n    6\n  ]\n}'
    });
    const refused = answerView({ status: 422, answer: { error: 'inputs.0: not a number' } });
    expect(refused.ok).toBe(false);
    expect(refused.head).toBe('✖ 422 refused: the payload does not fit');
    expect(refused.body).toBe('inputs.0: not a number');
    expect(answerView({ status: 400, answer: { detail: 'x' } }).body).toBe('{\n  "detail": "x"\n}');
    expect(answerView({ status: 502, answer: 'Bad gateway' })).toEqual({ ok: false, head: '✖ 502 error', body: 'Bad gateway' });
  });
});
