/** Actions section: backend picker, parameters form, run/resume/cancel, images, deployment, agents. */
import { Dialog, Notification, showDialog } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';
import type { NotebookPanel } from '@jupyterlab/notebook';
import * as React from 'react';

import type { ISidebarContext } from './context';
import { failureText, jobFailure } from './jobs';
import { stripAnsi } from './logview';
import type { NotebookScanflowModel } from './model';
import { reportError } from './notify';
import { changedParams, displayValue, inputKind, parseParameters, reasonLines } from './params';
import { canResume } from './state';
import type { BackendName, IJob } from './types';
import { Btn } from './widgets';

const BUILT_IN: BackendName[] = ['local', 'docker', 'kubernetes'];

/**
 * One line on a finished job: the steps a build made images for (its log ends with the CLI's
 * JSON, whose last line is only `}`), else the log's last non-empty line.
 */
export function jobSummary(job: IJob): string {
  const images = job.images;
  if (images && typeof images === 'object' && Object.keys(images).length) {
    // Step names only: a toast cuts long text, and the tags are long.
    const steps = Object.keys(images);
    return `${steps.length} image${steps.length === 1 ? '' : 's'} for ${steps.join(', ')}`;
  }
  const lines = (job.log ?? '').split('\n').map(l => l.trim()).filter(l => l && !/^[{}\[\],]+$/.test(l));
  return lines[lines.length - 1] ?? '';
}

/** The whole log of a finished job, in a dialog (failure and fix first). */
function showJobLog(label: string, job: IJob): void {
  const body = new Widget();
  body.addClass('sf-job-log');
  if (job.status !== 'succeeded') {
    const failure = jobFailure(job);
    const head = document.createElement('div');
    head.className = 'sf-job-failure';
    head.textContent = failure.message;
    body.node.appendChild(head);
    for (const text of [...(failure.fix ? [`Fix: ${failure.fix}`] : []), ...failure.details]) {
      const line = document.createElement('div');
      line.className = 'sf-job-detail';
      line.textContent = text;
      body.node.appendChild(line);
    }
  }
  const pre = document.createElement('pre');
  pre.className = 'sf-log-text sf-job-log-text';
  pre.textContent = stripAnsi(String(job.log ?? '')) || '(empty log)';
  body.node.appendChild(pre);
  void showDialog({ title: `${label} log`, body, buttons: [Dialog.okButton({ label: 'Close' })] });
}

async function followJob(label: string, start: () => Promise<IJob>, poll: ((id: string) => Promise<IJob>) | null): Promise<void> {
  const job = await start();
  const id = (job.build_id ?? (job as any).job_id ?? (job as any).id) as string | undefined;
  if (!poll || !id) {
    Notification.info(`${label}: ${job.status ?? 'requested'}`, { autoClose: 5000 });
    return;
  }
  const note = Notification.emit(`${label} running…`, 'in-progress', { autoClose: false });
  for (;;) {
    await new Promise(r => setTimeout(r, 2000));
    const state = await poll(id);
    if (!['queued', 'running', 'pending', 'building'].includes(state.status)) {
      const ok = ['succeeded', 'done', 'finished'].includes(state.status);
      const tail = jobSummary(state);
      Notification.update({
        id: note,
        message: ok ? `${label} ${state.status}${tail ? `: ${tail}` : ''}` : failureText(label, jobFailure(state)),
        type: ok ? 'success' : 'error',
        autoClose: ok ? 5000 : false,
        actions: [{ label: `Show ${label.toLowerCase()} log`, callback: () => showJobLog(label, state) }]
      });
      return;
    }
  }
}

/**
 * The effective configuration of this sidebar's requests: the user's setting (sent with every
 * request) over the server's `c.Scanflow.*` defaults. GET config already answers with the
 * effective values; a value set by the user is marked so.
 */
function ConfigSummary(props: { ctx: ISidebarContext }): JSX.Element | null {
  const config = props.ctx.models.config;
  if (!config) {
    return null;
  }
  const settings = props.ctx.settings();
  const defaults: Record<string, string | null | undefined> = {
    'base image': config.default_base_image ? `${config.default_base_image} (default)` : null
  };
  const rows: Array<[string, string | null, string]> = [
    ['tracking URI', config.tracking_uri, settings.trackingUri],
    ['registry', config.registry, settings.registry],
    ['kube context', config.kube_context, settings.kubeContext],
    ['namespace', config.namespace, settings.namespace],
    ['base image', config.base_image, settings.baseImage]
  ];
  return (
    <details className="sf-config">
      <summary>Server configuration (Scanflow {config.version})</summary>
      <table>
        <tbody>
          {rows.map(([label, server, setting]) => (
            <tr key={label}>
              <td className="sf-muted">{label}</td>
              <td title={setting || server || ''}>
                {setting || server || <span className="sf-muted">{defaults[label] ?? 'default'}</span>}
                {setting && (
                  <span className="sf-muted sf-setting-source" title="From the Scanflow settings (Settings Editor)">
                    {' '}
                    (your setting)
                  </span>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </details>
  );
}

/** Why buttons are disabled, visible (not only on hover). */
function Reasons(props: { lines: string[] }): JSX.Element | null {
  if (!props.lines.length) {
    return null;
  }
  return (
    <ul className="sf-reasons">
      {props.lines.map(line => (
        <li key={line}>{line}</li>
      ))}
    </ul>
  );
}

export function ActionsSection(props: { model: NotebookScanflowModel; panel: NotebookPanel; ctx: ISidebarContext }): JSX.Element {
  const { model, panel, ctx } = props;
  const models = ctx.models;
  const settings = ctx.settings();
  const preferred = settings.defaultBackend || models.config?.default_backend || 'local';
  // Backend and edits live in the notebook's model: they survive tab switches.
  const backend: BackendName = model.backend ?? preferred;
  const setBackend = (name: BackendName) => model.setBackend(name);
  const edits = model.edits;
  const setEdits = (next: Record<string, string | boolean>) => model.setEdits(next);
  const [jobBusy, setJobBusy] = React.useState<string | null>(null);
  const app = model.app;
  const params = app?.parameters ?? [];
  const parsed = parseParameters(params, edits);
  const changed = changedParams(params, edits);
  const paramErrors = Object.values(parsed.errors);
  const availability = (name: BackendName) => models.availability(name);
  const chosen = availability(backend);
  const hasErrors = !!app && app.messages.some(m => m.severity === 'error');
  const running = model.isRunning;
  const lastStatus = model.run?.status ?? model.runSummary?.status ?? null;
  const noApp = !app ? model.appError?.message ?? 'the notebook has not been read yet' : null;
  const runBlocked =
    noApp ??
    (!chosen.available ? `${backend}: ${chosen.reason}` : null) ??
    (hasErrors ? 'fix the validation errors listed above first' : null) ??
    (running ? 'a run is in progress' : null) ??
    (paramErrors.length ? paramErrors[0] : null);
  const hasAgents = !!app && app.nodes.some(n => n.kind === 'agent');
  const agentNames = app ? app.nodes.filter(n => n.kind === 'agent').map(n => n.id) : [];
  const runningAgents = model.agents.filter(a => a.status === 'running').map(a => a.name);
  const allRunning = agentNames.length > 0 && agentNames.every(n => runningAgents.includes(n));
  const docker = availability('docker');
  const kube = availability('kubernetes');
  const invalid = hasErrors ? 'fix the validation errors listed above first' : null;
  const buildBlocked = noApp ?? invalid ?? (docker.available ? null : `docker: ${docker.reason}`);
  const deployBlocked = noApp ?? invalid ?? (kube.available ? null : `kubernetes: ${kube.reason}`);
  const undeployBlocked = noApp ?? (kube.available ? null : `kubernetes: ${kube.reason}`);
  const saveFirst = async () => {
    if (panel.context.model.dirty) {
      await panel.context.save();
    }
  };
  const run = async (resume: string | null) => {
    await saveFirst();
    await model.startRun(backend, parsed.values, resume);
  };
  const job = async (label: string, work: () => Promise<void>) => {
    setJobBusy(label);
    try {
      await saveFirst();
      await work();
    } catch (err) {
      reportError(err, label);
    } finally {
      setJobBusy(null);
    }
  };
  const client = model.client;
  return (
    <div className="sf-actions">
      <label className="sf-row">
        <span className="sf-label">Backend</span>
        <select
          className="sf-backend"
          value={backend}
          onChange={e => setBackend(e.target.value as BackendName)}
        >
          {(models.config?.backends.map(b => b.name) ?? BUILT_IN).map(name => {
            const a = availability(name);
            return (
              <option key={name} value={name} disabled={!a.available} title={a.reason ?? ''}>
                {name}
                {a.available ? '' : ` — unavailable: ${a.reason}`}
              </option>
            );
          })}
        </select>
      </label>
      {!chosen.available && <div className="sf-reason">{chosen.reason}</div>}
      {params.length > 0 && (
        <fieldset className="sf-params">
          <legend>Parameters</legend>
          {params.map(p => {
            const kind = inputKind(p);
            const shown = p.name in edits ? edits[p.name] : displayValue(p);
            const differs = changed.has(p.name);
            const reset = () => {
              const next = { ...edits };
              delete next[p.name];
              setEdits(next);
            };
            return (
              <label
                key={p.name}
                className={`sf-row sf-param ${differs ? 'sf-changed' : ''}`}
                data-param={p.name}
                title={`${p.name}: ${p.type} (notebook: ${JSON.stringify(p.value)})`}
              >
                <span className="sf-label">
                  {differs && (
                    <span className="sf-changed-mark" aria-label="changed">
                      ●{' '}
                    </span>
                  )}
                  {p.name}
                </span>
                {kind === 'bool' ? (
                  <input
                    type="checkbox"
                    name={p.name}
                    checked={Boolean(shown)}
                    onChange={e => setEdits({ ...edits, [p.name]: e.target.checked })}
                  />
                ) : (
                  <input
                    className={`jp-mod-styled sf-input ${parsed.errors[p.name] ? 'sf-invalid' : ''}`}
                    name={p.name}
                    type={kind === 'int' || kind === 'float' ? 'number' : 'text'}
                    step={kind === 'int' ? 1 : 'any'}
                    value={String(shown)}
                    onChange={e => setEdits({ ...edits, [p.name]: e.target.value })}
                  />
                )}
                {differs && (
                  <button
                    type="button"
                    className="sf-link sf-param-reset"
                    title={`Back to the notebook's value ${JSON.stringify(p.value)}`}
                    aria-label={`Reset ${p.name} to the notebook's value`}
                    onClick={e => {
                      e.preventDefault();
                      reset();
                    }}
                  >
                    ↺
                  </button>
                )}
              </label>
            );
          })}
          {paramErrors.map(e => (
            <div key={e} className="sf-error-text">
              {e}
            </div>
          ))}
        </fieldset>
      )}
      <ConfigSummary ctx={ctx} />
      <div className="sf-buttons">
        <Btn label="Run" accept busy={model.busy['Run']} disabledReason={runBlocked} onClick={() => void run(null)} />
        <Btn
          label="Resume"
          busy={model.busy['Resume']}
          disabledReason={
            running
              ? 'a run is in progress'
              : !canResume(lastStatus)
                ? 'only a failed, killed or interrupted run can be resumed'
                : runBlocked
          }
          onClick={() => void run(model.run?.runId ?? null)}
        />
        <Btn
          label="Cancel"
          warn
          busy={model.busy['Cancel']}
          disabledReason={running ? null : 'no run is in progress'}
          onClick={() => void model.cancel()}
        />
      </div>
      <Reasons lines={runBlocked && !running && chosen.available ? reasonLines([['Run', runBlocked]]) : []} />
      <div className="sf-buttons">
        <Btn
          label="Build images"
          busy={jobBusy === 'Build images'}
          disabledReason={buildBlocked}
          onClick={() =>
            void job('Build images', () => followJob('Image build', () => client.build(model.path), id => client.buildStatus(id)))
          }
        />
        <Btn
          label="Deploy"
          busy={jobBusy === 'Deploy'}
          disabledReason={deployBlocked}
          onClick={() => void job('Deploy', () => followJob('Deploy', () => client.deploy(model.path), id => client.deploymentJob(id)))}
        />
        <Btn
          label="Undeploy"
          busy={jobBusy === 'Undeploy'}
          disabledReason={undeployBlocked}
          onClick={() => void job('Undeploy', () => followJob('Undeploy', () => client.undeploy(model.path), id => client.deploymentJob(id)))}
        />
      </div>
      <Reasons
        lines={reasonLines([
          ['Build images', buildBlocked],
          ['Deploy', deployBlocked],
          ['Undeploy', undeployBlocked]
        ])}
      />
      <div className="sf-buttons">
        <Btn
          label="Start agents"
          busy={model.busy['Start agents']}
          disabledReason={
            noApp ??
            (hasAgents ? null : 'this notebook declares no %%agent cells') ??
            (allRunning ? 'every agent is already running' : null)
          }
          onClick={() => void saveFirst().then(() => model.agentsAction('start'))}
        />
        <Btn
          label="Stop agents"
          busy={model.busy['Stop agents']}
          disabledReason={
            noApp ??
            (hasAgents ? null : 'this notebook declares no %%agent cells') ??
            (model.agents.length ? null : 'no agent of this notebook is known to the supervisor')
          }
          onClick={() => void model.agentsAction('stop')}
        />
      </div>
    </div>
  );
}
