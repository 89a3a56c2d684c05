/**
 * A recursive LLM pipeline: question answering over a document set too big for one prompt, in the shape of
 * recursive language models. A node answers from its slice of passages when the slice fits the model's context
 * window; otherwise it splits the slice into `fanout` children, and its `combine` asks the model to merge their
 * answers (in as many merge prompts as the window needs). The root's result is the answer, with the calls and
 * tokens of the whole tree.
 *
 * Every model call goes through `ask(ctx, …)`: one `ctx.effect` per call, named by a hash of its prompt, so a run
 * resumed after kill -9 never pays for a call it already made; a 429 becomes `RetryLater` (the node sleeps in the
 * store until Retry-After, uncharged), a 5xx an ordinary retry with backoff, another 4xx the dead-letter queue.
 * Each call is charged to the run's cost budget in tokens (`rlm run … --budget-cost 50000`) and emits
 * `{ node, kind, promptHash, promptTokens, completionTokens }` (`rlm results ID`); OPENAI_MAX_IN_FLIGHT and
 * OPENAI_MAX_PER_SECOND hold the provider's limits across every worker of a run.
 *
 * The model is `OPENAI_BASE_URL` / `OPENAI_API_KEY` / `OPENAI_MODEL`. Without `OPENAI_BASE_URL`, the module starts
 * the local extractive model of server.ts inside the process, so this runs anywhere:
 *
 *   npx rlm run examples/llm/task.ts --run towns --input '{"question":"Who rebuilt the bridge at Brarmere?","corpus":{"docs":60,"seed":1}}'
 */
import { defineTask, type GroupLimits, NonRetryableError, RetryLater, type TaskContext } from 'rlm';
import OpenAI from 'openai';
import { z } from 'zod';
import {
  type Answer,
  answerPrompt,
  type Budget,
  countNodes,
  countTokens,
  fits,
  loadCorpus,
  type Message,
  mergeAnswers,
  minimumContextTokens,
  NONE,
  promptHash,
  promptTokens,
  type Reply,
  splitRange,
} from './pipeline.js';
import { startModelServer } from './server.js';

const schema = z.object({
  question: z.string().min(1),
  corpus: z.union([z.object({ docs: z.number().int().min(1).max(1_000_000), seed: z.number().int() }), z.object({ dir: z.string().min(1) })]),
  /** The model's context window, prompt and answer together. */
  contextTokens: z.number().int().positive().optional(),
  /** max_tokens of every call. */
  answerTokens: z.number().int().positive().optional(),
  /** Children of a slice too big for one prompt. */
  fanout: z.number().int().min(2).max(64).optional(),
  /** The slice of passages [from, to) this node answers from; the whole corpus at the root. */
  from: z.number().int().min(0).optional(),
  to: z.number().int().min(0).optional(),
  /** The corpus digest the root saw, checked at every node. */
  digest: z.string().optional(),
});

export type LlmInput = z.infer<typeof schema>;

/** What one model call returned: journaled as the effect's value, so a resumed step reads it back. */
export interface Completion extends Reply {
  model: string;
}

const DEFAULTS = { contextTokens: 1024, answerTokens: 128, fanout: 4 };

function budgetOf(input: LlmInput): Budget {
  return { contextTokens: input.contextTokens ?? DEFAULTS.contextTokens, answerTokens: input.answerTokens ?? DEFAULTS.answerTokens };
}

/**
 * The provider's limits, from OPENAI_MAX_IN_FLIGHT (steps at once) and OPENAI_MAX_PER_SECOND (steps started a
 * second), held across every worker of a run: the whole pipeline is one group. Each step counts, a slice's split
 * too, since a group gates steps, not calls. Without either variable the steps are not gated.
 */
function providerLimits(): GroupLimits | undefined {
  const concurrency = Number(process.env.OPENAI_MAX_IN_FLIGHT) || undefined;
  const perSecond = Number(process.env.OPENAI_MAX_PER_SECOND) || undefined;
  if (concurrency === undefined && perSecond === undefined) return undefined;
  return { ...(concurrency ? { concurrency } : {}), ...(perSecond ? { perSecond } : {}) };
}

const limits = providerLimits();

let client: Promise<{ openai: OpenAI; model: string }> | undefined;

/** The OpenAI client, made once per process; without OPENAI_BASE_URL it talks to a local server started here. */
function modelClient(): Promise<{ openai: OpenAI; model: string }> {
  client ??= (async () => {
    // An empty variable counts as unset.
    const configured = process.env.OPENAI_BASE_URL || undefined;
    let baseURL = configured;
    if (!baseURL) {
      const server = await startModelServer({ unref: true });
      baseURL = server.url;
      process.stderr.write(`llm: OPENAI_BASE_URL is unset; started the local extractive model at ${baseURL}\n`);
    }
    // The client retries nothing itself: rlm decides (RetryLater for a 429, backoff for the rest).
    const openai = new OpenAI({ baseURL, apiKey: process.env.OPENAI_API_KEY || 'local', maxRetries: 0, timeout: 100_000 });
    return { openai, model: process.env.OPENAI_MODEL || (configured ? 'gpt-4o-mini' : 'extractive') };
  })().catch((error: unknown) => {
    client = undefined;
    throw error;
  });
  return client;
}

/** Milliseconds a 429 asks to wait: `retry-after-ms`, else `Retry-After` in seconds or as an HTTP date, else 1 s. */
export function retryAfterMs(headers: Headers | undefined, now = Date.now()): number {
  const ms = Number(headers?.get('retry-after-ms'));
  if (headers?.get('retry-after-ms') && Number.isFinite(ms) && ms >= 0) return ms;
  const value = headers?.get('retry-after');
  if (value) {
    const seconds = Number(value);
    if (Number.isFinite(seconds) && seconds >= 0) return seconds * 1000;
    const at = Date.parse(value);
    if (Number.isFinite(at)) return Math.max(0, at - now);
  }
  return 1000;
}

/** One chat completion, with the provider's refusals turned into what rlm should do about them. */
async function complete(messages: Message[], maxTokens: number, signal: AbortSignal): Promise<Completion> {
  const { openai, model } = await modelClient();
  try {
    const response = await openai.chat.completions.create({ model, messages, max_tokens: maxTokens, temperature: 0 }, { signal });
    const text = response.choices[0]?.message.content ?? '';
    // A provider that reports no usage is charged the local count.
    const usage = response.usage;
    return { text, promptTokens: usage?.prompt_tokens ?? promptTokens(messages), completionTokens: usage?.completion_tokens ?? countTokens(text), model: response.model };
  } catch (error) {
    if (error instanceof OpenAI.APIError && typeof error.status === 'number') {
      // The provider's pace, not the node's failure: the node sleeps in the store, no attempt charged.
      if (error.status === 429) throw new RetryLater(retryAfterMs(error.headers), { reason: `The model provider rate-limited the call (429): ${error.message}` });
      if (error.status >= 400 && error.status < 500 && error.status !== 408 && error.status !== 409) {
        throw new NonRetryableError(`The model provider refused the call (${error.status}): ${error.message}`, { cause: error });
      }
    }
    throw error;
  }
}

const askedInStep = new WeakMap<TaskContext, Map<string, Promise<Completion>>>();

/**
 * Every model call of the pipeline: journaled under a hash of its prompt, so a re-run step (after a crash, a
 * retry, a deferral) gets the same answer without calling the model again, and counted in one record per call.
 * Charged to the run's cost budget in tokens (`--budget-cost`): the most the call can cost (its prompt and
 * `answerTokens`) is reserved before it is made — past the budget the node parks and the run pauses — and what
 * the provider reports it cost is spent after.
 */
export async function ask(ctx: TaskContext, kind: 'answer' | 'merge', messages: Message[], budget: Budget): Promise<Completion> {
  const hash = promptHash(messages);
  // One effect per name and step: a prompt asked twice in one step gets the first call's answer.
  let asked = askedInStep.get(ctx);
  if (!asked) askedInStep.set(ctx, (asked = new Map()));
  const earlier = asked.get(hash);
  if (earlier) return earlier;
  await ctx.reserve(promptTokens(messages) + budget.answerTokens);
  const pending = ctx.effect(`chat:${hash}`, () => complete(messages, budget.answerTokens, ctx.signal));
  asked.set(hash, pending);
  const completion = await pending;
  await ctx.spend(completion.promptTokens + completion.completionTokens);
  ctx.emit({ node: ctx.key, kind, promptHash: hash, promptTokens: completion.promptTokens, completionTokens: completion.completionTokens });
  return completion;
}

export default defineTask<LlmInput, Answer>({
  name: 'llm-qa',
  input: schema,
  ...(limits ? { group: () => 'model', groups: limits } : {}),
  // The split depends only on the passages and the budget, so the node count is known before any call.
  estimate: (input) => countNodes(loadCorpus(input.corpus).passages, input.question, budgetOf(input), input.fanout ?? DEFAULTS.fanout),
  // A model call can take a while, and a combine may make several in a row.
  limits: { timeoutMs: 300_000, maxAttempts: 4, backoffMs: 1_000 },
  async run(input, ctx) {
    const budget = budgetOf(input);
    const corpus = loadCorpus(input.corpus);
    if (input.digest !== undefined && input.digest !== corpus.digest) {
      throw new NonRetryableError(`The documents changed since the run started (digest ${corpus.digest}, the run's is ${input.digest}); start a new run.`);
    }
    const least = minimumContextTokens(input.question, budget.answerTokens);
    if (budget.contextTokens < least) {
      throw new NonRetryableError(`Expected \`contextTokens\` to be at least ${least} for \`answerTokens\` ${budget.answerTokens}, got ${budget.contextTokens}.`);
    }
    const from = input.from ?? 0;
    const to = Math.min(input.to ?? corpus.passages.length, corpus.passages.length);
    if (to <= from) return { result: { answer: NONE, calls: 0, promptTokens: 0, completionTokens: 0 } };
    const prompt = answerPrompt(input.question, corpus.passages.slice(from, to));
    if (fits(prompt, budget)) {
      const reply = await ask(ctx, 'answer', prompt, budget);
      return { result: { answer: reply.text.trim(), calls: 1, promptTokens: reply.promptTokens, completionTokens: reply.completionTokens } };
    }
    // Cannot happen past the check above (a passage is cut to fit any window it allows); were it to, a split
    // would give this very slice back as its only child, for ever.
    if (to - from === 1) throw new NonRetryableError(`Passage ${from} does not fit a prompt of ${budget.contextTokens} tokens; raise \`contextTokens\`.`);
    const ranges = splitRange(corpus.passages, from, to, input.fanout ?? DEFAULTS.fanout);
    return { children: ranges.map(([start, end]) => ({ input: { ...input, from: start, to: end, digest: corpus.digest } })) };
  },
  combine(input, children, ctx) {
    const budget = budgetOf(input);
    return mergeAnswers(input.question, children as Answer[], budget, (messages) => ask(ctx, 'merge', messages, budget));
  },
});
