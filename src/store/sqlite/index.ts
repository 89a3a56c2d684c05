export { SqliteStore } from './sqlite-store.js';
export type { SqliteDatabase, SqliteStoreConfig } from './sqlite-store.js';
