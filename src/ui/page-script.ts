/*
 * The dashboard page's script: vanilla JavaScript, run as is by the browser (no build step). It polls the JSON
 * API every second, updates the page in place (so a click is never lost to a re-render), and posts actions.
 * Every value from the store reaches the page through textContent, never as HTML.
 *
 * Kept as a String.raw literal: no backticks and no dollar-brace inside.
 */
export const PAGE_SCRIPT = String.raw`
'use strict';
(() => {
  const POLL_MS = 1000;
  const TREE_EVERY = 3;
  const PAGE = 100;
  const STATES = ['pending', 'running', 'waiting', 'done', 'dead', 'parked'];
  const COLORS = { pending: '#64748b', running: '#2563eb', waiting: '#8b5cf6', done: '#16a34a', dead: '#dc2626', parked: '#d97706' };
  const SVG = 'http://www.w3.org/2000/svg';
  const nf = new Intl.NumberFormat('en-US');

  const ui = { runId: null, nodeId: null, runs: new Map(), tree: null, tick: 0, busy: false, again: false, last: {}, sampleMs: 1000 };
  const $ = (id) => document.getElementById(id);

  function h(tag, props, children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = String(v);
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of [].concat(children === undefined ? [] : children)) {
      if (c === null || c === undefined || c === false) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }
  function s(tag, attrs, text) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    if (text !== undefined) e.textContent = text;
    return e;
  }
  const num = (n) => (n === null || n === undefined ? '–' : nf.format(Math.round(n)));
  /** A cost in the user's units: dollars keep their cents. */
  const amount = (n) => (Number.isInteger(n) ? num(n) : String(Math.round(n * 1e4) / 1e4));
  const time = (iso) => (iso ? new Date(iso).toLocaleString() : '–');
  const runPath = (runId) => '/api/runs/' + encodeURIComponent(runId || ui.runId);
  const runHref = (runId) => '#/run/' + encodeURIComponent(runId);
  const nodeHref = (nodeId) => runHref(ui.runId) + '/node/' + nodeId;
  /** Renders only when the data changed, so a panel the user reads or selects in does not flicker. */
  function changed(panel, data) {
    const text = JSON.stringify(data);
    if (ui.last[panel] === text) return false;
    ui.last[panel] = text;
    return true;
  }

  async function api(path, body) {
    const init = body === undefined ? {} : { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) };
    let res;
    try {
      res = await fetch(path, init);
    } catch {
      throw new Error('The dashboard server cannot be reached; is rlm ui still running?');
    }
    const data = await res.json().catch(() => null);
    if (!res.ok) throw new Error((data && data.error) || 'HTTP ' + res.status);
    return data;
  }

  let flashTimer = 0;
  function flash(message, kind) {
    const box = $('flash');
    box.textContent = message;
    box.className = 'flash show' + (kind === 'error' ? ' error' : '');
    clearTimeout(flashTimer);
    flashTimer = setTimeout(() => { box.className = 'flash'; }, kind === 'error' ? 9000 : 5000);
  }

  function setStatus(error) {
    $('status').className = 'status ' + (error ? 'error' : 'ok');
    $('status-text').textContent = error ? error : 'live · ' + new Date().toLocaleTimeString();
  }

  function countsBar(counts) {
    const total = STATES.reduce((a, k) => a + (counts[k] || 0), 0);
    const bar = h('div', { class: 'bar', title: STATES.filter((k) => counts[k]).map((k) => k + ' ' + num(counts[k])).join(', ') });
    if (total > 0) for (const k of STATES) if (counts[k]) bar.append(h('i', { style: 'width:' + (100 * counts[k]) / total + '%;background:' + COLORS[k] }));
    return bar;
  }
  function countsText(counts) {
    const parts = STATES.filter((k) => counts[k]).map((k) => num(counts[k]) + ' ' + k);
    return parts.length ? parts.join(' · ') : 'empty';
  }

  // ---- routing: #/run/<id>[/node/<n>]
  function route() {
    const m = /^#\/run\/([^/]+)(?:\/node\/(\d+))?$/.exec(location.hash);
    const runId = m ? decodeURIComponent(m[1]) : null;
    const nodeId = m && m[2] ? Number(m[2]) : null;
    if (runId !== ui.runId) {
      ui.runId = runId;
      ui.tree = null;
      ui.last = {};
      $('tree').textContent = '';
      $('detail').replaceChildren(h('div', { class: 'muted', text: 'Loading…' }));
    }
    ui.nodeId = nodeId;
    ui.last.detail = null;
    for (const [id, item] of ui.runs) item.el.classList.toggle('selected', id === ui.runId);
    markCurrent();
    refresh();
  }

  // ---- the runs list
  function renderRuns(overview) {
    $('store').textContent = overview.store;
    ui.sampleMs = overview.sampleMs;
    const nav = $('runs');
    const seen = new Set();
    overview.runs.forEach((run, i) => {
      seen.add(run.id);
      let item = ui.runs.get(run.id);
      if (!item) {
        item = { el: h('a', { class: 'run-link', href: runHref(run.id), 'data-testid': 'run-row', 'data-run': run.id }) };
        ui.runs.set(run.id, item);
      }
      if (nav.children[i] !== item.el) nav.insertBefore(item.el, nav.children[i] || null);
      item.el.classList.toggle('selected', run.id === ui.runId);
      if (!changed('run-row:' + run.id, run)) return;
      const rate = run.state === 'running' && run.rate !== null ? ' · ' + num(run.rate) + '/s' : '';
      item.el.replaceChildren(
        h('div', { class: 'l1' }, [h('span', { class: 'rid', text: run.id, title: run.id }), h('span', { class: 'pill ' + run.state, text: run.state })]),
        h('div', { class: 'l2', text: run.task + ' v' + run.taskVersion + ' · ' + num(run.counts.done) + ' done' + (run.counts.dead ? ' · ' + num(run.counts.dead) + ' dead' : '') + (run.counts.parked ? ' · ' + num(run.counts.parked) + ' parked' : '') + rate }),
        countsBar(run.counts),
      );
    });
    for (const [id, item] of ui.runs) {
      if (!seen.has(id)) {
        item.el.remove();
        ui.runs.delete(id);
      }
    }
    $('no-runs').hidden = overview.runs.length > 0;
  }

  // ---- one run
  function renderRun(data) {
    const run = data.run;
    $('run-view').hidden = false;
    $('run-error').hidden = true;
    $('empty').hidden = true;
    $('run-title').textContent = run.id;
    $('run-sub').textContent = run.task + ' v' + run.taskVersion + ' · ' + run.order + ' · started ' + time(run.createdAt) + (run.finishedAt ? ' · finished ' + time(run.finishedAt) : '') + (run.nodeBudget ? ' · budget ' + num(run.nodeBudget) + ' nodes' : '') + (run.state === 'completed' && run.result !== null ? ' · result ' + JSON.stringify(run.result).slice(0, 200) : '');
    $('run-state').textContent = run.state;
    $('run-state').className = 'pill ' + run.state;
    $('pause').hidden = run.state !== 'running';
    $('resume').hidden = run.state !== 'paused';
    $('pause-reason').hidden = !run.pauseReason;
    $('pause-reason').textContent = run.pauseReason ? 'Paused: ' + run.pauseReason : '';
    if (changed('tiles', [run.counts, run.nodes, run.rate, run.averageRate])) {
      const tiles = STATES.map((k) => h('div', { class: 'tile', style: 'border-left-color:' + COLORS[k], 'data-testid': 'count-' + k }, [h('div', { class: 'n', text: num(run.counts[k]) }), h('div', { class: 'label', text: k })]));
      tiles.push(h('div', { class: 'tile', 'data-testid': 'count-nodes' }, [h('div', { class: 'n', text: num(run.nodes) }), h('div', { class: 'label', text: 'nodes' })]));
      tiles.push(h('div', { class: 'tile', 'data-testid': 'count-rate' }, [h('div', { class: 'n', text: run.rate === null ? '–' : num(run.rate) }), h('div', { class: 'label', text: 'nodes/s now (' + num(run.averageRate) + ' avg)' })]));
      $('tiles').replaceChildren(...tiles);
      fitNumbers();
    }
    if (changed('progress', [run.state, run.counts, run.estimate, run.percent, run.etaSeconds, run.frontier, run.frontierTrend, run.rate, run.costSpent, run.costBudget])) renderProgress(run);
    $('rate-now').textContent = run.rate === null ? '–' : num(run.rate) + '/s';
    $('frontier-now').textContent = num(run.frontier);
    lineChart($('chart-rate'), data.series.map((p) => ({ t: p.t, v: p.rate })), COLORS.running, '/s');
    lineChart($('chart-frontier'), data.series.map((p) => ({ t: p.t, v: p.frontier })), COLORS.waiting, '');
    if (data.depthHistogram !== null && changed('depths', data.depthHistogram)) histogram($('depths'), data.depthHistogram);
    if (changed('dlq', data.dlq)) renderDlq(data.dlq);
    if (changed('parked', data.parked)) renderParked(data.parked);
  }

  /** Shrinks a card's number until it fits its card (10,000,000 in the narrowest tile). */
  function fitNumbers() {
    for (const el of document.querySelectorAll('.tile .n')) {
      el.style.fontSize = '';
      let px = parseFloat(getComputedStyle(el).fontSize);
      while (el.scrollWidth > el.clientWidth && px > 10) {
        px -= 1;
        el.style.fontSize = px + 'px';
      }
    }
  }

  function duration(seconds) {
    const t = Math.max(0, Math.round(seconds));
    const pad = (n) => String(n).padStart(2, '0');
    if (t < 60) return t + 's';
    if (t < 3600) return Math.floor(t / 60) + 'm ' + pad(t % 60) + 's';
    if (t < 86400) return Math.floor(t / 3600) + 'h ' + pad(Math.floor((t % 3600) / 60)) + 'm';
    return Math.floor(t / 86400) + 'd ' + pad(Math.floor((t % 86400) / 3600)) + 'h';
  }

  /** A percentage and an ETA when the task declares its size; otherwise only what is known and moving. */
  function renderProgress(run) {
    const box = $('progress');
    const finished = run.counts.done + run.counts.dead;
    const trend = run.frontierTrend ? ' (' + run.frontierTrend + ')' : '';
    const cost = run.costBudget !== null || run.costSpent ? 'cost ' + amount(run.costSpent) + (run.costBudget !== null ? ' of ' + amount(run.costBudget) : '') : null;
    const facts = [num(finished) + ' finished', 'frontier ' + num(run.frontier) + trend, run.counts.dead ? num(run.counts.dead) + ' in the DLQ' : null, cost];
    const parts = [];
    if (run.percent !== null) {
      parts.push(h('div', { class: 'progress-bar' }, h('i', { style: 'width:' + run.percent + '%' })));
      const eta = run.pastEstimate ? 'past the estimate' : run.etaSeconds !== null ? 'ETA ' + duration(run.etaSeconds) : run.state === 'running' ? 'ETA –' : null;
      parts.push(h('div', { class: 'progress-text' }, [h('b', { 'data-testid': 'percent', text: run.percent.toFixed(1) + '%' }), ' of ' + num(run.estimate) + ' nodes (the task’s estimate)' + (eta ? ' · ' + eta : ''), ' · ' + facts.filter(Boolean).join(' · ')]));
    } else {
      parts.push(h('div', { class: 'progress-text' }, [h('b', { text: 'Size unknown' }), ' (the task declares no estimate) · ' + facts.filter(Boolean).join(' · ')]));
    }
    box.replaceChildren(...parts);
  }

  /** A big run's histogram is a scan of all its nodes: asked for apart, once at a time, after the tree has opened. */
  let depthsBusy = false;
  function wantDepths(runId) {
    if (depthsBusy) return;
    depthsBusy = true;
    if (!ui.last.depths) histogram($('depths'), null);
    setTimeout(async () => {
      try {
        const rows = await api(runPath(runId) + '/depths');
        if (runId === ui.runId && changed('depths', rows)) histogram($('depths'), rows);
      } catch {
        // The next refresh asks again.
      } finally {
        depthsBusy = false;
      }
    }, 0);
  }

  function niceMax(m) {
    if (m <= 0) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(m)));
    for (const f of [1, 2, 5, 10]) if (f * p >= m) return f * p;
    return 10 * p;
  }
  const axis = (v) => (v > 0 && v < 10 && v % 1 !== 0 ? v.toFixed(1) : num(v));
  /** The width the chart's labels need on its left, measured in the page's font (estimated while hidden). */
  function labelsWidth(svg, labels) {
    let widest = 0;
    for (const label of labels) {
      const probe = s('text', { x: 0, y: -100 }, label);
      svg.append(probe);
      const w = probe.getComputedTextLength() || label.length * 7;
      probe.remove();
      widest = Math.max(widest, w);
    }
    return Math.ceil(widest) + 12;
  }

  function size(svg) {
    const w = Math.max(200, Math.round(svg.clientWidth || 600));
    const hgt = Math.max(100, Math.round(svg.clientHeight || 160));
    svg.setAttribute('viewBox', '0 0 ' + w + ' ' + hgt);
    svg.replaceChildren();
    return [w, hgt];
  }

  function lineChart(svg, points, color, unit) {
    const [W, H] = size(svg);
    const R = 10, T = 10, B = 20;
    const values = points.filter((p) => p.v !== null);
    const tMax = points.length ? points[points.length - 1].t : Date.now();
    const tMin = Math.min(points.length ? points[0].t : tMax, tMax - 60000);
    const max = niceMax(Math.max(0, ...values.map((p) => p.v)));
    const L = labelsWidth(svg, [0, 0.5, 1].map((f) => axis(max * f) + unit));
    const x = (t) => L + ((t - tMin) / Math.max(1, tMax - tMin)) * (W - L - R);
    const y = (v) => T + (1 - v / max) * (H - T - B);
    for (const f of [0, 0.5, 1]) {
      svg.append(s('line', { class: 'grid', x1: L, x2: W - R, y1: y(max * f), y2: y(max * f) }));
      svg.append(s('text', { x: L - 6, y: y(max * f) + 4, 'text-anchor': 'end' }, axis(max * f) + unit));
    }
    svg.append(s('text', { x: L, y: H - 4 }, '-' + Math.round((tMax - tMin) / 1000) + ' s'));
    svg.append(s('text', { x: W - R, y: H - 4, 'text-anchor': 'end' }, 'now'));
    if (values.length === 0) {
      svg.append(s('text', { x: (L + W) / 2, y: H / 2, 'text-anchor': 'middle' }, 'waiting for samples…'));
      return;
    }
    let line = '';
    let area = '';
    let run = [];
    const flush = () => {
      if (run.length === 0) return;
      line += run.map((p, i) => (i ? 'L' : 'M') + x(p.t).toFixed(1) + ' ' + y(p.v).toFixed(1)).join(' ') + ' ';
      area += 'M' + x(run[0].t).toFixed(1) + ' ' + y(0) + ' ' + run.map((p) => 'L' + x(p.t).toFixed(1) + ' ' + y(p.v).toFixed(1)).join(' ') + ' L' + x(run[run.length - 1].t).toFixed(1) + ' ' + y(0) + ' Z ';
      run = [];
    };
    for (const p of points) {
      if (p.v === null) flush();
      else run.push(p);
    }
    flush();
    svg.append(s('path', { d: area, fill: color, 'fill-opacity': 0.12, stroke: 'none' }));
    svg.append(s('path', { d: line, fill: 'none', stroke: color, 'stroke-width': 2, 'stroke-linejoin': 'round', 'data-testid': 'series' }));
    const lastPoint = values[values.length - 1];
    svg.append(s('circle', { cx: x(lastPoint.t), cy: y(lastPoint.v), r: 3, fill: color }));
  }

  function histogram(svg, rows) {
    const [W, H] = size(svg);
    const R = 10, T = 10, B = 20;
    let L = 40;
    if (rows === null) {
      svg.append(s('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle' }, 'counting nodes per depth…'));
      return;
    }
    if (rows.length === 0) {
      svg.append(s('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle' }, 'no nodes'));
      return;
    }
    // A deep run gets its depths grouped into at most 60 bars.
    const maxDepth = rows[rows.length - 1].depth;
    const width = Math.max(1, Math.ceil((maxDepth + 1) / 60));
    const bars = [];
    for (const r of rows) {
      const i = Math.floor(r.depth / width);
      bars[i] = (bars[i] || 0) + r.count;
    }
    const n = Math.ceil((maxDepth + 1) / width);
    const max = niceMax(Math.max(...bars.filter(Boolean)));
    L = labelsWidth(svg, [0, 0.5, 1].map((f) => axis(max * f)));
    const slot = (W - L - R) / n;
    for (const f of [0, 0.5, 1]) {
      const yy = T + (1 - f) * (H - T - B);
      svg.append(s('line', { class: 'grid', x1: L, x2: W - R, y1: yy, y2: yy }));
      svg.append(s('text', { x: L - 6, y: yy + 4, 'text-anchor': 'end' }, axis(max * f)));
    }
    for (let i = 0; i < n; i++) {
      const count = bars[i] || 0;
      const bh = (count / max) * (H - T - B);
      const label = width === 1 ? 'depth ' + i : 'depths ' + i * width + '–' + ((i + 1) * width - 1);
      const bw = Math.max(1, Math.min(56, slot * 0.7));
      const rect = s('rect', { x: L + i * slot + (slot - bw) / 2, y: T + (H - T - B) - bh, width: bw, height: Math.max(count ? 1 : 0, bh), fill: '#60a5fa', rx: 2 });
      rect.append(s('title', {}, label + ': ' + num(count) + ' nodes'));
      svg.append(rect);
      if (n <= 30 || i % Math.ceil(n / 15) === 0) svg.append(s('text', { x: L + i * slot + slot / 2, y: H - 4, 'text-anchor': 'middle' }, String(i * width)));
    }
  }

  // ---- DLQ and parked nodes
  function nodeLink(id) {
    return h('a', { href: nodeHref(id), class: 'mono', text: '#' + id });
  }
  function renderDlq(dlq) {
    $('dlq-card').hidden = dlq.nodes.length === 0;
    $('dlq-more').hidden = !dlq.more;
    $('dlq-rows').replaceChildren(
      ...dlq.nodes.map((n) =>
        h('tr', { 'data-testid': 'dlq-row', 'data-node': n.id }, [
          h('td', {}, nodeLink(n.id)),
          h('td', { class: 'mono', text: n.key }),
          h('td', { text: n.attempts }),
          h('td', { class: 'mono', text: n.code || '' }),
          h('td', { class: 'msg', text: n.error || '', title: n.error || '' }),
          h('td', { class: 'acts' }, [
            h('button', { class: 'btn small', 'data-testid': 'retry', text: 'Retry', onclick: (e) => act(e.target, 'retry', { nodes: [n.id] }) }),
            h('button', { class: 'btn small danger', 'data-testid': 'drop', text: 'Drop', onclick: (e) => act(e.target, 'drop', { nodes: [n.id] }, 'Drop node #' + n.id + ' from the dead-letter queue for good?') }),
          ]),
        ]),
      ),
    );
  }
  function renderParked(parked) {
    $('parked-card').hidden = parked.nodes.length === 0;
    $('parked-more').hidden = !parked.more;
    $('parked-rows').replaceChildren(
      ...parked.nodes.map((n) =>
        h('tr', { 'data-testid': 'parked-row', 'data-node': n.id }, [
          h('td', {}, nodeLink(n.id)),
          h('td', { class: 'mono', text: n.key }),
          h('td', { text: n.depth }),
          h('td', { class: 'msg', text: n.reason || '', title: n.reason || '' }),
          h('td', { class: 'acts' }, [
            h('button', { class: 'btn small primary', 'data-testid': 'approve', text: 'Approve', onclick: (e) => act(e.target, 'approve', { nodes: [n.id] }) }),
            h('button', { class: 'btn small danger', 'data-testid': 'reject', text: 'Reject', onclick: (e) => act(e.target, 'reject', { nodes: [n.id] }, 'Reject node #' + n.id + '? It goes to the dead-letter queue.') }),
          ]),
        ]),
      ),
    );
  }

  async function act(button, action, body, question) {
    if (question && !window.confirm(question)) return;
    button.disabled = true;
    try {
      const out = await api(runPath() + '/' + action, body || {});
      flash(out.message, 'ok');
    } catch (error) {
      flash(error.message, 'error');
    } finally {
      button.disabled = false;
      ui.last = {};
      if (ui.tree) ui.tree.force = true;
      refresh();
    }
  }

  // ---- the tree: children load when a node is expanded; expanded nodes refresh every few seconds
  function makeItem(tree, row) {
    const twisty = h('button', { class: 'twisty', 'aria-expanded': 'false', 'aria-label': 'expand', 'data-testid': 'twisty', text: '▶' });
    const badge = h('span', { class: 'badge' });
    const key = h('a', { class: 'key', 'data-testid': 'node-key' });
    const counts = h('span', { class: 'counts' });
    const line = h('div', { class: 'line' }, [twisty, badge, key, h('span', { class: 'nid', text: '#' + row.id }), counts]);
    const kids = h('ul', { hidden: true });
    const li = h('li', { 'data-testid': 'tree-node', 'data-node': row.id }, [line, kids]);
    const item = { tree, id: row.id, li, line, twisty, badge, key, counts, kids, expanded: false, loaded: 0, children: new Map(), more: null, queued: false, counted: false };
    twisty.addEventListener('click', () => toggle(item));
    updateItem(item, row);
    return item;
  }
  function updateItem(item, row) {
    item.badge.className = 'badge s-' + row.state;
    item.badge.textContent = row.state;
    item.key.textContent = row.key;
    item.key.href = nodeHref(row.id);
    item.line.classList.toggle('current', row.id === ui.nodeId);
    if (row.subtree) {
      const total = STATES.reduce((a, k) => a + row.subtree[k], 0);
      item.twisty.classList.toggle('leaf', total <= 1);
      item.counts.replaceChildren(h('span', { text: countsText(row.subtree) }), countsBar(row.subtree));
      item.counted = true;
    } else {
      // A big subtree is counted apart, after its row is shown; until then the row says so.
      if (!item.counted) item.counts.replaceChildren(h('span', { class: 'counting', text: 'counting…' }));
      wantSubtree(item);
    }
  }
  function markCurrent() {
    for (const line of document.querySelectorAll('.tree .line.current')) line.classList.remove('current');
    if (ui.nodeId === null) return;
    for (const li of document.querySelectorAll('.tree li[data-node="' + ui.nodeId + '"]')) li.firstChild.classList.add('current');
  }

  const subtreeQueue = [];
  let subtreeBusy = false;
  function wantSubtree(item) {
    if (item.queued) return;
    item.queued = true;
    subtreeQueue.push(item);
    pumpSubtrees();
  }
  async function pumpSubtrees() {
    if (subtreeBusy) return;
    subtreeBusy = true;
    while (subtreeQueue.length) {
      const item = subtreeQueue.shift();
      item.queued = false;
      if (item.tree !== ui.tree) continue;
      try {
        updateItem(item, await api(runPath(item.tree.runId) + '/nodes/' + item.id + '/tree'));
      } catch {
        // The next refresh asks again.
      }
    }
    subtreeBusy = false;
  }

  async function initTree(rootId) {
    const tree = { runId: ui.runId, root: null, force: false };
    ui.tree = tree;
    const row = await api(runPath() + '/nodes/' + rootId + '/tree');
    if (ui.tree !== tree) return;
    tree.root = makeItem(tree, row);
    $('tree').replaceChildren(tree.root.li);
    await toggle(tree.root);
  }

  async function toggle(item) {
    item.expanded = !item.expanded;
    item.twisty.setAttribute('aria-expanded', String(item.expanded));
    item.twisty.setAttribute('aria-label', item.expanded ? 'collapse' : 'expand');
    item.kids.hidden = !item.expanded;
    if (item.expanded) await loadChildren(item, 0, Math.max(PAGE, item.loaded));
  }

  async function loadChildren(item, offset, limit) {
    let data;
    try {
      data = await api(runPath(item.tree.runId) + '/nodes/' + item.id + '/children?offset=' + offset + '&limit=' + limit);
    } catch (error) {
      item.kids.replaceChildren(h('li', { class: 'note', text: error.message }));
      return;
    }
    if (item.tree !== ui.tree) return;
    const present = new Set(data.children.map((c) => c.id));
    if (offset === 0) {
      for (const [id, child] of item.children) {
        if (!present.has(id)) {
          child.li.remove();
          item.children.delete(id);
        }
      }
      for (const note of item.kids.querySelectorAll(':scope > li.note')) note.remove();
    }
    if (item.more) item.more.remove();
    for (const row of data.children) {
      const child = item.children.get(row.id);
      if (child) updateItem(child, row);
      else {
        const created = makeItem(item.tree, row);
        item.children.set(row.id, created);
        item.kids.append(created.li);
      }
    }
    item.loaded = item.children.size;
    item.more = null;
    if (data.more) {
      item.more = h('li', { class: 'note' }, h('button', { class: 'btn small', 'data-testid': 'more-children', text: 'Show more children', onclick: () => loadChildren(item, item.loaded, PAGE) }));
      item.kids.append(item.more);
    } else if (item.loaded === 0) item.kids.append(h('li', { class: 'note', text: 'no children' }));
  }

  async function refreshTree(item) {
    if (!item || !item.expanded) return;
    await loadChildren(item, 0, Math.min(500, Math.max(PAGE, item.loaded)));
    for (const child of item.children.values()) await refreshTree(child);
  }

  // ---- node detail
  function kv(rows) {
    const dl = h('dl', { class: 'kv' });
    for (const [k, v] of rows) if (v !== null && v !== undefined && v !== '') dl.append(h('dt', { text: k }), h('dd', {}, v));
    return dl;
  }
  function json(value, testid) {
    return h('pre', { 'data-testid': testid, text: value === undefined ? 'undefined' : JSON.stringify(value, null, 2) });
  }
  function renderDetail(d) {
    const box = $('detail');
    const actions = h('div', { class: 'actions' });
    if (d.state === 'dead') {
      actions.append(h('button', { class: 'btn', 'data-testid': 'detail-retry', text: 'Retry', onclick: (e) => act(e.target, 'retry', { nodes: [d.id] }) }));
      actions.append(h('button', { class: 'btn danger', 'data-testid': 'detail-drop', text: 'Drop', onclick: (e) => act(e.target, 'drop', { nodes: [d.id] }, 'Drop node #' + d.id + ' from the dead-letter queue for good?') }));
    }
    if (d.state === 'parked') {
      actions.append(h('button', { class: 'btn primary', 'data-testid': 'detail-approve', text: 'Approve', onclick: (e) => act(e.target, 'approve', { nodes: [d.id] }) }));
      actions.append(h('button', { class: 'btn danger', 'data-testid': 'detail-reject', text: 'Reject', onclick: (e) => act(e.target, 'reject', { nodes: [d.id] }, 'Reject node #' + d.id + '? It goes to the dead-letter queue.') }));
    }
    const parts = [
      h('h3', {}, [h('span', { text: 'Node #' + d.id }), h('span', { class: 'badge s-' + d.state, text: d.state })]),
      h('div', { class: 'mono', text: d.key }),
      actions.children.length ? actions : null,
      kv([
        ['parent', d.parentId ? nodeLink(d.parentId) : 'none (the root)'],
        ['depth', String(d.depth)],
        ['phase', d.phase],
        ['attempts', String(d.attempts)],
        ['epoch', String(d.epoch)],
        ['owner', d.owner],
        ['priority', String(d.priority)],
        ['task version', String(d.version)],
        ['children pending', d.pendingChildren ? String(d.pendingChildren) : null],
        ['park reason', d.parkReason],
        ['subtree', countsText(d.subtree)],
        ['created', time(d.createdAt)],
        ['updated', time(d.updatedAt)],
        ['trace', d.traceparent],
      ]),
      h('h4', { text: 'Input' }),
      json(d.input, 'detail-input'),
      d.context !== null ? h('h4', { text: 'Context' }) : null,
      d.context !== null ? json(d.context, 'detail-context') : null,
      h('h4', { text: 'Result' }),
      d.result === null && d.state !== 'done' ? h('div', { class: 'muted', text: 'none yet' }) : json(d.result, 'detail-result'),
      h('h4', { text: 'Errors (' + d.errors.length + ')' }),
      d.errors.length === 0
        ? h('div', { class: 'muted', text: 'none' })
        : h('div', { 'data-testid': 'detail-errors' }, d.errors.map((e) =>
            h('div', { class: 'error-entry' }, [
              h('div', { class: 'muted' }, [h('b', { text: 'attempt ' + e.attempt }), ' · ', h('span', { class: 'mono', text: e.code || 'no code' }), ' · ' + time(e.at) + ' · ', h('span', { class: 'mono', text: e.worker })]),
              h('div', { class: 'error-message', text: e.message }),
              e.stack ? h('details', {}, [h('summary', { text: 'stack' }), h('pre', { text: e.stack })]) : null,
            ]),
          )),
      h('h4', { text: 'Effects (' + d.effects.length + ')' }),
      d.effects.length === 0
        ? h('div', { class: 'muted', text: 'none' })
        : h('table', { 'data-testid': 'detail-effects' }, [
            h('thead', {}, h('tr', {}, ['name', 'value', 'at'].map((c) => h('th', { text: c })))),
            h('tbody', {}, d.effects.map((e) => h('tr', {}, [h('td', { class: 'mono', text: e.name }), h('td', {}, json(e.value)), h('td', { text: time(e.at) })]))),
          ]),
    ];
    box.replaceChildren(...parts.filter(Boolean));
  }

  // ---- the poll loop
  async function refresh() {
    if (ui.busy) {
      ui.again = true;
      return;
    }
    ui.busy = true;
    try {
      renderRuns(await api('/api/runs'));
      setStatus(null);
    } catch (error) {
      setStatus(error.message);
    }
    try {
      if (ui.runId) await refreshRun();
      else {
        $('run-view').hidden = true;
        $('run-error').hidden = true;
        $('empty').hidden = false;
      }
    } finally {
      ui.busy = false;
      ui.tick++;
      if (ui.again) {
        ui.again = false;
        refresh();
      }
    }
  }

  async function refreshRun() {
    const runId = ui.runId;
    let data;
    try {
      data = await api(runPath(runId));
    } catch (error) {
      if (runId !== ui.runId) return;
      $('run-view').hidden = true;
      $('empty').hidden = true;
      $('run-error').hidden = false;
      $('run-error').textContent = error.message;
      return;
    }
    if (runId !== ui.runId) return;
    renderRun(data);
    if (!ui.tree) await initTree(data.run.rootId).catch((error) => $('tree').replaceChildren(h('li', { class: 'note', text: error.message })));
    else if (ui.tree.root && (ui.tree.force || ui.tick % TREE_EVERY === 0)) {
      ui.tree.force = false;
      await refreshTree(ui.tree.root);
    }
    if (data.depthHistogram === null && runId === ui.runId) wantDepths(runId);
    markCurrent();
    if (ui.nodeId === null) {
      if (changed('detail', null)) $('detail').replaceChildren(h('div', { class: 'muted', text: 'Click a node in the tree, the DLQ or the parked list to see its input, context, result, attempts, errors and effects.' }));
      return;
    }
    const nodeId = ui.nodeId;
    try {
      const detail = await api(runPath(runId) + '/nodes/' + nodeId);
      if (nodeId === ui.nodeId && runId === ui.runId && changed('detail', detail)) renderDetail(detail);
    } catch (error) {
      if (changed('detail', error.message)) $('detail').replaceChildren(h('div', { class: 'muted', text: error.message }));
    }
  }

  $('pause').addEventListener('click', (e) => act(e.currentTarget, 'pause'));
  $('resume').addEventListener('click', (e) => act(e.currentTarget, 'resume'));
  $('retry-all').addEventListener('click', (e) => act(e.currentTarget, 'retry', { all: true }, 'Send every dead node of this run back to the frontier?'));
  $('drop-all').addEventListener('click', (e) => act(e.currentTarget, 'drop', { all: true }, 'Drop every dead node of this run from the queue for good?'));
  $('approve-all').addEventListener('click', (e) => act(e.currentTarget, 'approve', { all: true }, 'Approve every parked node of this run?'));
  $('reject-all').addEventListener('click', (e) => act(e.currentTarget, 'reject', { all: true }, 'Reject every parked node of this run into the dead-letter queue?'));
  window.addEventListener('hashchange', route);
  window.addEventListener('resize', () => {
    ui.last.depths = null;
    fitNumbers();
  });

  function loop() {
    if (!document.hidden) refresh();
    setTimeout(loop, POLL_MS);
  }
  route();
  setTimeout(loop, POLL_MS);
})();
`;
