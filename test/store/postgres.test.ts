/*
 * The PostgreSQL store: the conformance suite, plus what only a networked database has (concurrent migrators,
 * lost connections, unknown commit outcomes, LISTEN/NOTIFY, the database clock). Needs RLM_TEST_DATABASE_URL,
 * e.g. postgres://postgres@127.0.0.1:5432/test; every store gets a fresh schema, all dropped at the end.
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { configureFailpoints } from '../../src/failpoints.js';
import { PostgresStore, type PostgresStoreConfig } from '../../src/store/postgres/index.js';
import { MIGRATIONS } from '../../src/store/postgres/schema.js';
import type { CommitOp, NewRun } from '../../src/store/store.js';
import { newRun } from '../helpers/new-run.js';
import { storeConformance } from './conformance.js';

const url = process.env.RLM_TEST_DATABASE_URL;

if (!url && process.env.CI) {
  describe('PostgreSQL store', () => {
    it('runs in CI', () => {
      throw new Error('RLM_TEST_DATABASE_URL is not set, and PostgreSQL is required in CI: point it at a database the tests may create schemas in.');
    });
  });
} else if (!url) {
  console.warn('Skipped the PostgreSQL store tests: set RLM_TEST_DATABASE_URL (e.g. postgres://postgres@127.0.0.1:5432/test) to run them.');
}

const prefix = `rlm_test_${process.pid}_${Date.now().toString(36)}`;
const schemas: string[] = [];
const opened: PostgresStore[] = [];

function freshStore(config: Partial<PostgresStoreConfig> = {}): PostgresStore {
  const schema = `${prefix}_${schemas.length}`;
  schemas.push(schema);
  const store = new PostgresStore({ connectionString: url as string, schema, poolSize: 6, ...config });
  opened.push(store);
  return store;
}

async function admin<T>(fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

afterAll(async () => {
  configureFailpoints(undefined);
  await Promise.all(opened.map((store) => store.close().catch(() => undefined)));
  if (!url || schemas.length === 0) return;
  await admin(async (client) => {
    for (const schema of schemas) await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  });
});

const pgRun = (overrides: Partial<NewRun> = {}): NewRun => newRun({ task: 'pg-task', ...overrides });

describe.skipIf(!url)('PostgreSQL store', () => {
  storeConformance('postgres', async () => freshStore());

  describe('postgres only', () => {
    afterEach(() => configureFailpoints(undefined));

    async function ready(config: Partial<PostgresStoreConfig> = {}) {
      const store = freshStore(config);
      await store.migrate();
      const run = await store.createRun(pgRun());
      const worker = `w-${randomUUID().slice(0, 8)}`;
      await store.registerWorker({ id: worker, host: 'h', pid: 1, pidStart: 's', task: 'pg-task', version: 1 }, 60_000);
      const [root] = await store.claimNodes(worker, { task: 'pg-task', maxVersion: 1, runIds: [run.id] }, 1);
      if (!root) throw new Error('no root');
      const first = await store.allocateIds(3);
      const ops: CommitOp[] = [
        {
          kind: 'step',
          runId: run.id,
          nodeId: root.id,
          epoch: root.epoch,
          outcome: { type: 'done', result: '"root"' },
          attempts: 1,
          children: [0, 1, 2].map((ord) => ({
            id: first + ord,
            parentId: root.id,
            ord,
            key: `root/${ord}`,
            keyed: false,
            depth: 1,
            priority: 0,
            version: 1,
            input: '{}',
            context: null,
            state: 'pending' as const,
            error: null,
            traceparent: null,
          })),
          emits: ['"once"'],
          waits: false,
          passDead: false,
        },
      ];
      return { store, run, worker, root, ops };
    }

    it('migrates once when several workers start at once', async () => {
      const first = freshStore();
      const schema = first.schema;
      const others = [1, 2, 3, 4].map(() => {
        const store = new PostgresStore({ connectionString: url as string, schema, poolSize: 2 });
        opened.push(store);
        return store;
      });
      await Promise.all([first, ...others].map((store) => store.migrate()));
      const versions = await admin(async (client) => (await client.query(`SELECT version FROM "${schema}".rlm_migrations ORDER BY version`)).rows);
      expect(versions).toEqual(MIGRATIONS.map((migration) => ({ version: migration.version })));
      await first.createRun(pgRun());
      expect(await others[0]?.listRuns()).toHaveLength(1);
    });

    it('refuses a schema written by a newer rlm', async () => {
      const store = freshStore();
      await store.migrate();
      await admin((client) => client.query(`INSERT INTO "${store.schema}".rlm_migrations (version, applied_at) VALUES (999, 0)`));
      await expect(store.migrate()).rejects.toMatchObject({ code: 'STORE_TOO_NEW' });
    });

    it('never shows the password, in its description or its errors', async () => {
      const store = new PostgresStore({ connectionString: 'postgres://rlm:s3cret-pw@127.0.0.1:1/nowhere', retryForMs: 300, connectTimeoutMs: 500 });
      opened.push(store);
      expect(store.description).not.toContain('s3cret-pw');
      expect(store.description).toContain('***');
      const error = await store.migrate().then(
        () => undefined,
        (thrown: unknown) => thrown,
      );
      expect(error).toMatchObject({ code: 'STORE_UNAVAILABLE' });
      expect(String((error as Error).message)).not.toContain('s3cret-pw');
      expect(String((error as Error).stack)).not.toContain('s3cret-pw');
    });

    it('carries on after its connections are killed', async () => {
      const applicationName = `rlm-test-${randomUUID().slice(0, 8)}`;
      const { store, run, worker, ops } = await ready({ applicationName });
      const killed = await admin(
        async (client) => (await client.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1', [applicationName])).rowCount,
      );
      expect(killed).toBeGreaterThan(0);
      const result = await store.commit(worker, ops);
      expect(result.rejected).toEqual([]);
      expect((await store.getRun(run.id))?.counts).toEqual(await store.recount(run.id));
      expect(await store.claimNodes(worker, { task: 'pg-task', maxVersion: 1, runIds: [run.id] }, 10)).toHaveLength(3);
    });

    it('returns the stored result of a commit whose answer was lost, applied once', async () => {
      const { store, run, worker, ops } = await ready();
      configureFailpoints('commit.afterCommit=throw(ECONNRESET)@1');
      const result = await store.commit(worker, ops);
      configureFailpoints(undefined);
      expect(result.rejected).toEqual([]);
      expect(result.seq).toBeGreaterThan(0);
      expect((await store.readEmits(run.id, 0, 10)).map((e) => e.record)).toEqual(['"once"']);
      expect(await store.getRun(run.id)).toMatchObject({ nodeCount: 4, counts: { pending: 3, done: 1, running: 0 } });
      expect((await store.getRun(run.id))?.counts).toEqual(await store.recount(run.id));
    });

    it('retries a commit whose connection dropped before COMMIT, applied once', async () => {
      const { store, run, worker, ops } = await ready();
      configureFailpoints('commit.beforeCommit=throw(ECONNRESET)@1');
      const result = await store.commit(worker, ops);
      configureFailpoints(undefined);
      expect(result.rejected).toEqual([]);
      expect((await store.readEmits(run.id, 0, 10)).map((e) => e.record)).toEqual(['"once"']);
      expect(await store.getRun(run.id)).toMatchObject({ nodeCount: 4, counts: { pending: 3, done: 1, running: 0 } });
    });

    it('wakes an idle worker when work is committed', async () => {
      const store = freshStore();
      await store.migrate();
      const other = new PostgresStore({ connectionString: url as string, schema: store.schema });
      opened.push(other);
      await store.waitForWork(10); // connects the listener
      const started = Date.now();
      const woken = store.waitForWork(20_000);
      await other.createRun(pgRun());
      await woken;
      expect(Date.now() - started).toBeLessThan(5_000);
    });

    it('judges leases by the database clock', async () => {
      const store = freshStore();
      await store.migrate();
      await store.registerWorker({ id: 'brief', host: 'h', pid: 1, pidStart: 's', task: 't', version: 1 }, 1);
      await store.registerWorker({ id: 'long', host: 'h', pid: 1, pidStart: 's', task: 't', version: 1 }, 600_000);
      await new Promise((resolve) => setTimeout(resolve, 30));
      // Whatever this host's clock says, "expired" means expired now by the database's clock.
      await store.takeBack({ expiredBefore: Date.now() + 3_600_000 });
      const states = new Map((await store.listWorkers()).map((w) => [w.id, w.state]));
      expect(states.get('brief')).toBe('dead');
      expect(states.get('long')).toBe('alive');
    });
  });
});
