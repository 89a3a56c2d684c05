export { SqliteStore } from './sqlite-store.js';
export { SqliteThreadStore } from './thread.js';
export type { SqliteDatabase, SqliteStoreConfig } from './sqlite-store.js';
