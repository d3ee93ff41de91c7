/** The Scanflow left sidebar: Application (DAG), Actions, Runs, Agents, Services for the active notebook. */
import type { NotebookPanel } from '@jupyterlab/notebook';
import { ReactWidget } from '@jupyterlab/ui-components';
import * as React from 'react';

import type { ISidebarContext } from './context';
import { ActionsSection } from './section_actions';
import { AgentsSection } from './section_agents';
import { ApplicationSection } from './section_app';
import { RunsSection } from './section_runs';
import { ServicesSection } from './section_services';
import { Section, useSignals } from './widgets';

export type { IScanflowSettings, ISidebarContext } from './context';

function NotebookView(props: { panel: NotebookPanel; ctx: ISidebarContext }): JSX.Element {
  const { panel, ctx } = props;
  useSignals([panel.context.pathChanged]);
  const model = ctx.models.get(panel.context.path);
  useSignals([model.changed, ctx.models.configChanged, ctx.settingsChanged]);
  return (
    <div className="sf-notebook" data-path={model.path}>
      <div className="sf-notebook-path" title={model.path}>
        {model.path}
        <button
          className="sf-link sf-refresh"
          title="Reload: the notebook, its runs and the server configuration"
          aria-label="Reload the notebook, its runs and the server configuration"
          onClick={() => {
            void ctx.models.loadConfig();
            void model.reload();
          }}
        >
          ⟳
        </button>
      </div>
      <Section title="Application" id="application">
        <ApplicationSection model={model} panel={panel} ctx={ctx} />
      </Section>
      <Section title="Actions" id="actions">
        <ActionsSection key={model.path} model={model} panel={panel} ctx={ctx} />
      </Section>
      <Section title="Runs" id="runs">
        <RunsSection key={model.path} model={model} ctx={ctx} />
      </Section>
      <Section
        title="Agents"
        id="agents"
        extra={
          <button className="sf-link sf-refresh-agents" title="Refresh agent status" aria-label="Refresh agent status" onClick={() => void model.refreshAgents()}>
            ⟳
          </button>
        }
      >
        <AgentsSection model={model} />
      </Section>
      <Section title="Services" id="services">
        <ServicesSection key={model.path} model={model} />
      </Section>
    </div>
  );
}

function SidebarView(props: { ctx: ISidebarContext }): JSX.Element {
  const { ctx } = props;
  useSignals([ctx.tracker.currentChanged]);
  const panel = ctx.tracker.currentWidget;
  return (
    <div className="sf-sidebar">
      <div className="sf-title">Scanflow</div>
      {panel ? (
        <NotebookView key={panel.id} panel={panel} ctx={ctx} />
      ) : (
        <div className="sf-muted sf-empty">Open a notebook to see its Scanflow pipeline.</div>
      )}
    </div>
  );
}

export class ScanflowSidebar extends ReactWidget {
  constructor(private readonly ctx: ISidebarContext) {
    super();
    this.id = 'scanflow-sidebar';
    this.addClass('sf-sidebar-widget');
  }

  render(): JSX.Element {
    return <SidebarView ctx={this.ctx} />;
  }
}
