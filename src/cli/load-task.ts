import { existsSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Task } from '../task.js';
import { TaskModuleError } from '../engine/errors.js';
import { taskRuntime } from '../engine/task-runtime.js';

let tsxRegistered = false;

/**
 * Imports a task module: a `.ts` file runs as is (through tsx), a `.js`/`.mjs` file as plain ESM. Its default
 * export must be a task. A module that never finishes importing, or that calls process.exit while importing,
 * gets a clear error instead of a hang or a silent exit.
 */
export async function loadTask(modulePath: string, timeoutMs = Number(process.env.RLM_IMPORT_TIMEOUT_MS ?? 30_000)): Promise<Task> {
  const path = resolve(modulePath);
  if (!existsSync(path)) throw new TaskModuleError(`No task module at ${path}; pass the path of a .ts or .js file whose default export is a task.`);
  if (statSync(path).isDirectory()) throw new TaskModuleError(`${path} is a directory; pass the path of a task module file.`);
  if (/\.(c|m)?tsx?$/.test(path) && !tsxRegistered) {
    const { register } = await import('tsx/esm/api');
    register();
    tsxRegistered = true;
  }
  const exit = process.exit;
  let timer: NodeJS.Timeout | undefined;
  let loaded: Record<string, unknown>;
  try {
    process.exit = ((code?: number) => {
      throw new TaskModuleError(`The task module ${path} called process.exit(${code ?? ''}) while loading; a task module must only define its task.`);
    }) as typeof process.exit;
    loaded = (await Promise.race([
      import(pathToFileURL(path).href),
      new Promise((_, reject) => {
        timer = setTimeout(
          () => reject(new TaskModuleError(`The task module ${path} did not finish loading within ${timeoutMs} ms (a top-level await that never resolves?).`)),
          timeoutMs,
        );
      }),
    ])) as Record<string, unknown>;
  } catch (error) {
    if (error instanceof TaskModuleError) throw error;
    const message = (error as Error)?.message ?? String(error);
    throw new TaskModuleError(`The task module ${path} failed to load: ${message.split('\n')[0]}`, { cause: error });
  } finally {
    process.exit = exit;
    clearTimeout(timer);
  }
  let task = loaded.default;
  // A CommonJS-style or doubly-wrapped default export.
  if (task && typeof task === 'object' && 'default' in task && !('run' in task)) task = (task as { default: unknown }).default;
  if (task === undefined) throw new TaskModuleError(`The task module ${path} has no default export; write \`export default defineTask({ name, run })\`.`);
  try {
    taskRuntime(task);
  } catch (error) {
    throw new TaskModuleError(`The default export of ${path} is not a valid task: ${(error as Error).message}`, { cause: error });
  }
  return task as Task;
}
