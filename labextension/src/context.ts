/** What the sidebar sections share: models, tracker, settings and shell helpers. */
import type { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import type { ISignal } from '@lumino/signaling';

import type { ScanflowModels } from './model';
import type { BackendName, IStepError } from './types';

export interface IScanflowSettings {
  trackingUri: string;
  defaultBackend: BackendName;
  registry: string;
  kubeContext: string;
  namespace: string;
  baseImage: string;
}

export interface ISidebarContext {
  models: ScanflowModels;
  tracker: INotebookTracker;
  settings: () => IScanflowSettings;
  settingsChanged: ISignal<unknown, unknown>;
  openPath: (path: string) => void;
  /** Open a step's output notebook read-only (through the Scanflow API). */
  openOutput: (runId: string, step: string) => void;
  showLog: (runId: string, step: string, error: IStepError | null) => void;
  activate: (panel: NotebookPanel) => void;
  /** Load a failed step's inputs and parameters into the active notebook's kernel (#15). */
  debugInNotebook?: (runId: string, step: string) => void;
  /** Write the run as a notebook and open it (#15). */
  openRunAsNotebook?: (runId: string) => void;
}
