export { defineTask } from './task.js';
export type { ChildFailure, ChildSpec, Children, GroupLimits, Json, StepResult, Task, TaskContext, TaskDefinition, TaskLimits } from './task.js';
export { openEngine } from './engine/engine.js';
export type { Engine, OpenEngineOptions, ResultsOptions, RunHandle, RunOutcome, StartOptions } from './engine/engine.js';
export type { EngineOptions } from './engine/options.js';
export {
  ConfigError,
  InvalidInputError,
  NonRetryableError,
  NotFoundError,
  NotSerializableError,
  RetryLater,
  CostBudgetError,
  NeedsApproval,
  RlmError,
  StaleLeaseError,
  StoreCorruptError,
  StoreIoError,
  StoreTooNewError,
  StoreUnavailableError,
} from './engine/errors.js';
export type { RlmErrorCode } from './engine/errors.js';
export { openStore, redactUrl } from './store/open.js';
export type { OpenStoreOptions } from './store/open.js';
export type { NodeRecord, NodeState, RunRecord, RunState, Store, StoreCapabilities } from './store/store.js';
export { createLogger } from './observe/logger.js';
export type { Logger } from './observe/logger.js';
export { Metrics } from './observe/metrics.js';
