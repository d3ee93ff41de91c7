import { ServerConnection } from '@jupyterlab/services';

import { ScanflowClient, settingsPayload, type IUserSettings } from '../api';

interface ICall {
  url: URL;
  method: string;
  body: any;
}

/** A client whose fetch (the network boundary) records each request and answers `{}`-like JSON. */
function clientWith(user: IUserSettings) {
  const calls: ICall[] = [];
  const fetchImpl = async (input: RequestInfo, init?: RequestInit) => {
    const request = new Request(input, init);
    const text = request.method === 'GET' ? '' : await request.text();
    calls.push({
      url: new URL(request.url.replace(/[?&]\d{12,}$/, '')),
      method: request.method,
      body: text ? JSON.parse(text) : null
    });
    return new Response('{"runs": [], "experiments": [], "job_id": "0123456789ab", "status": "running"}', {
      status: 200,
      headers: { 'Content-Type': 'application/json' }
    });
  };
  const settings = ServerConnection.makeSettings({
    baseUrl: 'http://127.0.0.1:8888/',
    wsUrl: 'ws://127.0.0.1:8888/',
    token: '',
    appendToken: false,
    fetch: fetchImpl as any
  });
  const client = new ScanflowClient(settings);
  client.userSettings = () => user;
  return { client, calls };
}

const USER: IUserSettings = {
  trackingUri: 'sqlite:////tmp/team/mlflow.db',
  registry: '127.0.0.1:5000',
  kubeContext: 'lab',
  namespace: 'team-a',
  baseImage: ' scanflow/base '
};
const PAYLOAD = {
  tracking_uri: 'sqlite:////tmp/team/mlflow.db',
  registry: '127.0.0.1:5000',
  kube_context: 'lab',
  namespace: 'team-a',
  base_image: 'scanflow/base'
};

describe('settingsPayload', () => {
  it('maps the settings to the server names and drops empty ones', () => {
    expect(settingsPayload(USER)).toEqual(PAYLOAD);
    expect(settingsPayload({ trackingUri: '', registry: '  ', namespace: 'n' })).toEqual({ namespace: 'n' });
  });
});

describe('ScanflowClient sends the user settings', () => {
  it('with POST runs, builds, deployments and agents', async () => {
    const { client, calls } = clientWith(USER);
    await client.startRun({ path: 'nb.ipynb', backend: 'local' });
    await client.build('nb.ipynb');
    await client.deploy('nb.ipynb');
    await client.agentAction('nb.ipynb', 'start');
    expect(calls.map(c => `${c.method} ${c.url.pathname}`)).toEqual([
      'POST /scanflow/api/runs',
      'POST /scanflow/api/builds',
      'POST /scanflow/api/deployments',
      'POST /scanflow/api/agents'
    ]);
    for (const call of calls) {
      expect(call.body.settings).toEqual(PAYLOAD);
      expect(call.body.path).toBe('nb.ipynb');
    }
  });

  it('as query parameters of GET/DELETE deployments and GET config', async () => {
    const { client, calls } = clientWith(USER);
    await client.deployments('nb.ipynb');
    await client.undeploy('nb.ipynb');
    await client.config();
    expect(Object.fromEntries(calls[0].url.searchParams)).toEqual({ path: 'nb.ipynb', ...PAYLOAD });
    expect(calls[1].method).toBe('DELETE');
    expect(Object.fromEntries(calls[1].url.searchParams)).toEqual({ path: 'nb.ipynb', ...PAYLOAD });
    expect(Object.fromEntries(calls[2].url.searchParams)).toEqual(PAYLOAD);
  });

  it('as tracking_uri of the MLflow queries', async () => {
    const { client, calls } = clientWith(USER);
    await client.mlflowRuns({ experiment: 'diamond' });
    await client.experiments();
    expect(calls[0].url.searchParams.get('tracking_uri')).toBe(PAYLOAD.tracking_uri);
    expect(calls[1].url.pathname).toBe('/scanflow/api/mlflow/experiments');
    expect(calls[1].url.searchParams.get('tracking_uri')).toBe(PAYLOAD.tracking_uri);
  });

  it('reads the settings at each request and sends none when all are empty', async () => {
    let user: IUserSettings = {};
    const { client, calls } = clientWith({});
    client.userSettings = () => user;
    await client.startRun({ path: 'nb.ipynb', backend: 'local' });
    await client.mlflowRuns({ experiment: 'e' });
    user = { trackingUri: 'http://mlflow:5000' };
    await client.startRun({ path: 'nb.ipynb', backend: 'local' });
    expect('settings' in calls[0].body).toBe(false);
    expect(calls[1].url.searchParams.has('tracking_uri')).toBe(false);
    expect(calls[2].body.settings).toEqual({ tracking_uri: 'http://mlflow:5000' });
  });
});
