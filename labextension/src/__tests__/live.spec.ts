import { ServerConnection } from '@jupyterlab/services';

import { ScanflowClient } from '../api';
import { RunFollower } from '../live';
import { initialRunState, reduceEvents } from '../state';
import type { IRunEvent } from '../types';

const ev = (seq: number, type: string, step: string | null = null, data: Record<string, unknown> = {}): IRunEvent => ({
  seq,
  type,
  run_id: 'r1',
  step,
  attempt: 1,
  time: seq,
  data
});

/** The server's journal, served by `events?after=N&format=json` (seq > N), growing over time. */
function journalServer(batches: IRunEvent[][]) {
  const journal: IRunEvent[] = [];
  const afters: number[] = [];
  let polls = 0;
  const fetchImpl = async (input: RequestInfo, init?: RequestInit) => {
    const url = new URL(new Request(input, init).url);
    const after = Number(url.searchParams.get('after'));
    afters.push(after);
    if (polls < batches.length) {
      journal.push(...batches[polls]);
    }
    polls++;
    if (polls === 2) {
      return new Response('{"message": "temporary hiccup"}', { status: 500 });
    }
    const events = journal.filter(e => e.seq > after);
    const finished = journal.some(e => e.type === 'run_finished');
    return new Response(JSON.stringify({ events, finished }), { status: 200 });
  };
  const settings = ServerConnection.makeSettings({ baseUrl: 'http://127.0.0.1:1/', fetch: fetchImpl as any });
  return { client: new ScanflowClient(settings), afters };
}

describe('RunFollower (polling fallback)', () => {
  it('polls from the last seen seq, survives an error, stops after run_finished', async () => {
    const { client, afters } = journalServer([
      [ev(1, 'run_started', null, { steps: ['a'] }), ev(2, 'step_started', 'a')],
      [ev(3, 'step_log', 'a')],
      [ev(3, 'step_log', 'a'), ev(4, 'step_succeeded', 'a', { duration_s: 1 })],
      [ev(5, 'run_finished', null, { status: 'succeeded' })]
    ]);
    let state = initialRunState('r1');
    const errors: Error[] = [];
    const delivered: number[] = [];
    await new Promise<void>(resolve => {
      const follower = new RunFollower(
        client,
        'r1',
        {
          onEvents: events => {
            delivered.push(...events.map(e => e.seq));
            state = reduceEvents(state, events);
          },
          onFinished: resolve,
          onError: err => errors.push(err)
        },
        { useSse: false, pollIntervalMs: 5 }
      );
      follower.start(0);
    });
    expect(afters[0]).toBe(0);
    expect(afters[afters.length - 1]).toBe(4);
    expect(delivered).toEqual([1, 2, 3, 4, 5]);
    expect(errors).toHaveLength(1);
    expect(errors[0].message).toBe('temporary hiccup');
    expect(state).toMatchObject({ status: 'succeeded', finished: true });
    expect(state.steps.a.status).toBe('succeeded');
  });

  it('stops polling when disposed', async () => {
    const { client, afters } = journalServer([[ev(1, 'run_started', null, { steps: [] })]]);
    const follower = new RunFollower(client, 'r1', { onEvents: () => undefined, onFinished: () => undefined }, { useSse: false, pollIntervalMs: 5 });
    follower.start(0);
    await new Promise(r => setTimeout(r, 30));
    follower.dispose();
    const count = afters.length;
    await new Promise(r => setTimeout(r, 30));
    expect(afters.length).toBe(count);
    expect(follower.isDisposed).toBe(true);
  });
});
