/** "Debug in notebook" and "Open run as notebook" (issue #15): the kernel code and the reply text. */

const NAME = /^[A-Za-z0-9_.-]+$/;

/**
 * What the button executes in the notebook's kernel: the same as `%scanflow debug STEP --run RUN_ID`,
 * called directly so it works before the notebook's `%load_ext scanflow_jupyter` cell ran.
 * Null if a name could not be passed safely.
 */
export function debugCode(step: string, runId: string): string | null {
  if (!NAME.test(step) || !NAME.test(runId)) {
    return null;
  }
  return (
    'import scanflow_jupyter.notebook.debug as _scanflow_debug; ' +
    `_scanflow_debug.debug_step('${step}', '${runId}', get_ipython()); del _scanflow_debug`
  );
}

/** One message for the user from a kernel's execute reply: its printed lines, or the error. */
export function debugSummary(stdout: string[], error: { ename: string; evalue: string } | null): {
  ok: boolean;
  text: string;
} {
  if (error) {
    return { ok: false, text: `${error.ename}: ${error.evalue}` };
  }
  const text = stdout.join('').trim();
  return { ok: true, text: text || 'Loaded (the kernel printed nothing).' };
}
