/** Span, attribute and metric names: one place, so dashboards and queries do not drift. */
export const SPAN = { step: 'rlm.step', combine: 'rlm.combine', commit: 'rlm.commit' } as const;

export const ATTR = {
  runId: 'rlm.run.id',
  nodeId: 'rlm.node.id',
  nodeKey: 'rlm.node.key',
  depth: 'rlm.node.depth',
  attempt: 'rlm.attempt',
  phase: 'rlm.phase',
  task: 'rlm.task',
  batchSize: 'rlm.commit.batch_size',
} as const;

export const METRIC = {
  frontier: 'rlm_frontier_nodes',
  steps: 'rlm_steps_total',
  stepDuration: 'rlm_step_duration_seconds',
  errors: 'rlm_step_errors_total',
  dlq: 'rlm_dlq_nodes',
  commitDuration: 'rlm_checkpoint_duration_seconds',
  commitBatch: 'rlm_checkpoint_batch_size',
  leaseExpiries: 'rlm_lease_expiries_total',
  rejectedCommits: 'rlm_fenced_commits_total',
  effectCalls: 'rlm_effect_calls_total',
} as const;
