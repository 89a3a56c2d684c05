/**
 * The recursive LLM pipeline of examples/llm as a plain recursive script, no rlm: the same passages, prompts,
 * splits and merges (examples/llm/pipeline.ts), the same OpenAI client against OPENAI_BASE_URL, at most
 * `concurrency` model calls in flight. Nothing is journaled: a restart after a crash starts over.
 *
 *   node --import tsx bench/baselines/llm-plain.ts '{"input":{…},"concurrency":8}'
 * Prints one JSON line: the answer with its calls and tokens, and the seconds it took.
 */
import OpenAI from 'openai';
import { type Answer, answerPrompt, type Budget, type CorpusSource, fits, loadCorpus, type Message, mergeAnswers, type Reply, splitRange } from '../../examples/llm/pipeline.js';

interface Options {
  input: { question: string; corpus: CorpusSource; contextTokens?: number; answerTokens?: number; fanout?: number };
  concurrency: number;
}

const options = JSON.parse(process.argv[2] ?? '{}') as Options;
const { question, corpus: source } = options.input;
const budget: Budget = { contextTokens: options.input.contextTokens ?? 1024, answerTokens: options.input.answerTokens ?? 128 };
const fanout = options.input.fanout ?? 4;
const openai = new OpenAI({ baseURL: process.env.OPENAI_BASE_URL, apiKey: process.env.OPENAI_API_KEY || 'local', maxRetries: 0 });
const model = process.env.OPENAI_MODEL || 'extractive';

let inFlight = 0;
const queue: Array<() => void> = [];

async function ask(messages: Message[]): Promise<Reply> {
  if (inFlight >= options.concurrency) await new Promise<void>((resolve) => queue.push(resolve));
  inFlight++;
  try {
    const response = await openai.chat.completions.create({ model, messages, max_tokens: budget.answerTokens, temperature: 0 });
    return { text: response.choices[0]?.message.content ?? '', promptTokens: response.usage?.prompt_tokens ?? 0, completionTokens: response.usage?.completion_tokens ?? 0 };
  } finally {
    inFlight--;
    queue.shift()?.();
  }
}

const { passages } = loadCorpus(source);

async function solve(from: number, to: number): Promise<Answer> {
  const prompt = answerPrompt(question, passages.slice(from, to));
  if (fits(prompt, budget)) {
    const reply = await ask(prompt);
    return { answer: reply.text.trim(), calls: 1, promptTokens: reply.promptTokens, completionTokens: reply.completionTokens };
  }
  const children = await Promise.all(splitRange(passages, from, to, fanout).map(([start, end]) => solve(start, end)));
  return mergeAnswers(question, children, budget, ask);
}

const started = performance.now();
const answer = await solve(0, passages.length);
process.stdout.write(`${JSON.stringify({ ...answer, seconds: (performance.now() - started) / 1000 })}\n`);
