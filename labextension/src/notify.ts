/** User-facing errors as JupyterLab notifications that say what to do. */
import { Notification } from '@jupyterlab/apputils';

import { ApiError } from './api';

export function reportError(error: unknown, context: string): void {
  let text: string;
  if (error instanceof ApiError) {
    text = `${context}: ${error.userText}`;
    if (error.messages.length) {
      const first = error.messages
        .slice(0, 3)
        .map(m => `${m.cell !== null ? `cell ${m.cell}: ` : ''}${m.text}${m.fix ? ` (${m.fix})` : ''}`)
        .join('; ');
      text += ` — ${first}`;
    }
  } else {
    text = `${context}: ${error instanceof Error ? error.message : String(error)}`;
  }
  Notification.error(text, { autoClose: 10000 });
}
