/**
 * Follow a run live: Server-Sent Events first, polling `?format=json` every second as fallback.
 */
import type { ScanflowClient } from './api';
import type { IRunEvent } from './types';

export interface IFollowHandlers {
  /** New events, in order (may repeat already-seen ones; the reducer drops those by seq). */
  onEvents(events: IRunEvent[]): void;
  /** The run finished (run_finished seen or the server says so). */
  onFinished(): void;
  /** A request failed (shown to the user once; polling continues). */
  onError?(error: Error): void;
}

export interface IFollowOptions {
  pollIntervalMs?: number;
  /** Use EventSource when the browser has it (default true). */
  useSse?: boolean;
}

/** One subscription to one run; call dispose() to stop. */
export class RunFollower {
  private source: EventSource | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private lastSeq = -1;
  private stopped = false;
  private reportedError = false;
  /** 'sse' or 'poll', for diagnostics and tests. */
  mode: 'sse' | 'poll' | 'idle' = 'idle';

  constructor(
    private readonly client: ScanflowClient,
    readonly runId: string,
    private readonly handlers: IFollowHandlers,
    private readonly options: IFollowOptions = {}
  ) {}

  start(after = 0): void {
    this.lastSeq = after - 1;
    const sse = (this.options.useSse ?? true) && typeof EventSource !== 'undefined';
    if (sse) {
      this.startSse();
    } else {
      this.schedulePoll(0);
    }
  }

  get isDisposed(): boolean {
    return this.stopped;
  }

  dispose(): void {
    this.stopped = true;
    this.source?.close();
    this.source = null;
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    this.mode = 'idle';
  }

  private nextAfter(): number {
    return Math.max(0, this.lastSeq);
  }

  private deliver(events: IRunEvent[]): boolean {
    const fresh: IRunEvent[] = [];
    for (const e of events) {
      if (typeof e.seq !== 'number') {
        fresh.push(e);
      } else if (e.seq > this.lastSeq) {
        this.lastSeq = e.seq;
        fresh.push(e);
      }
    }
    if (fresh.length) {
      this.handlers.onEvents(fresh);
    }
    return fresh.some(e => e.type === 'run_finished');
  }

  private finish(): void {
    if (!this.stopped) {
      this.dispose();
      this.handlers.onFinished();
    }
  }

  private startSse(): void {
    this.mode = 'sse';
    const source = new EventSource(this.client.eventsUrl(this.runId, this.nextAfter()), {
      withCredentials: true
    });
    this.source = source;
    source.onmessage = (msg: MessageEvent) => {
      let event: IRunEvent;
      try {
        event = JSON.parse(msg.data);
      } catch {
        return;
      }
      if (this.deliver([event])) {
        this.finish();
      }
    };
    source.onerror = () => {
      // The stream broke (or the server has no SSE): close it, poll from where we are.
      source.close();
      if (this.source === source && !this.stopped) {
        this.source = null;
        this.schedulePoll(0);
      }
    };
  }

  private schedulePoll(delay: number): void {
    this.mode = 'poll';
    if (this.stopped) {
      return;
    }
    this.timer = setTimeout(() => void this.poll(), delay);
  }

  private async poll(): Promise<void> {
    this.timer = null;
    if (this.stopped) {
      return;
    }
    try {
      const reply = await this.client.events(this.runId, this.nextAfter());
      if (this.stopped) {
        return;
      }
      const sawEnd = this.deliver(reply.events ?? []);
      if (sawEnd || reply.finished) {
        this.finish();
        return;
      }
    } catch (err) {
      if (!this.reportedError) {
        this.reportedError = true;
        this.handlers.onError?.(err as Error);
      }
    }
    this.schedulePoll(this.options.pollIntervalMs ?? 1000);
  }
}
