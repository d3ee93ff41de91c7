/** Shapes of the Scanflow server extension REST API (see helpers/REST_API.md). */

/** A registered backend: the built-ins or any plug-in of the `scanflow_jupyter.backends` entry points. */
export type BackendName = 'local' | 'docker' | 'kubernetes' | (string & Record<never, never>);

export interface IBackendInfo {
  name: BackendName;
  available: boolean;
  reason: string | null;
  /** How to make it available (plug-ins say it through `available()`). */
  fix?: string | null;
  capabilities?: string[];
  execution?: 'per_step' | 'whole_pipeline' | null;
}

export interface IConfig {
  tracking_uri: string | null;
  default_backend: BackendName;
  registry: string | null;
  kube_context: string | null;
  namespace: string | null;
  base_image: string | null;
  /** The base image a build uses when none is set ($SCANFLOW_BASE_IMAGE or python:3.11-slim). */
  default_base_image?: string | null;
  backends: IBackendInfo[];
  version: string;
}

export type NodeKind = 'executor' | 'service' | 'agent';

export interface IAppNode {
  id: string;
  kind: NodeKind;
  /** 1-based cell number (as users count cells); navigate with cells.cellIndexOf. */
  cell: number;
  /** Executors: every cell of the step (1-based; a multi-cell step has several). */
  cells?: number[];
  inputs: string[];
  outputs: string[];
}

export interface IEdge {
  source: string;
  target: string;
}

export interface IParameter {
  name: string;
  value: unknown;
  type: string;
}

export interface IValidationMessage {
  severity: 'error' | 'warning';
  code: string;
  /** 1-based cell number, null: the whole notebook. */
  cell: number | null;
  text: string;
  fix: string | null;
}

export interface IAppInfo {
  path: string;
  app: { name: string; notebook: string };
  nodes: IAppNode[];
  edges: IEdge[];
  parameters: IParameter[];
  messages: IValidationMessage[];
  valid: boolean;
}

export interface IStepError {
  /** 1-based number of the user's notebook cell that failed (null: not in a cell). */
  cell: number | null;
  ename: string;
  evalue: string;
  traceback: string[];
}

export type RunStatus = 'running' | 'succeeded' | 'failed' | 'killed' | 'interrupted';

export interface IStepSummary {
  status: string;
  attempts: number;
  duration_s: number | null;
  cell: number | null;
  error: IStepError | null;
}

export interface IRunSummary {
  run_id: string;
  app: string;
  notebook: string;
  backend: string;
  status: RunStatus;
  created_at: number | null;
  started_at: number | null;
  finished_at: number | null;
  duration_s: number | null;
  params: Record<string, unknown>;
  mlflow_run_id: string | null;
  resumed_from: string | null;
  /** Who started the run: cli | notebook | sidebar | agent:<name> | python (null: older runs). */
  started_by?: string | null;
  /** Where the run's MLflow records are: recording | synced | pending | failed (null: no tracking). */
  tracking?: string | null;
  steps: Record<string, IStepSummary>;
  managed: boolean;
  /** A kubernetes run's Argo Workflow (null for other backends, or runs of an older Scanflow). */
  workflow?: IWorkflowRef | null;
}

/** Where a kubernetes run's Workflow is: `url` (the Argo UI, when SCANFLOW_ARGO_UI_URL is set) or `command`. */
export interface IWorkflowRef {
  name: string;
  namespace: string;
  context: string | null;
  command: string;
  url: string | null;
}

/** POST mlflow-ui: the MLflow UI behind the "Open in MLflow" links. */
export interface IMlflowUi {
  url: string;
  remote: boolean;
  started: boolean;
  pid: number | null;
}

export interface IRunEvent {
  seq: number;
  type: string;
  run_id: string;
  step: string | null;
  attempt: number | null;
  time: number;
  data: Record<string, any>;
}

export interface IStepLog {
  run_id: string;
  step: string;
  log: string;
  output_notebook: string | null;
}

export interface IMlflowRun {
  run_id: string;
  experiment_id?: string;
  run_name: string | null;
  status: string;
  start_time: number | null;
  end_time: number | null;
  duration_s: number | null;
  metrics: Record<string, number>;
  params: Record<string, string>;
  tags: Record<string, string>;
}

export interface IMlflowRunPage {
  runs: IMlflowRun[];
  next_page_token: string | null;
}

export interface ISensorInfo {
  name: string;
  schedule: string | null;
  last_run: number | string | null;
  next_run: number | string | null;
  last_value: unknown;
  last_error: string | null;
}

export interface IAgentInfo {
  name: string;
  status: 'running' | 'stopped' | 'crashed';
  url: string | null;
  pid: number | null;
  uptime_s: number | null;
  sensors: ISensorInfo[];
  messages: unknown[];
}

export interface IJob {
  build_id?: string;
  status: string;
  log?: string;
  images?: unknown;
  [key: string]: unknown;
}

export interface IDeployments {
  available: boolean;
  reason: string | null;
  objects: Record<string, unknown>[];
}

/** A cell of an nbformat 4 notebook, as much as the output viewer reads. */
export interface INotebookCell {
  cell_type: string;
  source: string | string[];
  execution_count?: number | null;
  outputs?: unknown[];
}

export interface IOutputNotebook {
  run_id: string;
  step: string;
  notebook: { cells: INotebookCell[]; metadata?: Record<string, unknown> };
}

/** One local service (`GET services`; `scanflow services ls`). */
export interface IServiceInfo {
  app: string;
  name: string;
  notebook: string;
  state: 'starting' | 'running' | 'restarting' | 'failed' | 'stopped' | string;
  kind: 'custom' | 'mlflow' | string;
  model: string | null;
  version: string | null;
  port: number | null;
  pid: number | null;
  url: string | null;
  restarts: number;
  log: string | null;
  error: string | null;
}

/** The answer of `POST services/predict`: the service's own HTTP status and JSON. */
export interface ITryAnswer {
  status: number;
  answer: unknown;
}
