import { randomUUID } from 'node:crypto';
import type { NewRun } from '../../src/store/store.js';

/** A run as the engine would create it, for tests that call a Store directly; `overrides` set what matters. */
export function newRun(overrides: Partial<NewRun> = {}): NewRun {
  return {
    id: `run-${randomUUID()}`,
    task: 'task',
    taskVersion: 1,
    input: '{}',
    context: null,
    rootKey: 'root',
    rootKeyed: false,
    rootPriority: 0,
    order: 'dfs',
    nodeBudget: null,
    passDead: false,
    traceparent: null,
    ...overrides,
  };
}
