import { ServerConnection } from '@jupyterlab/services';

import { ApiError, ScanflowClient, apiUrl } from '../api';

interface ICall {
  url: string;
  method: string;
  body: string | null;
  headers: Headers;
}

/** A client whose fetch (the network boundary) answers from a table and records calls. */
function clientWith(answer: (url: string) => { status: number; body: string }, token = '') {
  const calls: ICall[] = [];
  const fetchImpl = async (input: RequestInfo, init?: RequestInit) => {
    const request = new Request(input, init);
    calls.push({
      // ServerConnection appends a timestamp cache-buster (`&1712345678901`): drop it.
      url: request.url.replace(/[?&]\d{12,}$/, ''),
      method: request.method,
      body: request.method === 'GET' ? null : await request.text(),
      headers: request.headers
    });
    const { status, body } = answer(request.url);
    return new Response(body, { status, headers: { 'Content-Type': 'application/json' } });
  };
  const settings = ServerConnection.makeSettings({
    baseUrl: 'http://127.0.0.1:8888/base/',
    wsUrl: 'ws://127.0.0.1:8888/base/',
    token,
    appendToken: false,
    fetch: fetchImpl as any
  });
  return { client: new ScanflowClient(settings), calls };
}

describe('apiUrl', () => {
  it('joins base and route and drops empty query values', () => {
    expect(apiUrl('http://h/base/', 'app', { path: 'notebooks/a b.ipynb', x: undefined, y: null, z: '' })).toBe(
      'http://h/base/scanflow/api/app?path=notebooks%2Fa%20b.ipynb'
    );
    expect(apiUrl('/', 'runs/r1/events', { after: 0, format: 'json' })).toBe('/scanflow/api/runs/r1/events?after=0&format=json');
  });

  it('encodes each route segment', () => {
    expect(apiUrl('/b/', 'runs/a?b/logs')).toBe('/b/scanflow/api/runs/a%3Fb/logs');
  });
});

describe('ScanflowClient', () => {
  it('GETs app with the notebook path', async () => {
    const { client, calls } = clientWith(() => ({ status: 200, body: '{"nodes": [], "edges": []}' }));
    const app = await client.app('notebooks/diamond.ipynb');
    expect(app.nodes).toEqual([]);
    expect(calls[0].method).toBe('GET');
    expect(calls[0].url).toBe('http://127.0.0.1:8888/base/scanflow/api/app?path=notebooks%2Fdiamond.ipynb');
  });

  it('POSTs a run with backend, parameters, resume and only', async () => {
    const { client, calls } = clientWith(() => ({ status: 202, body: '{"run_id": "r1", "status": "running", "steps": {}}' }));
    const run = await client.startRun({ path: 'nb.ipynb', backend: 'docker', parameters: { n_rows: 5 }, resume: 'r0' });
    expect(run.run_id).toBe('r1');
    expect(calls[0].method).toBe('POST');
    expect(calls[0].url).toBe('http://127.0.0.1:8888/base/scanflow/api/runs');
    expect(JSON.parse(calls[0].body!)).toEqual({ path: 'nb.ipynb', backend: 'docker', parameters: { n_rows: 5 }, resume: 'r0', only: null });
  });

  it('builds mlflow runs queries with paging and filters', async () => {
    const { client, calls } = clientWith(() => ({ status: 200, body: '{"runs": [], "next_page_token": null}' }));
    await client.mlflowRuns({ experiment: 'diamond', filter: "metrics.accuracy > 0.5", pageToken: 'T1', maxResults: 20 });
    const url = new URL(calls[0].url);
    expect(url.pathname).toBe('/base/scanflow/api/mlflow/runs');
    expect(Object.fromEntries(url.searchParams)).toEqual({
      experiment: 'diamond',
      filter: 'metrics.accuracy > 0.5',
      page_token: 'T1',
      max_results: '20'
    });
  });

  it('uses DELETE for undeploy and the polling URL for events', async () => {
    const { client, calls } = clientWith(() => ({ status: 200, body: '{"events": [], "finished": true}' }));
    await client.undeploy('nb.ipynb');
    await client.events('r1', 7);
    expect(calls.map(c => c.method)).toEqual(['DELETE', 'GET']);
    expect(calls[1].url).toBe('http://127.0.0.1:8888/base/scanflow/api/runs/r1/events?after=7&format=json');
  });

  it('maps a JSON error to ApiError with message, reason, fix and validation messages', async () => {
    const body = JSON.stringify({
      message: 'notebook has 1 error',
      reason: 'invalid',
      fix: 'declare --outputs x',
      messages: [{ severity: 'error', code: 'SF101', cell: 3, text: 'x missing', fix: 'declare it' }]
    });
    const { client } = clientWith(() => ({ status: 400, body }));
    const err: ApiError = await client.startRun({ path: 'a.ipynb', backend: 'local' }).catch(e => e);
    expect(err).toBeInstanceOf(ApiError);
    expect(err.status).toBe(400);
    expect(err.message).toBe('notebook has 1 error');
    expect(err.fix).toBe('declare --outputs x');
    expect(err.messages[0].cell).toBe(3);
    expect(err.userText).toBe('notebook has 1 error — declare --outputs x');
  });

  it('maps a bad MLflow filter (400) to the server message', async () => {
    const { client } = clientWith(() => ({ status: 400, body: '{"message": "Invalid clause(s) in filter string: \'bogus\'"}' }));
    const err: ApiError = await client.mlflowRuns({ experiment: 'x', filter: 'bogus' }).catch(e => e);
    expect(err.message).toContain('Invalid clause');
  });

  it('explains a 404 without JSON (server extension missing) and a 503 backend error', async () => {
    const { client } = clientWith(url => (url.includes('config') ? { status: 404, body: '<html>nope</html>' } : { status: 503, body: '{"message": "Docker is not running", "fix": "make docker"}' }));
    const notFound: ApiError = await client.config().catch(e => e);
    expect(notFound.status).toBe(404);
    expect(notFound.fix).toContain('jupyter server extension enable');
    const unavailable: ApiError = await client.build('nb.ipynb').catch(e => e);
    expect(unavailable.status).toBe(503);
    expect(unavailable.userText).toBe('Docker is not running — make docker');
  });

  it('turns a network failure into status 0 with a fix', async () => {
    const settings = ServerConnection.makeSettings({
      baseUrl: 'http://127.0.0.1:1/',
      fetch: (async () => {
        throw new TypeError('Failed to fetch');
      }) as any
    });
    const err: ApiError = await new ScanflowClient(settings).config().catch(e => e);
    expect(err.status).toBe(0);
    expect(err.message).toContain('Cannot reach the Jupyter server');
  });

  it('puts the token into the EventSource URL only when there is one', () => {
    expect(clientWith(() => ({ status: 200, body: '' }), 'secret').client.eventsUrl('r1', 3)).toBe(
      'http://127.0.0.1:8888/base/scanflow/api/runs/r1/events?after=3&token=secret'
    );
    expect(clientWith(() => ({ status: 200, body: '' })).client.eventsUrl('r1', 0)).toBe(
      'http://127.0.0.1:8888/base/scanflow/api/runs/r1/events?after=0'
    );
  });
});
