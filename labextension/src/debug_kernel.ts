/** "Debug in notebook": load a failed step's inputs and parameters in a notebook's kernel (#15). */
import { Notification } from '@jupyterlab/apputils';
import type { NotebookPanel } from '@jupyterlab/notebook';

import { debugCode, debugSummary } from './debug';

export async function runDebug(panel: NotebookPanel | null, step: string, runId: string): Promise<void> {
  const code = debugCode(step, runId);
  if (code === null) {
    throw new Error(`the step or run name '${step}' / '${runId}' cannot be passed to the kernel`);
  }
  const kernel = panel?.sessionContext.session?.kernel;
  if (!panel || !kernel) {
    throw new Error('no notebook kernel is running; open the notebook, start its kernel, then click again');
  }
  const stdout: string[] = [];
  let error: { ename: string; evalue: string } | null = null;
  const future = kernel.requestExecute({ code, silent: false, store_history: false });
  future.onIOPub = msg => {
    const content = msg.content as { name?: string; text?: string; ename?: string; evalue?: string };
    if (msg.header.msg_type === 'stream' && content.name === 'stdout') {
      stdout.push(content.text ?? '');
    } else if (msg.header.msg_type === 'error') {
      error = { ename: content.ename ?? 'Error', evalue: content.evalue ?? '' };
    }
  };
  await future.done;
  const summary = debugSummary(stdout, error);
  if (summary.ok) {
    Notification.success(summary.text, { autoClose: 20000 });
  } else {
    Notification.error(`Debug ${step}: ${summary.text}`, { autoClose: 20000 });
  }
}
