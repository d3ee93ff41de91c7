/**
 * Client of the Scanflow server extension REST API (`<base_url>scanflow/api/`).
 *
 * Every request goes through `ServerConnection.makeRequest` (token + XSRF headers); failures become
 * an `ApiError` carrying the server's message/reason/fix so the UI can tell the user what to do.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import type { CancelAnswer, EventsPage, RunNotebook, RunRequest } from './contracts.generated';
import type {
  BackendName,
  IAgentInfo,
  IAppInfo,
  IConfig,
  IDeployments,
  IJob,
  IMlflowRunPage,
  IMlflowUi,
  IOutputNotebook,
  IRunSummary,
  IServiceInfo,
  IStepLog,
  ITryAnswer,
  IValidationMessage
} from './types';

export const API_PREFIX = 'scanflow/api';

/** A failed API call: HTTP status (0 = no answer), server message and, when given, a fix. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly reason: string | null = null,
    readonly fix: string | null = null,
    readonly messages: IValidationMessage[] = []
  ) {
    super(message);
    this.name = 'ApiError';
  }

  /** One line for a notification: message, then the fix when the server gave one. */
  get userText(): string {
    return this.fix ? `${this.message} — ${this.fix}` : this.message;
  }
}

/** Build `<base>scanflow/api/<route>?<query>`, dropping undefined/null/'' query values. */
export function apiUrl(
  baseUrl: string,
  route: string,
  query: Record<string, string | number | boolean | null | undefined> = {}
): string {
  const params: Record<string, string> = {};
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== '') {
      params[key] = String(value);
    }
  }
  const url = URLExt.join(baseUrl, API_PREFIX, ...route.split('/').map(encodeURIComponent));
  const search = URLExt.objectToQueryString(params);
  return search ? url + search : url;
}

/** Turn an HTTP error response into an ApiError (JSON `{message, reason, fix, messages}` or text). */
export async function errorFromResponse(response: Response): Promise<ApiError> {
  const text = await response.text();
  let body: any = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (body && typeof body === 'object' && typeof body.message === 'string' && body.message) {
    return new ApiError(
      response.status,
      body.message,
      body.reason ?? null,
      body.fix ?? null,
      Array.isArray(body.messages) ? body.messages : []
    );
  }
  if (response.status === 404) {
    return new ApiError(
      404,
      `Scanflow API not found (${response.url || '404'})`,
      null,
      'Enable the server extension: `jupyter server extension enable scanflow_jupyter.server`, then restart JupyterLab.'
    );
  }
  if (response.status === 403) {
    return new ApiError(403, 'Forbidden by the Jupyter server', null, 'Reload the page to log in again.');
  }
  const statusText = response.statusText || 'error';
  return new ApiError(response.status, `Scanflow API error ${response.status} ${statusText}`);
}

type Query = Record<string, string | number | boolean | null | undefined>;

/** The user's settings the server applies (its `settings` object; snake_case names). */
export interface IUserSettings {
  trackingUri?: string;
  registry?: string;
  kubeContext?: string;
  namespace?: string;
  baseImage?: string;
}

export interface IServerSettingsPayload {
  tracking_uri?: string;
  registry?: string;
  kube_context?: string;
  namespace?: string;
  base_image?: string;
}

/** The non-empty user settings, named as the server expects them. */
export function settingsPayload(settings: IUserSettings): IServerSettingsPayload {
  const names: Array<[keyof IUserSettings, keyof IServerSettingsPayload]> = [
    ['trackingUri', 'tracking_uri'],
    ['registry', 'registry'],
    ['kubeContext', 'kube_context'],
    ['namespace', 'namespace'],
    ['baseImage', 'base_image']
  ];
  const payload: IServerSettingsPayload = {};
  for (const [from, to] of names) {
    const value = (settings[from] ?? '').trim();
    if (value) {
      payload[to] = value;
    }
  }
  return payload;
}

export class ScanflowClient {
  /** The user's Scanflow settings, read at each request (set by the plugin once they load). */
  userSettings: () => IUserSettings = () => ({});

  constructor(readonly settings: ServerConnection.ISettings = ServerConnection.makeSettings()) {}

  /** The non-empty user settings (sent as `settings` in POST bodies, as query parameters otherwise). */
  settingsPayload(): IServerSettingsPayload {
    return settingsPayload(this.userSettings());
  }

  /** `body` plus `settings` when the user set any. */
  private withSettings<T extends object>(body: T): T & { settings?: IServerSettingsPayload } {
    const settings = this.settingsPayload();
    return Object.keys(settings).length ? { ...body, settings } : body;
  }

  private get trackingUri(): string | undefined {
    return this.settingsPayload().tracking_uri;
  }

  url(route: string, query: Query = {}): string {
    return apiUrl(this.settings.baseUrl, route, query);
  }

  /** URL of a run's Server-Sent Events stream; carries the token when the server uses one. */
  eventsUrl(runId: string, after: number): string {
    const token = this.settings.token;
    return this.url(`runs/${runId}/events`, { after, token: token || undefined });
  }

  async request<T>(method: string, route: string, query: Query = {}, body?: unknown): Promise<T> {
    const init: RequestInit = { method };
    if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.headers = { 'Content-Type': 'application/json' };
    }
    let response: Response;
    try {
      response = await ServerConnection.makeRequest(this.url(route, query), init, this.settings);
    } catch (err) {
      throw new ApiError(
        0,
        `Cannot reach the Jupyter server: ${(err as Error).message}`,
        null,
        'Check that JupyterLab is still running, then retry.'
      );
    }
    if (!response.ok) {
      throw await errorFromResponse(response);
    }
    const text = await response.text();
    if (!text) {
      return {} as T;
    }
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new ApiError(response.status, `Invalid JSON from ${route}: ${text.slice(0, 120)}`);
    }
  }

  config(): Promise<IConfig> {
    return this.request('GET', 'config', { ...this.settingsPayload() });
  }

  app(path: string): Promise<IAppInfo> {
    return this.request('GET', 'app', { path });
  }

  /** Validate the editor's (unsaved) notebook content as if saved at `path`. */
  validate(path: string, notebook: unknown): Promise<IAppInfo> {
    return this.request('POST', 'app', {}, { path, notebook });
  }

  /** A step's output notebook (read-only, from the run store). */
  outputNotebook(runId: string, step: string): Promise<IOutputNotebook> {
    return this.request('GET', `runs/${runId}/notebook`, { step });
  }

  /** "Open run as notebook": the server writes `scanflow-run-<id>.ipynb` next to the run's notebook. */
  runAsNotebook(runId: string): Promise<RunNotebook> {
    return this.request('POST', `runs/${runId}/as-notebook`, {}, {});
  }

  async runs(path?: string, limit = 50): Promise<IRunSummary[]> {
    const reply = await this.request<{ runs: IRunSummary[] }>('GET', 'runs', { path, limit });
    return reply.runs ?? [];
  }

  run(runId: string): Promise<IRunSummary> {
    return this.request('GET', `runs/${runId}`);
  }

  startRun(options: {
    path: string;
    backend: BackendName;
    parameters?: Record<string, unknown>;
    resume?: string | null;
    only?: string[] | null;
  }): Promise<IRunSummary> {
    return this.request(
      'POST',
      'runs',
      {},
      this.withSettings({
        path: options.path,
        backend: options.backend,
        parameters: (options.parameters ?? {}) as RunRequest['parameters'],
        resume: options.resume ?? null,
        only: options.only ?? null
      } satisfies RunRequest)
    );
  }

  cancelRun(runId: string): Promise<CancelAnswer> {
    return this.request('POST', `runs/${runId}/cancel`);
  }

  events(runId: string, after: number): Promise<EventsPage> {
    return this.request('GET', `runs/${runId}/events`, { after, format: 'json' });
  }

  logs(runId: string, step: string): Promise<IStepLog> {
    return this.request('GET', `runs/${runId}/logs`, { step });
  }

  mlflowRuns(options: {
    experiment?: string;
    parent?: string;
    filter?: string;
    pageToken?: string | null;
    maxResults?: number;
    orderBy?: string;
  }): Promise<IMlflowRunPage> {
    return this.request('GET', 'mlflow/runs', {
      experiment: options.experiment,
      parent: options.parent,
      filter: options.filter,
      page_token: options.pageToken,
      max_results: options.maxResults,
      order_by: options.orderBy,
      tracking_uri: this.trackingUri
    });
  }

  /** The MLflow UI of the tracking URI setting (the server starts the project's on demand). */
  mlflowUi(): Promise<IMlflowUi> {
    return this.request('POST', 'mlflow-ui', {}, this.withSettings({}));
  }

  async experiments(): Promise<Array<{ experiment_id: string; name: string; lifecycle_stage: string }>> {
    const reply = await this.request<{ experiments: any[] }>('GET', 'mlflow/experiments', { tracking_uri: this.trackingUri });
    return reply.experiments ?? [];
  }

  async agents(path: string): Promise<IAgentInfo[]> {
    const reply = await this.request<{ agents: IAgentInfo[] }>('GET', 'agents', { path });
    return reply.agents ?? [];
  }

  async agentAction(path: string, action: 'start' | 'stop', names: string[] | null = null): Promise<IAgentInfo[]> {
    const reply = await this.request<{ agents: IAgentInfo[] }>('POST', 'agents', {}, this.withSettings({ path, action, names }));
    return reply.agents ?? [];
  }

  async services(path: string): Promise<IServiceInfo[]> {
    const reply = await this.request<{ services: IServiceInfo[] }>('GET', 'services', { path });
    return reply.services ?? [];
  }

  async servicesAction(path: string, action: 'start' | 'stop', names: string[] | null = null): Promise<IServiceInfo[]> {
    const reply = await this.request<{ services: IServiceInfo[] }>('POST', 'services', {}, this.withSettings({ path, action, names }));
    return reply.services ?? [];
  }

  /** The "try it" request, sent by the server to the service (the page holds no service token). */
  tryService(path: string, name: string, payload: unknown): Promise<ITryAnswer> {
    return this.request('POST', 'services/predict', {}, { path, name, payload });
  }

  build(path: string): Promise<IJob> {
    return this.request('POST', 'builds', {}, this.withSettings({ path }));
  }

  buildStatus(buildId: string): Promise<IJob> {
    return this.request('GET', `builds/${buildId}`);
  }

  deployments(path: string): Promise<IDeployments> {
    return this.request('GET', 'deployments', { path, ...this.settingsPayload() });
  }

  deploy(path: string): Promise<IJob> {
    return this.request('POST', 'deployments', {}, this.withSettings({ path }));
  }

  deploymentJob(jobId: string): Promise<IJob> {
    return this.request('GET', `deployments/${jobId}`);
  }

  undeploy(path: string): Promise<IJob> {
    return this.request('DELETE', 'deployments', { path, ...this.settingsPayload() });
  }
}
