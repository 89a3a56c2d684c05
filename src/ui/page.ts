/*
 * The dashboard's one page: HTML and CSS here, the script in page-script.ts. Everything is inline (no build
 * step, no CDN: the dashboard must work on a machine without internet), and ships in dist/ as plain modules.
 */
import { PAGE_SCRIPT } from './page-script.js';

export { PAGE_SCRIPT };

const STYLE = `
:root {
  --bg: #f5f6f8; --card: #fff; --line: #e2e5ea; --text: #1d2330; --muted: #6b7280; --head: #141a26; --accent: #2563eb;
  --pending: #64748b; --running: #2563eb; --waiting: #8b5cf6; --done: #16a34a; --dead: #dc2626; --parked: #d97706;
  --mono: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace;
}
* { box-sizing: border-box; }
[hidden] { display: none !important; }
html, body { margin: 0; height: 100%; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; background: var(--bg); color: var(--text); }
a { color: var(--accent); text-decoration: none; }
a:hover { text-decoration: underline; }
code, pre, .mono { font-family: var(--mono); font-size: 12.5px; }
.top { display: flex; align-items: center; gap: 16px; padding: 10px 20px; background: var(--head); color: #e5e7eb; }
.brand { font-weight: 700; font-size: 17px; letter-spacing: .3px; color: #fff; }
.brand span { font-weight: 400; color: #9ca3af; margin-left: 4px; }
.store { font-family: var(--mono); font-size: 12px; color: #9ca3af; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; flex: 1; }
.status { display: flex; align-items: center; gap: 6px; font-size: 12px; color: #cbd5e1; }
.status .dot { width: 8px; height: 8px; border-radius: 50%; background: #9ca3af; }
.status.ok .dot { background: #22c55e; box-shadow: 0 0 0 3px rgba(34,197,94,.2); }
.status.error .dot { background: #ef4444; }
.status.error { color: #fecaca; }
.layout { display: grid; grid-template-columns: 300px 1fr; min-height: calc(100% - 46px); }
.sidebar { border-right: 1px solid var(--line); background: #fbfbfc; padding: 14px 10px; overflow-y: auto; }
.sidebar h2 { margin: 0 8px 10px; font-size: 12px; text-transform: uppercase; letter-spacing: .8px; color: var(--muted); }
.run-link { display: block; padding: 9px 10px; border-radius: 8px; color: var(--text); margin-bottom: 4px; border: 1px solid transparent; }
.run-link:hover { background: #eef1f5; text-decoration: none; }
.run-link.selected { background: #fff; border-color: var(--line); box-shadow: 0 1px 2px rgba(0,0,0,.05); }
.run-link .l1 { display: flex; justify-content: space-between; align-items: center; gap: 8px; }
.run-link .rid { font-family: var(--mono); font-size: 12.5px; font-weight: 600; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.run-link .l2 { color: var(--muted); font-size: 12px; margin-top: 3px; }
.bar { display: flex; height: 4px; border-radius: 2px; overflow: hidden; background: #e8ebef; margin-top: 6px; }
.bar i { display: block; height: 100%; }
main { padding: 18px 22px 40px; min-width: 0; }
.empty { color: var(--muted); padding: 60px 0; text-align: center; }
.run-head { display: flex; justify-content: space-between; align-items: flex-start; gap: 12px; margin-bottom: 12px; }
.run-head h1 { margin: 0; font-size: 20px; font-family: var(--mono); word-break: break-all; }
.run-head .sub { color: var(--muted); font-size: 13px; margin-top: 2px; }
.run-actions { display: flex; gap: 8px; align-items: center; flex-shrink: 0; }
.pill { display: inline-block; padding: 2px 10px; border-radius: 999px; font-size: 12px; font-weight: 600; background: #e5e7eb; color: #374151; white-space: nowrap; }
.pill.running { background: #dbeafe; color: #1d4ed8; }
.pill.paused { background: #fef3c7; color: #92400e; }
.pill.completed { background: #dcfce7; color: #166534; }
.pill.failed { background: #fee2e2; color: #991b1b; }
.notice { background: #fffbeb; border: 1px solid #fde68a; color: #78350f; padding: 8px 12px; border-radius: 8px; margin-bottom: 12px; }
.btn { font: inherit; font-size: 13px; padding: 5px 12px; border-radius: 7px; border: 1px solid #cfd5dd; background: #fff; color: var(--text); cursor: pointer; }
.btn:hover { background: #f3f4f6; }
.btn:disabled { opacity: .5; cursor: default; }
.btn.primary { background: var(--accent); border-color: var(--accent); color: #fff; }
.btn.primary:hover { background: #1d4ed8; }
.btn.danger { color: #b91c1c; border-color: #fca5a5; }
.btn.danger:hover { background: #fef2f2; }
.btn.small { font-size: 12px; padding: 2px 9px; }
.tiles { display: grid; grid-template-columns: repeat(auto-fill, minmax(120px, 1fr)); gap: 10px; margin-bottom: 14px; }
.tile { background: var(--card); border: 1px solid var(--line); border-left: 4px solid #cbd5e1; border-radius: 8px; padding: 8px 12px; min-width: 0; }
.tile .n { font-size: 20px; font-weight: 650; font-variant-numeric: tabular-nums; white-space: nowrap; overflow: hidden; }
.progress { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 8px 12px; margin-bottom: 14px; }
.progress-bar { height: 8px; border-radius: 4px; background: #e8ebef; overflow: hidden; margin-bottom: 6px; }
.progress-bar i { display: block; height: 100%; background: var(--done); }
.progress-text { font-size: 13px; color: var(--muted); font-variant-numeric: tabular-nums; }
.progress-text b { color: var(--text); font-size: 15px; }
.tile .label { font-size: 12px; color: var(--muted); }
.grid2 { display: grid; grid-template-columns: 1fr 1fr; gap: 14px; margin-bottom: 14px; }
@media (max-width: 1100px) { .grid2 { grid-template-columns: 1fr; } }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 12px 14px; margin-bottom: 14px; min-width: 0; }
.grid2 > .card { margin-bottom: 0; }
.card-h { display: flex; align-items: baseline; gap: 8px; margin-bottom: 8px; font-weight: 600; }
.card-h .muted { font-weight: 400; }
.card-h .right { margin-left: auto; display: flex; gap: 6px; align-items: baseline; }
.muted { color: var(--muted); font-size: 12px; }
.big { font-size: 18px; font-weight: 650; font-variant-numeric: tabular-nums; }
svg.chart { width: 100%; height: 160px; display: block; }
svg.chart text { font: 11px system-ui, sans-serif; fill: #6b7280; }
svg.chart .grid { stroke: #eef0f3; }
table { width: 100%; border-collapse: collapse; font-size: 13px; }
th { text-align: left; font-weight: 600; color: var(--muted); font-size: 12px; padding: 4px 6px; border-bottom: 1px solid var(--line); }
td { padding: 5px 6px; border-bottom: 1px solid #f0f2f5; vertical-align: top; }
td.msg { max-width: 420px; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
td.acts { white-space: nowrap; text-align: right; }
td.acts .btn { margin-left: 4px; }
.badge { display: inline-block; min-width: 58px; text-align: center; padding: 0 6px; border-radius: 4px; font-size: 11px; font-weight: 600; color: #fff; background: var(--pending); }
.s-pending { background: var(--pending); } .s-running { background: var(--running); } .s-waiting { background: var(--waiting); }
.s-done { background: var(--done); } .s-dead { background: var(--dead); } .s-parked { background: var(--parked); }
.tree, .tree ul { list-style: none; margin: 0; padding: 0; }
.tree ul { padding-left: 22px; border-left: 1px dashed #d8dde4; margin-left: 10px; }
.tree .line { display: flex; align-items: center; gap: 7px; padding: 3px 4px; border-radius: 6px; }
.tree .line:hover { background: #f4f6f9; }
.tree .line.current { background: #eef4ff; }
.twisty { width: 20px; height: 20px; border: 0; background: none; cursor: pointer; color: #4b5563; font-size: 12px; padding: 0; transition: transform .1s; }
.twisty[aria-expanded="true"] { transform: rotate(90deg); }
.twisty.leaf { color: #cbd5e1; }
.tree .key { font-family: var(--mono); font-size: 12.5px; }
.tree .nid { color: #9ca3af; font-size: 11px; }
.tree .counts { margin-left: auto; display: flex; align-items: center; gap: 8px; color: var(--muted); font-size: 11.5px; white-space: nowrap; }
.tree .counts .bar { width: 70px; margin-top: 0; }
.tree .counts .counting { font-style: italic; }
.tree .note { color: var(--muted); font-size: 12px; padding: 3px 30px; }
.tree-scroll { max-height: 560px; overflow: auto; }
.detail h3 { margin: 0 0 4px; font-size: 15px; display: flex; gap: 8px; align-items: center; }
.kv { display: grid; grid-template-columns: max-content 1fr; gap: 3px 14px; font-size: 13px; margin: 10px 0; }
.kv dt { color: var(--muted); }
.kv dd { margin: 0; overflow-wrap: anywhere; }
.detail h4 { margin: 14px 0 4px; font-size: 12px; text-transform: uppercase; letter-spacing: .6px; color: var(--muted); }
pre { margin: 0; background: #f7f8fa; border: 1px solid #eceef2; border-radius: 6px; padding: 8px 10px; max-height: 260px; overflow: auto; white-space: pre-wrap; word-break: break-word; }
details summary { cursor: pointer; color: var(--muted); font-size: 12px; }
.actions { display: flex; gap: 8px; margin: 8px 0; }
.flash { position: fixed; right: 18px; bottom: 18px; max-width: 460px; padding: 10px 14px; border-radius: 8px; background: #111827; color: #f9fafb; box-shadow: 0 6px 24px rgba(0,0,0,.18); font-size: 13px; opacity: 0; transform: translateY(8px); transition: opacity .2s, transform .2s; pointer-events: none; }
.flash.show { opacity: 1; transform: none; }
.flash.error { background: #7f1d1d; }
.error-entry { border-left: 3px solid var(--dead); padding: 4px 0 4px 10px; margin: 6px 0; }
.error-message { margin: 2px 0; overflow-wrap: anywhere; }
`;

/** The page's HTML, whole. */
export function renderPage(): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>rlm dashboard</title>
<link rel="icon" href="data:,">
<style>${STYLE}</style>
</head>
<body>
<header class="top">
  <div class="brand">rlm<span>dashboard</span></div>
  <div class="store" id="store" data-testid="store"></div>
  <div class="status" id="status" data-testid="status"><span class="dot"></span><span id="status-text">connecting…</span></div>
</header>
<div class="layout">
  <aside class="sidebar">
    <h2>Runs</h2>
    <nav id="runs" data-testid="runs"></nav>
    <div id="no-runs" class="muted" hidden>No runs in this store yet. Start one with <code>rlm run &lt;module&gt; --input JSON</code>.</div>
  </aside>
  <main>
    <section id="empty" class="empty">Pick a run on the left.</section>
    <section id="run-error" class="empty" hidden></section>
    <section id="run-view" hidden>
      <div class="run-head">
        <div>
          <h1 id="run-title" data-testid="run-title"></h1>
          <div class="sub" id="run-sub"></div>
        </div>
        <div class="run-actions">
          <span id="run-state" class="pill" data-testid="run-state"></span>
          <button class="btn" id="pause" data-testid="pause" hidden>Pause</button>
          <button class="btn primary" id="resume" data-testid="resume" hidden>Resume</button>
        </div>
      </div>
      <div id="pause-reason" class="notice" data-testid="pause-reason" hidden></div>
      <div class="tiles" id="tiles" data-testid="counts"></div>
      <div class="progress" id="progress" data-testid="progress"></div>
      <div class="grid2">
        <div class="card">
          <div class="card-h">Rate <span class="muted">nodes done per second</span><span class="right"><span class="big" id="rate-now">–</span></span></div>
          <svg class="chart" id="chart-rate" data-testid="chart-rate" role="img" aria-label="rate over time"></svg>
        </div>
        <div class="card">
          <div class="card-h">Frontier <span class="muted">pending + running nodes</span><span class="right"><span class="big" id="frontier-now">–</span></span></div>
          <svg class="chart" id="chart-frontier" data-testid="chart-frontier" role="img" aria-label="frontier size over time"></svg>
        </div>
      </div>
      <div class="card" id="parked-card" data-testid="parked" hidden>
        <div class="card-h">Parked <span class="muted">waiting for a person: approve to let them run, reject to dead-letter them</span>
          <span class="right"><button class="btn small" id="approve-all">Approve all</button><button class="btn small danger" id="reject-all">Reject all</button></span></div>
        <table><thead><tr><th>node</th><th>key</th><th>depth</th><th>reason</th><th></th></tr></thead><tbody id="parked-rows"></tbody></table>
        <div class="muted" id="parked-more" hidden>Only the first 100 are listed.</div>
      </div>
      <div class="card" id="dlq-card" data-testid="dlq" hidden>
        <div class="card-h">Dead-letter queue <span class="muted">retry sends a node back to the frontier with fresh attempts; drop removes it from the queue</span>
          <span class="right"><button class="btn small" id="retry-all">Retry all</button><button class="btn small danger" id="drop-all">Drop all</button></span></div>
        <table><thead><tr><th>node</th><th>key</th><th>attempts</th><th>code</th><th>last error</th><th></th></tr></thead><tbody id="dlq-rows"></tbody></table>
        <div class="muted" id="dlq-more" hidden>Only the first 100 are listed.</div>
      </div>
      <div class="grid2">
        <div class="card">
          <div class="card-h">Tree <span class="muted">expand a node to see its children by state; counts are of each subtree</span></div>
          <div class="tree-scroll"><ul class="tree" id="tree" data-testid="tree"></ul></div>
        </div>
        <div class="card detail" id="detail" data-testid="node-detail">
          <div class="muted">Click a node in the tree, the DLQ or the parked list to see its input, context, result, attempts, errors and effects.</div>
        </div>
      </div>
      <div class="card">
        <div class="card-h">Depth histogram <span class="muted">nodes per depth</span></div>
        <svg class="chart" id="depths" data-testid="depths" role="img" aria-label="nodes per depth"></svg>
      </div>
    </section>
  </main>
</div>
<div class="flash" id="flash" data-testid="flash" role="status" aria-live="polite"></div>
<script>${PAGE_SCRIPT}</script>
</body>
</html>
`;
}
