/** The printed table and the ratios: every figure is set against the floor measured in the same run. */

/**
 * A row of the bench:
 * - section: the heading it prints under
 * - workload, system: what ran, on what
 * - nodes, seconds, rssMb: measured (null when the row failed)
 * - floor: { shape, nodes } — the floor row this one is measured against (null: no ratio)
 * - status: 'ok' | 'failed' (wrong result: fails the bench) | 'error' (a peer that did not run) | 'unavailable'
 * - noRate: nodes and seconds are not a throughput (the resume row)
 * - note: how it was run, or why it did not
 * @typedef {{ section: string, workload: string, system: string, nodes: number | null, seconds: number | null,
 *   rate?: number | null, rssMb: number | null, floor: { shape: string, nodes: number } | null, isFloor?: { shape: string, nodes: number },
 *   noRate?: boolean, ratio?: number | null, status: 'ok' | 'failed' | 'error' | 'unavailable', note: string }} Row
 */

/** Fills `rate` and `ratio` (nodes/s over the floor's nodes/s for the same shape and tree size). */
export function computeRatios(rows) {
  for (const row of rows) {
    row.rate = row.status === 'ok' && !row.noRate && row.nodes && row.seconds ? row.nodes / row.seconds : null;
  }
  for (const row of rows) {
    const floor = row.floor && rows.find((r) => r.isFloor && r.isFloor.shape === row.floor.shape && r.isFloor.nodes === row.floor.nodes);
    row.ratio = floor?.rate && row.rate ? row.rate / floor.rate : null;
  }
}

const int = (n) => Math.round(n).toLocaleString('en-US');

function ratio(value) {
  if (value === null || value === undefined) return '';
  if (value >= 10) return `${value.toFixed(0)}×`;
  if (value >= 1) return `${value.toFixed(2)}×`;
  return `${value.toFixed(3)}×`;
}

const COLUMNS = [
  { title: 'workload', get: (r) => r.workload },
  { title: 'system', get: (r) => r.system },
  { title: 'nodes', right: true, get: (r) => (r.nodes === null ? '' : int(r.nodes)) },
  { title: 'seconds', right: true, get: (r) => (r.seconds === null || r.status !== 'ok' ? '' : r.seconds.toFixed(2)) },
  { title: 'nodes/s', right: true, get: (r) => (r.rate ? int(r.rate) : '') },
  { title: 'peak RSS MB', right: true, get: (r) => (r.rssMb === null || r.status !== 'ok' ? '' : int(r.rssMb)) },
  { title: '× floor', right: true, get: (r) => ratio(r.ratio) },
  { title: 'note', get: (r) => (r.status === 'ok' ? r.note : `${r.status === 'failed' ? 'FAILED: ' : ''}${r.note}`), last: true },
];

/** The table as text: one heading line per section, columns padded to fit. */
export function formatTable(rows) {
  const cells = rows.map((row) => COLUMNS.map((column) => column.get(row)));
  const widths = COLUMNS.map((column, i) => Math.max(column.title.length, ...cells.map((line) => line[i].length)));
  const render = (values) =>
    values
      .map((value, i) => (COLUMNS[i].last ? value : COLUMNS[i].right ? value.padStart(widths[i]) : value.padEnd(widths[i])))
      .join('  ')
      .trimEnd();
  const lines = [render(COLUMNS.map((column) => column.title))];
  let section = null;
  rows.forEach((row, i) => {
    if (row.section !== section) {
      section = row.section;
      lines.push(`── ${section} `.padEnd(Math.min(100, widths.slice(0, -1).reduce((a, b) => a + b + 2, 0)), '─'));
    }
    lines.push(render(cells[i]));
  });
  return lines.join('\n');
}
