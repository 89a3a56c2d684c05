export { PostgresStore } from './postgres-store.js';
export type { PostgresStoreConfig } from './postgres-store.js';
