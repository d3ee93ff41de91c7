/**
 * State of Scanflow for one notebook (its app, its current/last run, its agents), shared by the
 * sidebar and the cell badges of that notebook. Changes are announced on `changed`.
 */
import { Signal, type ISignal } from '@lumino/signaling';

import { ApiError, type ScanflowClient } from './api';
import { RunFollower } from './live';
import { fromSummary, initialRunState, reduceEvents, type IRunState } from './state';
import type { BackendName, IAgentInfo, IAppInfo, IConfig, IRunSummary } from './types';

export type ErrorReporter = (error: unknown, context: string) => void;

export class NotebookScanflowModel {
  app: IAppInfo | null = null;
  appError: ApiError | null = null;
  run: IRunState | null = null;
  runSummary: IRunSummary | null = null;
  agents: IAgentInfo[] = [];
  agentsError: ApiError | null = null;
  /** Action name → true while its request is in flight. */
  busy: Record<string, boolean> = {};
  /** Bumped when a run starts or finishes (here or elsewhere), so the Runs section reloads. */
  runsVersion = 0;
  /** The backend picked in the sidebar (null: the default); kept across tab switches. */
  backend: BackendName | null = null;
  /** Parameter values edited in the sidebar's form; kept across tab switches. */
  edits: Record<string, string | boolean> = {};
  /** Where `app` comes from: the saved file or the editor's unsaved content. */
  appSource: 'saved' | 'editor' = 'saved';
  private follower: RunFollower | null = null;
  private watchTimer: ReturnType<typeof setInterval> | null = null;
  private runsSignature: string | null = null;
  /** The notebook's latest runs in the run store, by Scanflow run id (resumed_from, backend, …). */
  storeRuns: Record<string, IRunSummary> = {};
  private validating = 0;
  private readonly _changed = new Signal<this, void>(this);
  private disposed = false;

  constructor(
    readonly client: ScanflowClient,
    readonly path: string,
    private readonly report: ErrorReporter
  ) {}

  get changed(): ISignal<this, void> {
    return this._changed;
  }

  get isRunning(): boolean {
    return !!this.run && !this.run.finished;
  }

  emit(): void {
    if (!this.disposed) {
      this._changed.emit();
    }
  }

  dispose(): void {
    this.disposed = true;
    this.unwatch();
    this.follower?.dispose();
    Signal.clearData(this);
  }

  setBackend(backend: BackendName): void {
    this.backend = backend;
    this.emit();
  }

  setEdits(edits: Record<string, string | boolean>): void {
    this.edits = edits;
    this.emit();
  }

  /** Reload the app description (after a save) and pick up the notebook's latest run. */
  async refresh(): Promise<void> {
    const validating = this.validating;
    try {
      const app = await this.client.app(this.path);
      if (validating === this.validating) {
        this.app = app;
        this.appSource = 'saved';
      }
      this.appError = null;
    } catch (err) {
      this.app = null;
      this.appError = err instanceof ApiError ? err : new ApiError(0, String(err));
    }
    this.emit();
    await this.checkRuns();
    void this.refreshAgents();
  }

  /**
   * Validate the editor's unsaved content (validation as you type). Outputs are left out (they
   * play no part and can be large); content over the API's 1 MiB body limit is left to the save.
   */
  async validateContent(notebook: { cells?: any[]; [key: string]: unknown }): Promise<void> {
    const slim = { ...notebook, cells: (notebook.cells ?? []).map(c => ({ ...c, outputs: [], attachments: undefined })) };
    if (JSON.stringify(slim).length > 1000000) {
      return;
    }
    const ticket = ++this.validating;
    try {
      const app = await this.client.validate(this.path, slim);
      if (ticket === this.validating && !this.disposed) {
        this.app = app;
        this.appSource = 'editor';
        this.appError = null;
        this.emit();
      }
    } catch {
      // The saved notebook's view stays; a save re-reads it and reports problems.
    }
  }

  /**
   * Look at the notebook's runs in the store: a newer run (from the CLI, an agent or another tab)
   * is shown and followed; a new or finished run reloads the Runs section.
   */
  async checkRuns(): Promise<void> {
    let runs: IRunSummary[];
    try {
      runs = await this.client.runs(this.path, 20);
    } catch {
      return; // the app error (or a notification from elsewhere) already tells the user
    }
    if (this.disposed) {
      return;
    }
    this.storeRuns = Object.fromEntries(runs.map(r => [r.run_id, r]));
    // tracking: MLflow runs may be written after the run ends (buffered, then synced)
    // (and a kubernetes run names its Workflow once submitted)
    const signature = runs.map(r => `${r.run_id}:${r.status}:${r.tracking ?? ''}:${r.workflow?.name ?? ''}`).join(',');
    let changed = false;
    if (signature !== this.runsSignature) {
      changed = this.runsSignature !== null;
      this.runsSignature = signature;
      if (changed) {
        this.runsVersion++;
      }
    }
    const newer = newerRun(this.runSummary, runs);
    if (newer) {
      this.adoptRun(newer);
    } else if (changed) {
      this.emit();
    }
  }

  /** Poll the run store every `intervalMs` while the notebook is open (runs started elsewhere). */
  watch(intervalMs = 3000): void {
    if (this.watchTimer === null && !this.disposed) {
      this.watchTimer = setInterval(() => void this.checkRuns(), intervalMs);
    }
  }

  unwatch(): void {
    if (this.watchTimer !== null) {
      clearInterval(this.watchTimer);
      this.watchTimer = null;
    }
  }

  /** ⟳: re-read the notebook, the runs and (through runsVersion) the Runs section. */
  async reload(): Promise<void> {
    this.runsVersion++;
    await this.refresh();
  }

  async refreshAgents(): Promise<void> {
    if (!this.app || !this.app.nodes.some(n => n.kind === 'agent')) {
      if (this.agents.length) {
        this.agents = [];
        this.emit();
      }
      return;
    }
    try {
      this.agents = await this.client.agents(this.path);
      this.agentsError = null;
    } catch (err) {
      this.agentsError = err instanceof ApiError ? err : new ApiError(0, String(err));
    }
    this.emit();
  }

  /** Show a run (from history or just started) and follow it live when it is running. */
  adoptRun(summary: IRunSummary): void {
    this.follower?.dispose();
    this.follower = null;
    this.runSummary = summary;
    if (summary.status === 'running') {
      const base = fromSummary(summary);
      // Steps of a running summary are re-derived from the full event stream.
      this.run = { ...initialRunState(summary.run_id, Object.keys(summary.steps ?? {})), startedAt: base.startedAt };
      this.follow(summary.run_id);
    } else {
      this.run = fromSummary(summary);
    }
    this.emit();
  }

  private follow(runId: string): void {
    const follower = new RunFollower(this.client, runId, {
      onEvents: events => {
        if (this.run && this.run.runId === runId) {
          this.run = reduceEvents(this.run, events);
          this.emit();
        }
      },
      onFinished: () => {
        if (this.follower === follower) {
          this.follower = null;
        }
        void this.afterRun(runId);
      },
      onError: err => this.report(err, 'Live run status')
    });
    this.follower = follower;
    follower.start(0);
  }

  private async afterRun(runId: string): Promise<void> {
    try {
      const summary = await this.client.run(runId);
      this.runSummary = summary;
      if (this.run && this.run.runId === runId && this.run.finished) {
        // Keep the live state (it has timings); take the final status from the store.
        this.run = { ...this.run, status: summary.status, mlflowRunId: summary.mlflow_run_id };
      } else if (this.run?.runId === runId) {
        this.run = fromSummary(summary);
      }
    } catch (err) {
      this.report(err, 'Run summary');
    }
    this.runsVersion++;
    this.emit();
  }

  private async act<T>(name: string, work: () => Promise<T>): Promise<T | undefined> {
    this.busy = { ...this.busy, [name]: true };
    this.emit();
    try {
      return await work();
    } catch (err) {
      this.report(err, name);
      return undefined;
    } finally {
      this.busy = { ...this.busy, [name]: false };
      this.emit();
    }
  }

  async startRun(backend: BackendName, parameters: Record<string, unknown>, resume: string | null = null): Promise<void> {
    const summary = await this.act(resume ? 'Resume' : 'Run', () =>
      this.client.startRun({ path: this.path, backend, parameters, resume })
    );
    if (summary) {
      this.adoptRun(summary);
    }
  }

  async cancel(): Promise<void> {
    const runId = this.run?.runId;
    if (runId) {
      await this.act('Cancel', () => this.client.cancelRun(runId));
    }
  }

  async agentsAction(action: 'start' | 'stop'): Promise<void> {
    const agents = await this.act(action === 'start' ? 'Start agents' : 'Stop agents', () =>
      this.client.agentAction(this.path, action)
    );
    if (agents) {
      this.agents = agents;
      this.emit();
      // Agents settle within seconds (ports open, processes exit): look again a few times.
      for (const delay of [1000, 2000, 4000]) {
        setTimeout(() => void this.refreshAgents(), delay);
      }
    }
  }
}

/** Run ids start with their UTC start time (`20260101T120000-abcdef`), so they sort by age. */
function age(run: Pick<IRunSummary, 'run_id' | 'created_at'>): [number, string] {
  return [run.created_at ?? 0, run.run_id];
}

/**
 * The run to show instead of `current`: the newest of `runs` (newest first) when it is another,
 * newer run; null to keep `current`.
 */
export function newerRun(
  current: Pick<IRunSummary, 'run_id' | 'created_at'> | null,
  runs: IRunSummary[]
): IRunSummary | null {
  const top = runs[0];
  if (!top || top.status === 'unreadable' as string) {
    return null;
  }
  if (!current) {
    return top;
  }
  if (top.run_id === current.run_id) {
    return null;
  }
  const [a, b] = [age(top), age(current)];
  return a[0] > b[0] || (a[0] === b[0] && a[1] > b[1]) ? top : null;
}

/** One model per notebook path, created on demand. */
export class ScanflowModels {
  config: IConfig | null = null;
  configError: ApiError | null = null;
  private readonly models = new Map<string, NotebookScanflowModel>();
  private readonly _configChanged = new Signal<this, void>(this);

  constructor(
    readonly client: ScanflowClient,
    private readonly report: ErrorReporter
  ) {}

  get configChanged(): ISignal<this, void> {
    return this._configChanged;
  }

  async loadConfig(): Promise<void> {
    try {
      this.config = await this.client.config();
      this.configError = null;
    } catch (err) {
      this.configError = err instanceof ApiError ? err : new ApiError(0, String(err));
      this.report(err, 'Scanflow configuration');
    }
    this._configChanged.emit();
  }

  get(path: string): NotebookScanflowModel {
    let model = this.models.get(path);
    if (!model) {
      model = new NotebookScanflowModel(this.client, path, this.report);
      this.models.set(path, model);
      void model.refresh();
    }
    return model;
  }

  /** Forget a notebook's model (it was closed or renamed). */
  drop(path: string): void {
    this.models.get(path)?.dispose();
    this.models.delete(path);
  }

  availability(backend: BackendName): { available: boolean; reason: string | null } {
    if (!this.config) {
      return { available: false, reason: this.configError?.message ?? 'loading the server configuration…' };
    }
    const info = this.config.backends.find(b => b.name === backend);
    if (!info) {
      return { available: false, reason: `the server does not know the '${backend}' backend` };
    }
    const why = info.reason ?? 'unavailable';
    return { available: info.available, reason: info.available ? null : info.fix ? `${why} (fix: ${info.fix})` : why };
  }
}
