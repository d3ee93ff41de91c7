/** Validation as you type: the editor's unsaved notebook, debounced, goes to `POST app`. */
import type { NotebookPanel } from '@jupyterlab/notebook';

/** `fn` called once, `delayMs` after the last of a burst of calls; `cancel()` drops a pending call. */
export function debounce(fn: () => void, delayMs: number): (() => void) & { cancel(): void } {
  let timer: ReturnType<typeof setTimeout> | null = null;
  const call = () => {
    if (timer !== null) {
      clearTimeout(timer);
    }
    timer = setTimeout(() => {
      timer = null;
      fn();
    }, delayMs);
  };
  call.cancel = () => {
    if (timer !== null) {
      clearTimeout(timer);
      timer = null;
    }
  };
  return call;
}

export const TYPING_DELAY_MS = 600;

/**
 * Re-validate `panel`'s notebook `delayMs` after its content stops changing (unsaved: the model's
 * JSON). Returns a function that stops watching.
 */
export function validateAsYouType(
  panel: NotebookPanel,
  validate: (path: string, notebook: any) => void,
  delayMs = TYPING_DELAY_MS
): () => void {
  const model = panel.context.model;
  const run = debounce(() => {
    if (!panel.isDisposed && model.dirty) {
      validate(panel.context.path, model.toJSON());
    }
  }, delayMs);
  model.contentChanged.connect(run);
  return () => {
    run.cancel();
    model.contentChanged.disconnect(run);
  };
}
