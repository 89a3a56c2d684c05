/**
 * A deterministic corpus for the recursive LLM pipeline: one document per (invented) town, each a few paragraphs
 * of facts (its bridge, its library, its market, its people) and filler. Every town has exactly one bridge and one
 * library sentence, so "Who rebuilt the bridge at <town>?" has one answer somewhere in the corpus. The same
 * `{ docs, seed }` gives the same documents on every machine.
 *
 *   npx tsx examples/llm/corpus.ts --docs 40 --seed 1 --out /tmp/towns   # writes 40 .md files, prints a question
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';

export interface Document {
  name: string;
  title: string;
  paragraphs: string[];
}

/** mulberry32: a small seeded PRNG, so the corpus is the same everywhere. */
function seeded(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

const ONSETS = ['T', 'V', 'K', 'M', 'Br', 'S', 'L', 'Gr', 'D', 'H', 'Or', 'Al', 'Es', 'P', 'Fen', 'Ul'];
const MIDDLES = ['ol', 'ar', 'en', 'is', 'um', 'av', 'et', 'or', 'ild', 'ask', 'ur', 'ey'];
const CODAS = ['vern', 'mouth', 'holt', 'by', 'wick', 'ford', 'stead', 'mere', 'gate', 'ton', 'dal', 'ros'];
const GIVEN = ['Ilse', 'Tomas', 'Mirela', 'Osric', 'Hana', 'Edvin', 'Liesel', 'Corin', 'Agathe', 'Pavel', 'Runa', 'Anselm'];
const FAMILY = ['Marek', 'Holm', 'Varga', 'Lindqvist', 'Oyelaran', 'Castell', 'Brandt', 'Kovac', 'Aalto', 'Reyes', 'Duarte', 'Sato'];
const RIVERS = ['Aske', 'Morrow', 'Tiel', 'Quill', 'Ebbe', 'Sallow', 'Varn', 'Ouse'];
const PRODUCTS = ['wool', 'salt fish', 'copper pans', 'rye bread', 'blue glass', 'rope', 'cheese', 'linen'];
const DAYS = ['Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];
const COASTS = ['northern', 'western', 'southern', 'eastern'];
const FILLER = [
  'Travellers describe the square as quiet in the mornings.',
  'The winters are long, and the roads often stay closed until spring.',
  'Most houses are built of grey stone with steep slate roofs.',
  'A festival with music and lanterns is held at the end of summer.',
  'The old road to the hills is now used mostly by shepherds.',
  'Many families keep small gardens behind their houses.',
  'Fog from the valley settles over the rooftops on autumn evenings.',
  'The chapel bell is rung by hand every evening at six.',
];

/** The corpus for `docs` towns from `seed`: the same documents for the same arguments. */
export function makeCorpus(docs: number, seed: number): Document[] {
  const random = seeded(seed);
  const pick = <T>(list: readonly T[]): T => list[Math.floor(random() * list.length)] as T;
  const int = (from: number, to: number) => from + Math.floor(random() * (to - from + 1));
  const towns: string[] = [];
  const seen = new Set<string>();
  while (towns.length < docs) {
    const name = pick(ONSETS) + pick(MIDDLES) + pick(CODAS);
    if (seen.has(name)) {
      // Past a few hundred towns the syllables run out; a numbered name keeps them unique.
      if (seen.size >= ONSETS.length * MIDDLES.length * CODAS.length / 4) towns.push(`${name} ${towns.length}`);
      continue;
    }
    seen.add(name);
    towns.push(name);
  }
  const person = () => `${pick(GIVEN)} ${pick(FAMILY)}`;
  return towns.map((town, i) => {
    const other = towns[(i + 1 + int(0, docs - 2)) % docs] ?? town;
    const facts = [
      `${town} lies on the ${pick(RIVERS)} river, ${int(3, 90)} kilometres from ${other}.`,
      `The bridge at ${town} was rebuilt in ${int(1780, 1960)} by the engineer ${person()}.`,
      `The library of ${town} keeps ${int(12, 900)} maps of the ${pick(COASTS)} coast.`,
      `The market of ${town} opens every ${pick(DAYS)} and sells ${pick(PRODUCTS)}.`,
      `In ${int(1800, 1990)} the council of ${town} counted ${int(40, 4000)} households.`,
      `${person()} was born in ${town} in ${int(1820, 1970)} and later moved to ${other}.`,
    ];
    const sentences = [...facts];
    for (let f = 0; f < 6; f++) sentences.splice(int(0, sentences.length), 0, pick(FILLER));
    const paragraphs: string[] = [];
    for (let at = 0; at < sentences.length; ) {
      const size = int(3, 4);
      paragraphs.push(sentences.slice(at, at + size).join(' '));
      at += size;
    }
    return { name: `town-${String(i).padStart(4, '0')}.md`, title: town, paragraphs };
  });
}

/** The corpus as Markdown files in `dir`, one per town. */
export function writeCorpus(dir: string, documents: readonly Document[]): void {
  mkdirSync(dir, { recursive: true });
  for (const doc of documents) writeFileSync(join(dir, doc.name), `# ${doc.title}\n\n${doc.paragraphs.join('\n\n')}\n`);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({ options: { docs: { type: 'string', default: '40' }, seed: { type: 'string', default: '1' }, out: { type: 'string' } } });
  const documents = makeCorpus(Number(values.docs), Number(values.seed));
  if (values.out) writeCorpus(values.out, documents);
  const town = documents[Math.floor(documents.length / 2)]?.title ?? '';
  process.stdout.write(`${values.out ? `wrote ${documents.length} documents to ${values.out}; ` : ''}a question: Who rebuilt the bridge at ${town}?\n`);
}
