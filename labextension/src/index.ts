/** Scanflow for JupyterLab: sidebar, cell badges, settings and a palette command. */
import type { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ILabShell } from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { IDocumentManager } from '@jupyterlab/docmanager';
import { INotebookTracker, type NotebookPanel } from '@jupyterlab/notebook';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { LabIcon } from '@jupyterlab/ui-components';
import { Signal } from '@lumino/signaling';

import { ScanflowClient } from './api';
import { runDebug } from './debug_kernel';
import { CellBadges } from './badges';
import { showStepLog } from './logview';
import { ScanflowModels } from './model';
import { reportError } from './notify';
import { openOutputNotebook, type IViewerShell } from './outputviewer';
import { validateAsYouType } from './typing';
import { ScanflowSidebar, type IScanflowSettings } from './sidebar';
import type { BackendName } from './types';

export const PLUGIN_ID = 'scanflow-jupyter:plugin';
export const COMMAND_RUN = 'scanflow:run-pipeline';

const ICON_SVG = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24"><g class="jp-icon3" fill="#616161">
<circle cx="12" cy="4" r="2.6"/><circle cx="5" cy="12" r="2.6"/><circle cx="19" cy="12" r="2.6"/><circle cx="12" cy="20" r="2.6"/>
<path d="M11 5.8 6.2 10.2l1 1.1L12 7l4.8 4.3 1-1.1L13 5.8zM6.2 13.8l4.8 4.4 1-1.1-4.8-4.4zm11.6 0-4.8 4.4-1-1.1 4.8-4.4z"/></g></svg>`;

export const scanflowIcon = new LabIcon({ name: 'scanflow:dag', svgstr: ICON_SVG });

const DEFAULT_SETTINGS: IScanflowSettings = {
  trackingUri: '',
  defaultBackend: 'local',
  registry: '',
  kubeContext: '',
  namespace: '',
  baseImage: ''
};

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'Scanflow pipelines in JupyterLab: DAG sidebar, live cell badges, runs and agents.',
  autoStart: true,
  requires: [INotebookTracker, IDocumentManager, IRenderMimeRegistry],
  optional: [ISettingRegistry, ICommandPalette, ILabShell],
  activate: (
    app: JupyterFrontEnd,
    tracker: INotebookTracker,
    docManager: IDocumentManager,
    rendermime: IRenderMimeRegistry,
    settingRegistry: ISettingRegistry | null,
    palette: ICommandPalette | null
  ) => {
    const client = new ScanflowClient(app.serviceManager.serverSettings);
    const models = new ScanflowModels(client, reportError);
    let settings: IScanflowSettings = { ...DEFAULT_SETTINGS };
    const settingsChanged = new Signal<unknown, IScanflowSettings>({});
    // Every request carries the user's settings; the server applies them over its own defaults.
    client.userSettings = () => settings;
    settingsChanged.connect(() => void models.loadConfig());
    if (settingRegistry) {
      settingRegistry
        .load(PLUGIN_ID)
        .then(loaded => {
          const apply = () => {
            settings = { ...DEFAULT_SETTINGS, ...(loaded.composite as Partial<IScanflowSettings>) };
            settingsChanged.emit(settings);
          };
          loaded.changed.connect(apply);
          apply();
        })
        .catch(err => console.warn('Scanflow: settings not loaded', err));
    }
    const openPath = (path: string) => {
      docManager.openOrReveal(path);
    };
    const shell: IViewerShell = {
      add: (widget, area) => app.shell.add(widget, area),
      activateById: id => app.shell.activateById(id),
      widgetExists: id => {
        for (const w of app.shell.widgets('main')) {
          if (w.id === id) {
            return true;
          }
        }
        return false;
      }
    };
    const openOutput = (runId: string, step: string) =>
      void openOutputNotebook(client, rendermime, shell, runId, step, reportError);
    const debugInNotebook = (runId: string, step: string) =>
      void runDebug(tracker.currentWidget, step, runId).catch(err => reportError(err, `Debug ${step} in notebook`));
    const showLog = (runId: string, step: string, error: Parameters<typeof showStepLog>[3]) =>
      showStepLog(client, runId, step, error, () => openOutput(runId, step), () => debugInNotebook(runId, step));

    const openRunAsNotebook = (runId: string) =>
      void client
        .runAsNotebook(runId)
        .then(reply => openPath(reply.path))
        .catch(err => reportError(err, `Open run ${runId} as notebook`));

    const sidebar = new ScanflowSidebar({
      models,
      tracker,
      settings: () => settings,
      settingsChanged,
      openPath,
      openOutput,
      showLog,
      debugInNotebook,
      openRunAsNotebook,
      activate: (panel: NotebookPanel) => app.shell.activateById(panel.id)
    });
    sidebar.title.icon = scanflowIcon;
    sidebar.title.caption = 'Scanflow';
    app.shell.add(sidebar, 'left', { rank: 600 });
    void models.loadConfig();

    tracker.widgetAdded.connect((_, panel) => {
      void panel.context.ready.then(() => {
        if (panel.isDisposed) {
          return;
        }
        const badges = new CellBadges(panel, models.get(panel.context.path), showLog);
        // Runs started elsewhere (CLI, agents, another tab) show up while the notebook is open.
        models.get(panel.context.path).watch();
        panel.context.pathChanged.connect((_ctx, path) => {
          badges.setModel(models.get(path));
          models.get(path).watch();
        });
        panel.context.saveState.connect((ctx, state) => {
          if (state === 'completed') {
            void models.get(ctx.path).refresh();
          }
        });
        const stopTyping = validateAsYouType(panel, (path, notebook) => void models.get(path).validateContent(notebook));
        panel.disposed.connect(() => {
          badges.dispose();
          stopTyping();
          const path = panel.context.path;
          if (!tracker.find(other => other !== panel && other.context.path === path)) {
            models.get(path).unwatch();
          }
        });
      });
    });

    app.commands.addCommand(COMMAND_RUN, {
      label: 'Scanflow: Run pipeline',
      caption: 'Run the active notebook as a Scanflow pipeline (default backend, default parameters)',
      isEnabled: () => !!tracker.currentWidget,
      execute: async () => {
        const panel = tracker.currentWidget;
        if (!panel) {
          return;
        }
        if (panel.context.model.dirty) {
          await panel.context.save();
        }
        const model = models.get(panel.context.path);
        const backend: BackendName = settings.defaultBackend || models.config?.default_backend || 'local';
        const availability = models.availability(backend);
        if (!availability.available) {
          reportError(new Error(`the ${backend} backend is unavailable: ${availability.reason}. Pick another backend in the Scanflow sidebar or settings.`), 'Run pipeline');
          return;
        }
        app.shell.activateById(sidebar.id);
        await model.startRun(backend, {});
      }
    });
    palette?.addItem({ command: COMMAND_RUN, category: 'Scanflow' });
  }
};

export default plugin;
