/**
 * A small OpenAI-compatible chat model for the recursive LLM pipeline, so it runs anywhere with no network and no
 * weights: `POST /v1/chat/completions` answers extractively and deterministically — the sentences of the prompt's
 * context (or of the partial answers it merges) that share the most words with its question — and reports token
 * usage counted as words / 0.75. A prompt that does not fit its context window gets the 400 a provider sends.
 *
 * It counts every call by prompt hash (`GET /stats`, or `calls()` from code), and can refuse calls on demand
 * (`fault`): a 429 with `Retry-After`, or a 5xx, as a provider under load does.
 *
 *   npx tsx examples/llm/server.ts --port 8787 [--latency-ms 50] [--context-tokens 8192] [--log-calls]
 *                                  [--rate-limit-every 3 [--retry-after-ms 2000]]
 */
import { EventEmitter } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { countTokens, isNone, type Message, NONE, promptHash, promptTokens } from './pipeline.js';

/** What the server does with one call instead of answering it. */
export type Fault = { status: 429; retryAfterMs: number } | { status: 500 | 502 | 503 };

export interface ModelServerOptions {
  /** @default 0 (a free port) */
  port?: number;
  /** The context window every prompt plus its max_tokens must fit. @default 8192 */
  contextTokens?: number;
  /** Time each answer takes, in ms, as a model's would. @default 0 */
  latencyMs?: number;
  /** Called for each call before it is answered; a Fault refuses it. `seen` counts earlier calls of this prompt. */
  fault?: (call: { hash: string; seen: number; n: number }) => Fault | undefined;
  /** Lets the process end while the server listens (for a server started inside a task module). @default false */
  unref?: boolean;
}

/** One call the server received. `status` is 0 until it answers. */
export interface CallRecord {
  n: number;
  hash: string;
  status: number;
  promptTokens: number;
  completionTokens: number;
}

export interface ModelServer {
  /** The base URL for an OpenAI client: `http://127.0.0.1:PORT/v1`. */
  readonly url: string;
  /** Every call received, in order. */
  calls(): readonly CallRecord[];
  /** `call` when a request arrives (before it is answered), `answered` once its response is sent. */
  readonly events: EventEmitter<{ call: [CallRecord]; answered: [CallRecord] }>;
  /** The most calls it was answering at once (received, not yet answered). */
  maxInFlight(): number;
  /** Client connections open now: 0 once a killed client's sockets are closed and all it sent is read. */
  openConnections(): number;
  close(): Promise<void>;
}

const STOPWORDS = new Set(
  'a an and are as at be by did do does for from had has have how in is it its of on or the this to was were what when where which who whom why with'.split(' '),
);

function words(text: string): string[] {
  return (text.toLowerCase().match(/[a-z0-9']+/g) ?? []).filter((word) => !STOPWORDS.has(word));
}

/**
 * The extractive answer: the context's sentences sharing the most distinct words with the question (all that tie,
 * at most three, in order), or NONE when no sentence shares one.
 */
export function extract(messages: readonly Message[]): string {
  const user = messages.filter((message) => message.role === 'user').at(-1)?.content ?? '';
  const question = /^Question: (.*)$/m.exec(user)?.[1] ?? '';
  const body = user.split(/\n\n(?:Context|Partial answers):\n/)[1] ?? '';
  const wanted = new Set(words(question));
  const scored: Array<{ sentence: string; score: number }> = [];
  const seen = new Set<string>();
  for (const raw of body.split(/(?<=[.!?])\s+|\n+/)) {
    const sentence = raw.replace(/^\[\d+\]\s*/, '').trim();
    if (!sentence || sentence.startsWith('#') || isNone(sentence) || seen.has(sentence)) continue;
    seen.add(sentence);
    scored.push({ sentence, score: new Set(words(sentence).filter((word) => wanted.has(word))).size });
  }
  const best = Math.max(0, ...scored.map((entry) => entry.score));
  if (best === 0) return NONE;
  return scored
    .filter((entry) => entry.score === best)
    .slice(0, 3)
    .map((entry) => entry.sentence)
    .join(' ');
}

interface ChatRequest {
  model?: string;
  messages?: Message[];
  max_tokens?: number | null;
  max_completion_tokens?: number | null;
}

function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(text)), ...headers });
  res.end(text);
}

function apiError(res: ServerResponse, status: number, message: string, type: string, code: string | null, headers?: Record<string, string>): void {
  send(res, status, { error: { message, type, param: null, code } }, headers);
}

async function readBody(req: IncomingMessage): Promise<string> {
  let text = '';
  for await (const chunk of req) text += (chunk as Buffer).toString('utf8');
  return text;
}

/** Starts the server; resolves once it listens. */
export async function startModelServer(options: ModelServerOptions = {}): Promise<ModelServer> {
  const contextTokens = options.contextTokens ?? 8192;
  const latencyMs = options.latencyMs ?? 0;
  const log: CallRecord[] = [];
  const byHash = new Map<string, number>();
  const events = new EventEmitter<{ call: [CallRecord]; answered: [CallRecord] }>();
  let inFlight = 0;
  let maxInFlight = 0;

  async function complete(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let body: ChatRequest;
    try {
      body = JSON.parse(await readBody(req)) as ChatRequest;
    } catch {
      return apiError(res, 400, 'The request body is not JSON.', 'invalid_request_error', null);
    }
    const messages = body.messages;
    if (!Array.isArray(messages) || messages.some((m) => typeof m?.content !== 'string')) {
      return apiError(res, 400, '`messages` must be an array of messages with string content.', 'invalid_request_error', null);
    }
    const hash = promptHash(messages);
    const seen = byHash.get(hash) ?? 0;
    byHash.set(hash, seen + 1);
    const record: CallRecord = { n: log.length + 1, hash, status: 0, promptTokens: promptTokens(messages), completionTokens: 0 };
    log.push(record);
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    events.emit('call', record);
    const answered = (status: number) => {
      inFlight--;
      record.status = status;
      events.emit('answered', record);
    };
    const fault = options.fault?.({ hash, seen, n: record.n });
    if (fault?.status === 429) {
      apiError(res, 429, 'Rate limit reached; retry after the time in Retry-After.', 'requests', 'rate_limit_exceeded', {
        'retry-after': String(Math.max(1, Math.ceil(fault.retryAfterMs / 1000))),
        'retry-after-ms': String(fault.retryAfterMs),
      });
      return answered(429);
    }
    if (fault) {
      apiError(res, fault.status, 'The server had an error while processing your request.', 'server_error', null);
      return answered(fault.status);
    }
    const maxTokens = body.max_completion_tokens ?? body.max_tokens ?? 256;
    if (record.promptTokens + maxTokens > contextTokens) {
      apiError(
        res,
        400,
        `This model's maximum context length is ${contextTokens} tokens. However, you requested ${record.promptTokens + maxTokens} tokens ` +
          `(${record.promptTokens} in the messages, ${maxTokens} in the completion). Please reduce the length of the messages or completion.`,
        'invalid_request_error',
        'context_length_exceeded',
      );
      return answered(400);
    }
    if (latencyMs > 0) await sleep(latencyMs);
    let content = extract(messages);
    let finish: 'stop' | 'length' = 'stop';
    if (countTokens(content) > maxTokens) {
      content = content.split(/\s+/).slice(0, Math.floor(maxTokens * 0.75)).join(' ');
      finish = 'length';
    }
    record.completionTokens = countTokens(content);
    send(res, 200, {
      id: `chatcmpl-${hash}-${record.n}`,
      object: 'chat.completion',
      created: Math.floor(Date.now() / 1000),
      model: body.model ?? 'extractive',
      choices: [{ index: 0, message: { role: 'assistant', content, refusal: null }, logprobs: null, finish_reason: finish }],
      usage: { prompt_tokens: record.promptTokens, completion_tokens: record.completionTokens, total_tokens: record.promptTokens + record.completionTokens },
    });
    answered(200);
  }

  function stats() {
    const ok = log.filter((call) => call.status === 200);
    return {
      calls: log.length,
      answered: ok.length,
      refused: log.filter((call) => call.status !== 200 && call.status !== 0).length,
      promptTokens: ok.reduce((sum, call) => sum + call.promptTokens, 0),
      completionTokens: ok.reduce((sum, call) => sum + call.completionTokens, 0),
      byHash: Object.fromEntries(byHash),
    };
  }

  const server = createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0];
    if (req.method === 'POST' && path === '/v1/chat/completions') {
      complete(req, res).catch((error: unknown) => {
        if (!res.headersSent) apiError(res, 500, `The model server failed: ${(error as Error).message}`, 'server_error', null);
      });
    } else if (req.method === 'GET' && path === '/stats') {
      send(res, 200, stats());
    } else if (req.method === 'GET' && path === '/v1/models') {
      send(res, 200, { object: 'list', data: [{ id: 'extractive', object: 'model', created: 0, owned_by: 'rlm-example' }] });
    } else {
      apiError(res, 404, `No route ${req.method} ${path}.`, 'invalid_request_error', null);
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, '127.0.0.1', () => resolve());
  });
  if (options.unref) server.unref();
  const sockets = new Set<Socket>();
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/v1`,
    calls: () => log,
    events,
    maxInFlight: () => maxInFlight,
    openConnections: () => sockets.size,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({
    options: {
      port: { type: 'string', default: '8787' },
      'latency-ms': { type: 'string', default: '0' },
      'context-tokens': { type: 'string', default: '8192' },
      // One line per call received, `call N HASH`, for a process that watches this one.
      'log-calls': { type: 'boolean', default: false },
      // The first call of every Nth prompt is answered 429 with Retry-After (`--retry-after-ms`, default 2000).
      'rate-limit-every': { type: 'string', default: '0' },
      'retry-after-ms': { type: 'string', default: '2000' },
    },
  });
  const every = Number(values['rate-limit-every']);
  const retryAfterMs = Number(values['retry-after-ms']);
  const prompts = new Map<string, number>();
  const server = await startModelServer({
    port: Number(values.port),
    latencyMs: Number(values['latency-ms']),
    contextTokens: Number(values['context-tokens']),
    fault: ({ hash, seen }) => {
      if (!prompts.has(hash)) prompts.set(hash, prompts.size);
      return every > 0 && seen === 0 && (prompts.get(hash) ?? 0) % every === 0 ? { status: 429, retryAfterMs } : undefined;
    },
  });
  if (values['log-calls']) server.events.on('call', (call) => process.stdout.write(`call ${call.n} ${call.hash}\n`));
  process.stdout.write(`model server listening on ${server.url}\n`);
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => void server.close().then(() => process.exit(0)));
}
