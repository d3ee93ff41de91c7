import { ScanflowModels } from '../model';
import { startedByLabel } from '../section_runs';
import type { IConfig } from '../types';

/** The backend picker's data: every backend the server lists (plug-ins included), reasons with fixes. */
describe('ScanflowModels.availability', () => {
  const config = {
    tracking_uri: null,
    default_backend: 'local',
    registry: null,
    kube_context: null,
    namespace: null,
    base_image: null,
    backends: [
      { name: 'local', available: true, reason: null, fix: null, capabilities: ['cache'], execution: 'per_step' },
      { name: 'echo-test', available: true, reason: null, fix: null, capabilities: ['logs'], execution: 'per_step' },
      {
        name: 'offline-test',
        available: false,
        reason: 'the echo device is unplugged',
        fix: 'plug the echo device in',
        capabilities: [],
        execution: 'per_step'
      }
    ],
    version: '0.1.0'
  } as unknown as IConfig;

  const models = new ScanflowModels({} as never, () => undefined);
  models.config = config;

  it('knows a third-party backend the server registered', () => {
    expect(models.availability('echo-test')).toEqual({ available: true, reason: null });
  });

  it("gives an unavailable plug-in's reason with its fix", () => {
    expect(models.availability('offline-test')).toEqual({
      available: false,
      reason: 'the echo device is unplugged (fix: plug the echo device in)'
    });
  });

  it('refuses a name the server does not list', () => {
    expect(models.availability('nope').available).toBe(false);
  });
});

describe('startedByLabel', () => {
  it('names the agent that started a run, and the other starters', () => {
    expect(startedByLabel('agent:planner')).toBe('started by agent planner');
    expect(startedByLabel('cli')).toBe('started from the CLI');
    expect(startedByLabel('sidebar')).toBe('started from the sidebar');
    expect(startedByLabel(null)).toBeNull();
  });
});
