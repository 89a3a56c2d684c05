import { StoreUnavailableError } from '../../engine/errors.js';

/** Placeholder until the PostgreSQL store lands. */
export class PostgresStore {
  constructor(_config: { connectionString: string }) {
    throw new StoreUnavailableError('The PostgreSQL store is not available in this build.');
  }
}
