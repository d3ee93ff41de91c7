/** Small React pieces shared by the sidebar sections. */
import type { ISignal } from '@lumino/signaling';
import * as React from 'react';

/** Re-render whenever one of the signals fires. */
export function useSignals(signals: Array<ISignal<any, any> | null | undefined>): void {
  const [, tick] = React.useReducer((n: number) => n + 1, 0);
  React.useEffect(() => {
    const live = signals.filter(Boolean) as Array<ISignal<any, any>>;
    const slot = () => tick();
    live.forEach(s => s.connect(slot));
    return () => live.forEach(s => s.disconnect(slot));
  }, signals);
}

export function Section(props: { title: string; id: string; extra?: React.ReactNode; children: React.ReactNode }): JSX.Element {
  const [open, setOpen] = React.useState(true);
  return (
    <section className={`sf-section sf-section-${props.id}`} data-section={props.id}>
      <header className="sf-section-header" onClick={() => setOpen(!open)}>
        <span className={`sf-caret ${open ? 'sf-open' : ''}`}>▸</span>
        <span className="sf-section-title">{props.title}</span>
        <span className="sf-section-extra" onClick={e => e.stopPropagation()}>
          {props.extra}
        </span>
      </header>
      {open && <div className="sf-section-body">{props.children}</div>}
    </section>
  );
}

export function Btn(props: {
  label: string;
  onClick: () => void;
  disabledReason?: string | null;
  busy?: boolean;
  accept?: boolean;
  warn?: boolean;
  title?: string;
}): JSX.Element {
  const disabled = !!props.disabledReason || !!props.busy;
  const cls = [
    'jp-Button',
    'sf-btn',
    props.accept && !disabled ? 'jp-mod-accept' : '',
    props.warn && !disabled ? 'jp-mod-warn' : '',
    'jp-mod-styled'
  ];
  return (
    <button
      className={cls.filter(Boolean).join(' ')}
      data-action={props.label}
      disabled={disabled}
      title={props.disabledReason ? `${props.label} unavailable: ${props.disabledReason}` : props.title ?? props.label}
      onClick={props.onClick}
    >
      {props.busy ? `${props.label}…` : props.label}
    </button>
  );
}

/** Text with `backtick` spans shown as code (server messages use them for commands and flags). */
export function Ticks(props: { text: string | null | undefined }): JSX.Element {
  const parts = (props.text ?? '').split('`');
  return <>{parts.map((part, i) => (i % 2 ? <code key={i}>{part}</code> : part))}</>;
}

export function StatusPill(props: { status: string }): JSX.Element {
  return <span className={`sf-pill sf-status-${props.status}`}>{props.status}</span>;
}
