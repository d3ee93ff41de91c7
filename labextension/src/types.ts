/** Shapes of the Scanflow server extension REST API (docs/rest-api.md).
 *
 * Most are the types generated from the server's pydantic contracts
 * (scanflow_jupyter/contracts/rest.py → contracts.generated.ts, `make contracts`), under the names
 * the rest of the code imports; a few narrow a generated field (a literal union the server does not
 * promise) or are read from other files (a notebook's cells).
 */
import type {
  AgentInfo,
  AppEdge,
  AppNode,
  AppParameter,
  AppView,
  BackendInfo,
  ConfigAnswer,
  Deployments,
  JobInfo,
  JobStarted,
  MlflowRun,
  MlflowRunPage,
  MlflowUiAnswer,
  OutputNotebook,
  RunEvent,
  RunSummary,
  SensorInfo,
  ServiceInfo,
  StepErrorDoc,
  StepLog,
  StepSummary,
  TryAnswer,
  ValidationMessage,
  WorkflowRef
} from './contracts.generated';

/** A registered backend: the built-ins or any plug-in of the `scanflow_jupyter.backends` entry points. */
export type BackendName = 'local' | 'docker' | 'kubernetes' | (string & Record<never, never>);

export type IBackendInfo = BackendInfo;
export type IConfig = ConfigAnswer;
export type NodeKind = AppNode['kind'];
/** `cell`/`cells` are 1-based (as users count cells); navigate with cells.cellIndexOf. */
export type IAppNode = AppNode;
export type IEdge = AppEdge;
export type IParameter = AppParameter;
/** `cell` is 1-based; null: the whole notebook. */
export type IValidationMessage = ValidationMessage;
export type IAppInfo = AppView;
/** `cell`: 1-based number of the user's notebook cell that failed (null: not in a cell). */
export type IStepError = StepErrorDoc;

export type RunStatus = 'running' | 'succeeded' | 'failed' | 'killed' | 'interrupted';

export type IStepSummary = StepSummary;
/** A run; `status` narrowed to the states a readable run shows. */
export type IRunSummary = Omit<RunSummary, 'status'> & { status: RunStatus };
/** Where a kubernetes run's Workflow is: `url` (the Argo UI, when SCANFLOW_ARGO_UI_URL is set) or `command`. */
export type IWorkflowRef = WorkflowRef;
/** POST mlflow-ui: the MLflow UI behind the "Open in MLflow" links. */
export type IMlflowUi = MlflowUiAnswer;
export type IRunEvent = RunEvent;
export type IStepLog = StepLog;
export type IMlflowRun = MlflowRun;
export type IMlflowRunPage = MlflowRunPage;
export type ISensorInfo = SensorInfo;
/** An agent; `status` narrowed to the states the sidebar shows. */
export type IAgentInfo = Omit<AgentInfo, 'status'> & { status: 'running' | 'stopped' | 'crashed' };
/** A build or deployment job: as started (202; `status` and the id) or as polled (every key). */
export type IJob = Partial<JobInfo> & JobStarted;
export type IDeployments = Deployments;

/** A cell of an nbformat 4 notebook, as much as the output viewer reads. */
export interface INotebookCell {
  cell_type: string;
  source: string | string[];
  execution_count?: number | null;
  outputs?: unknown[];
}

export type IOutputNotebook = Omit<OutputNotebook, 'notebook'> & {
  notebook: { cells: INotebookCell[]; metadata?: Record<string, unknown> };
};

/** One local service (`GET services`; `scanflow services ls`). */
export type IServiceInfo = ServiceInfo;
/** The answer of `POST services/predict`: the service's own HTTP status and JSON. */
export type ITryAnswer = TryAnswer;
