/**
 * The recursive LLM pipeline's pure parts, shared by the rlm task (task.ts), the local model server (server.ts)
 * and the plain recursive script it is benchmarked against: the documents as passages, token counts, the
 * prompts, how a slice too big for the model's context is split, and how children's answers are packed into
 * merge prompts that fit.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { makeCorpus } from './corpus.js';

export interface Message {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

/** Where the documents come from: a generated corpus, or every .md/.txt file of a directory. */
export type CorpusSource = { docs: number; seed: number } | { dir: string };

/** What the answer to a slice, or a subtree, is: the text and what it cost. */
export interface Answer {
  answer: string;
  calls: number;
  promptTokens: number;
  completionTokens: number;
}

/** The answer a prompt gets when its context says nothing about the question. */
export const NONE = 'No relevant information.';

/** Tokens of a text, as the local server counts them: words / 0.75, the usual rule of thumb for English. */
export function countTokens(text: string): number {
  const words = text.split(/\s+/).filter(Boolean).length;
  return Math.ceil(words / 0.75);
}

/** Tokens of a chat prompt: its messages' text plus 4 per message for the roles and separators. */
export function promptTokens(messages: readonly Message[]): number {
  let total = 0;
  for (const message of messages) total += countTokens(message.content) + 4;
  return total;
}

/** The identity of a model call: a hash of its messages (the local server counts calls by the same hash). */
export function promptHash(messages: readonly Message[]): string {
  const hash = createHash('sha256');
  for (const message of messages) hash.update(`${message.role}\n${message.content}\n\u0000\n`);
  return hash.digest('hex').slice(0, 24);
}

/** Whether an answer found nothing: the agreed reply, or an empty one (a refusal has no content). */
export function isNone(answer: string): boolean {
  const text = answer.trim().replace(/\.$/, '').toLowerCase();
  return text === '' || text === NONE.replace(/\.$/, '').toLowerCase();
}

const ANSWER_SYSTEM = `Answer the question using only the context. Reply with the sentences of the context that answer it, quoted exactly. If the context does not answer it, reply exactly: ${NONE}`;
const MERGE_SYSTEM = `Several readers answered the question, each from a different part of a document set. Merge their partial answers into one: reply with the sentences that answer the question best, quoted exactly. If none answers it, reply exactly: ${NONE}`;

/** The prompt that answers `question` from one slice of passages. */
export function answerPrompt(question: string, passages: readonly string[]): Message[] {
  return [
    { role: 'system', content: ANSWER_SYSTEM },
    { role: 'user', content: `Question: ${question}\n\nContext:\n${passages.join('\n\n')}` },
  ];
}

/** The prompt that merges children's answers to `question` into one. */
export function mergePrompt(question: string, answers: readonly string[]): Message[] {
  return [
    { role: 'system', content: MERGE_SYSTEM },
    { role: 'user', content: `Question: ${question}\n\nPartial answers:\n${answers.map((answer, i) => `[${i + 1}] ${answer}`).join('\n\n')}` },
  ];
}

/** The limits every prompt is held to. */
export interface Budget {
  /** The model's context window in tokens: prompt plus answer. */
  contextTokens: number;
  /** The most tokens an answer may have (the request's max_tokens). */
  answerTokens: number;
}

/** Whether a prompt leaves room for its answer within the context window. */
export function fits(messages: readonly Message[], budget: Budget): boolean {
  return promptTokens(messages) + budget.answerTokens <= budget.contextTokens;
}

/** Passages bigger than this are cut at sentence ends, so that a slice of one passage always fits a prompt. */
const MAX_PASSAGE_TOKENS = 200;

function cutPassage(paragraph: string): string[] {
  if (countTokens(paragraph) <= MAX_PASSAGE_TOKENS) return [paragraph];
  const pieces: string[] = [];
  let current = '';
  for (const sentence of paragraph.split(/(?<=[.!?])\s+/)) {
    const next = current ? `${current} ${sentence}` : sentence;
    if (current && countTokens(next) > MAX_PASSAGE_TOKENS) {
      pieces.push(current);
      current = sentence;
    } else {
      current = next;
    }
  }
  if (current) pieces.push(current);
  // A single sentence longer than the limit is cut at word boundaries.
  return pieces.flatMap((piece) => {
    if (countTokens(piece) <= MAX_PASSAGE_TOKENS) return [piece];
    const words = piece.split(/\s+/);
    const size = Math.floor(MAX_PASSAGE_TOKENS * 0.75);
    const cut: string[] = [];
    for (let at = 0; at < words.length; at += size) cut.push(words.slice(at, at + size).join(' '));
    return cut;
  });
}

export interface Corpus {
  passages: string[];
  /** A hash of every passage: a run checks it at each node, so documents that change mid-run are noticed. */
  digest: string;
}

const loaded = new Map<string, Corpus>();

/** The documents as a flat list of passages (paragraphs), loaded once per process and source. */
export function loadCorpus(source: CorpusSource): Corpus {
  const id = 'dir' in source ? `dir:${resolve(source.dir)}` : `gen:${source.docs}:${source.seed}`;
  const cached = loaded.get(id);
  if (cached) return cached;
  const paragraphs: string[] = [];
  if ('dir' in source) {
    const names = readdirSync(source.dir)
      .filter((name) => /\.(md|txt)$/i.test(name))
      .sort();
    for (const name of names) {
      const text = readFileSync(join(source.dir, name), 'utf8');
      for (const block of text.split(/\n\s*\n/)) {
        const paragraph = block.replace(/\s+/g, ' ').trim();
        if (paragraph) paragraphs.push(paragraph);
      }
    }
  } else {
    for (const doc of makeCorpus(source.docs, source.seed)) paragraphs.push(`# ${doc.title}`, ...doc.paragraphs);
  }
  const passages = paragraphs.flatMap(cutPassage);
  const hash = createHash('sha256');
  for (const passage of passages) hash.update(`${passage}\n`);
  const corpus = { passages, digest: hash.digest('hex').slice(0, 16) };
  loaded.set(id, corpus);
  return corpus;
}

/**
 * Cuts passages [from, to) into at most `fanout` contiguous ranges of about equal tokens, each non-empty:
 * the children of a slice too big for one prompt.
 */
export function splitRange(passages: readonly string[], from: number, to: number, fanout: number): Array<[number, number]> {
  const parts = Math.min(fanout, to - from);
  let total = 0;
  for (let i = from; i < to; i++) total += countTokens(passages[i] ?? '');
  const ranges: Array<[number, number]> = [];
  let start = from;
  let seen = 0;
  for (let i = from; i < to && ranges.length < parts - 1; i++) {
    seen += countTokens(passages[i] ?? '');
    const left = to - (i + 1);
    const wanted = parts - 1 - ranges.length;
    // Cut once this part has its share of tokens, leaving at least one passage for each part still to come.
    if ((seen >= (total * (ranges.length + 1)) / parts || left === wanted) && left >= wanted) {
      ranges.push([start, i + 1]);
      start = i + 1;
    }
  }
  ranges.push([start, to]);
  return ranges;
}

/** The nodes of the tree that answers `question` over passages [from, to): the run's exact node count. */
export function countNodes(passages: readonly string[], question: string, budget: Budget, fanout: number, from = 0, to = passages.length): number {
  if (to - from <= 1 || fits(answerPrompt(question, passages.slice(from, to)), budget)) return 1;
  let nodes = 1;
  for (const [start, end] of splitRange(passages, from, to, fanout)) nodes += countNodes(passages, question, budget, fanout, start, end);
  return nodes;
}

/**
 * Packs answers into as few merge prompts as fit the budget, in order. One batch means one merge call gives the
 * answer; more, and their merged answers are merged again (each round at least halves the count, since any two
 * answers of at most `answerTokens` each fit one prompt when the budget allows).
 */
export function packAnswers(question: string, answers: readonly string[], budget: Budget): string[][] {
  const batches: string[][] = [];
  let batch: string[] = [];
  for (const answer of answers) {
    if (batch.length > 0 && !fits(mergePrompt(question, [...batch, answer]), budget)) {
      batches.push(batch);
      batch = [];
    }
    batch.push(answer);
  }
  if (batch.length > 0) batches.push(batch);
  return batches;
}

/** What one model call gave back. */
export interface Reply {
  text: string;
  promptTokens: number;
  completionTokens: number;
}

/**
 * A parent's answer from its children's: their costs summed, and their answers (those that found something,
 * each once) merged by the model, in rounds of prompts that fit the budget, until one is left.
 */
export async function mergeAnswers(question: string, children: readonly Answer[], budget: Budget, ask: (messages: Message[]) => Promise<Reply>): Promise<Answer> {
  const total: Answer = { answer: NONE, calls: 0, promptTokens: 0, completionTokens: 0 };
  for (const child of children) {
    total.calls += child.calls;
    total.promptTokens += child.promptTokens;
    total.completionTokens += child.completionTokens;
  }
  let answers = [...new Set(children.map((child) => child.answer).filter((answer) => !isNone(answer)))];
  while (answers.length > 1) {
    const batches = packAnswers(question, answers, budget);
    if (batches.length === answers.length) throw new Error(`No two answers fit one merge prompt of ${budget.contextTokens} tokens; raise \`contextTokens\`.`);
    const merged: string[] = [];
    for (const batch of batches) {
      if (batch.length === 1) {
        merged.push(batch[0] as string);
        continue;
      }
      const reply = await ask(mergePrompt(question, batch));
      total.calls++;
      total.promptTokens += reply.promptTokens;
      total.completionTokens += reply.completionTokens;
      if (!isNone(reply.text)) merged.push(reply.text.trim());
    }
    answers = [...new Set(merged)];
  }
  total.answer = answers[0] ?? NONE;
  return total;
}

/** The smallest context window the pipeline works in: a passage, or two answers, with the prompt around them. */
export function minimumContextTokens(question: string, answerTokens: number): number {
  const passage = 'word '.repeat(Math.floor(MAX_PASSAGE_TOKENS * 0.75)).trim();
  const answer = 'word '.repeat(Math.floor(answerTokens * 0.75)).trim();
  // A few tokens of slack for the answers' [n] labels.
  return Math.max(promptTokens(answerPrompt(question, [passage])), promptTokens(mergePrompt(question, [answer, answer]))) + answerTokens + 8;
}
