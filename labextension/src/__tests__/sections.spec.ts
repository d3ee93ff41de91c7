import { messageText } from '../section_agents';
import { sortSteps } from '../section_runs';
import type { IAppNode, IMlflowRun } from '../types';

const run = (step: string, start: number): IMlflowRun => ({
  run_id: `id-${step}-${start}`,
  run_name: step,
  experiment_id: '1',
  status: 'FINISHED',
  start_time: start,
  end_time: null,
  duration_s: null,
  metrics: {},
  params: {},
  tags: { 'scanflow.step': step }
});

const node = (id: string, cell: number): IAppNode => ({ id, kind: 'executor', cell, inputs: [], outputs: [] });

describe('sortSteps', () => {
  it('orders step runs like the notebook, unknown steps last by start time', () => {
    const runs = [run('train', 1), run('zzz', 9), run('load', 4), run('stats', 2), run('yyy', 3)];
    const nodes = [node('load', 3), node('stats', 5), node('train', 6)];
    expect(sortSteps(runs, nodes).map(r => r.run_name)).toEqual(['load', 'stats', 'train', 'yyy', 'zzz']);
  });
});

describe('messageText', () => {
  it('renders an agent message as time, kind, name and details', () => {
    const at = new Date(2026, 0, 1, 12, 30, 5).getTime() / 1000;
    const text = messageText({ id: 3, at, kind: 'sensor', name: 'weak_models', value: { n: 2 }, text: 'hit' });
    expect(text).toBe(`${new Date(at * 1000).toLocaleTimeString()} sensor weak_models: value={"n":2} text=hit`);
    expect(messageText('plain')).toBe('plain');
  });
});
