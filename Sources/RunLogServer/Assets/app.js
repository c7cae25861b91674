// RunLog web UI: vanilla JavaScript over the JSON read API, charts drawn as SVG.
// No build step: this file is served as is.
'use strict';

const ctx = {
  page: document.body.dataset.page,
  entity: document.body.dataset.entity,
  project: document.body.dataset.project,
  run: document.body.dataset.run,
};
const enc = encodeURIComponent;
const app = document.getElementById('app');
const tooltip = document.getElementById('tooltip');
const SVGNS = 'http://www.w3.org/2000/svg';
const COLORS = ['#2f6fde', '#e8590c', '#2b8a3e', '#c2255c', '#7048e8', '#0c8599', '#e67700', '#495057'];

// ---------- helpers ----------

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'text') e.textContent = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function svg(tag, attrs) {
  const e = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  return e;
}

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(path) {
  const r = await fetch(path, { credentials: 'same-origin', headers: { Accept: 'application/json' } });
  if (!r.ok) {
    let message = r.statusText;
    try { message = (await r.json()).error || message; } catch (_) { /* not JSON */ }
    throw new ApiError(r.status, message);
  }
  return r.json();
}

// JSON carries non-finite numbers as strings.
function num(v) {
  if (typeof v === 'number') return v;
  if (v === 'NaN') return NaN;
  if (v === 'Infinity') return Infinity;
  if (v === '-Infinity') return -Infinity;
  return null;
}

function fmt(v) {
  const n = num(v);
  if (n === null) {
    if (v === null || v === undefined) return '';
    if (typeof v === 'object') return JSON.stringify(v);
    return String(v);
  }
  if (!Number.isFinite(n)) return String(n);
  if (Number.isInteger(n) && Math.abs(n) < 1e15) return String(n);
  const a = Math.abs(n);
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) return n.toExponential(3);
  return String(Number(n.toPrecision(5)));
}

function fmtTime(us) {
  if (!us) return '';
  return new Date(us / 1000).toISOString().replace('T', ' ').slice(0, 19);
}

function flatten(obj, prefix = '', out = {}) {
  for (const [k, v] of Object.entries(obj || {})) {
    const key = prefix ? prefix + '.' + k : k;
    if (v && typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length) flatten(v, key, out);
    else out[key] = v;
  }
  return out;
}

function stateBadge(s) { return el('span', { class: 'state ' + s, text: s }); }
function tags(list) { return (list || []).map((t) => el('span', { class: 'tag', text: t })); }
function runURL(entity, project, id) { return `/ui/${enc(entity)}/${enc(project)}/${enc(id)}`; }

function showError(e) {
  app.replaceChildren(el('p', { class: 'error', text: e.message || String(e) }));
  if (e.status === 401 || e.status === 403) app.append(el('p', {}, el('a', { href: '/login', text: 'Sign in with an API key' })));
}

function crumbs(...parts) {
  const nav = document.getElementById('crumbs');
  nav.replaceChildren();
  parts.forEach((p, i) => {
    if (i > 0) nav.append(' / ');
    nav.append(p.href ? el('a', { href: p.href, text: p.text }) : p.text);
  });
}

function kvTable(obj) {
  const flat = flatten(obj);
  const keys = Object.keys(flat).sort();
  if (!keys.length) return el('p', { class: 'muted', text: 'none' });
  return el('table', { class: 'grid kv' }, keys.map((k) => el('tr', {}, el('td', { text: k }), el('td', { class: num(flat[k]) !== null ? 'num' : '', text: fmt(flat[k]) }))));
}

// ---------- charts ----------

function niceTicks(lo, hi, count) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) || 10 * mag;
  const out = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) out.push(Number(t.toPrecision(12)));
  return out;
}

function nearestIndex(steps, step) {
  let lo = 0, hi = steps.length - 1;
  if (hi < 0) return -1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (steps[mid] < step) lo = mid + 1; else hi = mid;
  }
  if (lo > 0 && Math.abs(steps[lo - 1] - step) <= Math.abs(steps[lo] - step)) return lo - 1;
  return lo;
}

// Draws series [{label, color, steps, values, min, max, sampled, count}] into `box`.
// opts: {metric, onZoom(lo, hi), onReset()}: drag to zoom, double-click to reset.
function drawChart(box, seriesList, opts) {
  box.querySelectorAll('svg, .legend').forEach((n) => n.remove());
  const W = Math.max(box.clientWidth - 20, 320), H = 240;
  const m = { l: 58, r: 12, t: 8, b: 24 };
  const root = svg('svg', { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'none', class: 'chart-svg', 'data-metric': opts.metric });
  root.style.height = H + 'px';
  let xlo = Infinity, xhi = -Infinity, ylo = Infinity, yhi = -Infinity, drawn = 0;
  for (const s of seriesList) {
    s.vals = s.values.map(num);
    s.mins = (s.min || s.values).map(num);
    s.maxs = (s.max || s.values).map(num);
    s.steps.forEach((st, i) => {
      xlo = Math.min(xlo, st); xhi = Math.max(xhi, st);
      if (Number.isFinite(s.mins[i])) ylo = Math.min(ylo, s.mins[i]);
      if (Number.isFinite(s.maxs[i])) yhi = Math.max(yhi, s.maxs[i]);
    });
  }
  if (!Number.isFinite(xlo)) {
    root.setAttribute('data-points', '0');
    box.append(root, el('p', { class: 'muted legend', text: 'no points' }));
    return;
  }
  if (xhi === xlo) { xlo -= 1; xhi += 1; }
  if (!Number.isFinite(ylo)) { ylo = 0; yhi = 1; }
  if (yhi === ylo) { ylo -= Math.abs(ylo) * 0.1 || 1; yhi += Math.abs(yhi) * 0.1 || 1; }
  const pad = (yhi - ylo) * 0.05; ylo -= pad; yhi += pad;
  const X = (st) => m.l + ((st - xlo) / (xhi - xlo)) * (W - m.l - m.r);
  const Y = (v) => m.t + (1 - (v - ylo) / (yhi - ylo)) * (H - m.t - m.b);
  const fromX = (px) => xlo + ((px - m.l) / (W - m.l - m.r)) * (xhi - xlo);

  const axis = svg('g', { class: 'axis' });
  for (const t of niceTicks(ylo, yhi, 5)) {
    axis.append(svg('line', { class: 'gridline', x1: m.l, x2: W - m.r, y1: Y(t), y2: Y(t) }));
    const label = svg('text', { x: m.l - 6, y: Y(t) + 3, 'text-anchor': 'end' });
    label.textContent = fmt(t);
    axis.append(label);
  }
  for (const t of niceTicks(xlo, xhi, 6)) {
    if (t < xlo || t > xhi) continue;
    const label = svg('text', { x: X(t), y: H - 6, 'text-anchor': 'middle' });
    label.textContent = fmt(t);
    axis.append(label);
  }
  axis.append(svg('line', { x1: m.l, x2: W - m.r, y1: H - m.b, y2: H - m.b }));
  root.append(axis);

  for (const s of seriesList) {
    const pts = [];
    const band = [];
    s.steps.forEach((st, i) => {
      if (Number.isFinite(s.vals[i])) pts.push(`${X(st).toFixed(2)},${Y(s.vals[i]).toFixed(2)}`);
    });
    if (s.sampled) {
      s.steps.forEach((st, i) => { if (Number.isFinite(s.maxs[i])) band.push(`${X(st).toFixed(2)},${Y(s.maxs[i]).toFixed(2)}`); });
      for (let i = s.steps.length - 1; i >= 0; i--) if (Number.isFinite(s.mins[i])) band.push(`${X(s.steps[i]).toFixed(2)},${Y(s.mins[i]).toFixed(2)}`);
      root.append(svg('polygon', { class: 'band', points: band.join(' '), fill: s.color, 'fill-opacity': '0.18' }));
    }
    root.append(svg('polyline', {
      class: 'line', points: pts.join(' '), stroke: s.color, 'data-points': String(pts.length),
      'data-series': s.label, 'data-count': String(s.count ?? pts.length),
    }));
    if (pts.length <= 60) {
      for (const p of pts) {
        const [cx, cy] = p.split(',');
        root.append(svg('circle', { cx, cy, r: 2.2, fill: s.color }));
      }
    }
    drawn += pts.length;
  }
  root.setAttribute('data-points', String(drawn));

  const cursor = svg('line', { class: 'cursor', y1: m.t, y2: H - m.b, visibility: 'hidden' });
  const selection = svg('rect', { class: 'selection', y: m.t, height: H - m.t - m.b, width: 0, visibility: 'hidden' });
  const overlay = svg('rect', { x: m.l, y: m.t, width: W - m.l - m.r, height: H - m.t - m.b, fill: 'transparent' });
  root.append(cursor, selection, overlay);

  const localX = (ev) => {
    const r = root.getBoundingClientRect();
    return ((ev.clientX - r.left) / r.width) * W;
  };
  let dragFrom = null;
  overlay.addEventListener('mousemove', (ev) => {
    const x = Math.min(Math.max(localX(ev), m.l), W - m.r);
    cursor.setAttribute('x1', x); cursor.setAttribute('x2', x); cursor.setAttribute('visibility', 'visible');
    if (dragFrom !== null) {
      selection.setAttribute('x', Math.min(dragFrom, x));
      selection.setAttribute('width', Math.abs(x - dragFrom));
      selection.setAttribute('visibility', 'visible');
    }
    const step = fromX(x);
    const lines = [];
    let shownStep = null;
    for (const s of seriesList) {
      const i = nearestIndex(s.steps, step);
      if (i < 0) continue;
      if (shownStep === null) shownStep = s.steps[i];
      let text = `${seriesList.length > 1 ? s.label + ': ' : ''}${fmt(s.values[i])}`;
      if (s.sampled && s.min) text += `  (min ${fmt(s.min[i])}, max ${fmt(s.max[i])})`;
      lines.push([s.color, text]);
    }
    tooltip.replaceChildren(el('div', { text: `step ${shownStep}` }), ...lines.map(([c, t]) => el('div', {}, el('i', { style: `display:inline-block;width:8px;height:8px;background:${c};margin-right:5px` }), t)));
    tooltip.hidden = false;
    tooltip.style.left = ev.pageX + 14 + 'px';
    tooltip.style.top = ev.pageY + 10 + 'px';
  });
  overlay.addEventListener('mouseleave', () => { cursor.setAttribute('visibility', 'hidden'); tooltip.hidden = true; });
  overlay.addEventListener('mousedown', (ev) => { dragFrom = localX(ev); ev.preventDefault(); });
  overlay.addEventListener('mouseup', (ev) => {
    const from = dragFrom;
    dragFrom = null;
    selection.setAttribute('visibility', 'hidden');
    if (from === null) return;
    const to = localX(ev);
    if (Math.abs(to - from) < 5 || !opts.onZoom) return;
    const a = Math.floor(fromX(Math.min(from, to))), b = Math.ceil(fromX(Math.max(from, to)));
    opts.onZoom(a, b);
  });
  overlay.addEventListener('dblclick', () => { if (opts.onReset) opts.onReset(); });
  box.append(root);
  if (seriesList.length > 1) {
    box.append(el('div', { class: 'legend' }, seriesList.map((s) => el('span', {}, el('i', { style: `background:${s.color}` }), s.label))));
  }
}

// A chart box that loads its series through `load(range)` and zooms by reloading a step range
// (so zooming in shows the stored points, not a stretched downsample).
function chartBox(title, metric, load) {
  const box = el('div', { class: 'chart', 'data-metric': metric }, el('h3', { text: title }), el('span', { class: 'hint', text: 'drag to zoom · double-click to reset' }));
  let range = null;
  const render = async () => {
    try {
      const series = await load(range);
      drawChart(box, series, {
        metric,
        onZoom: (lo, hi) => { range = [lo, hi]; render(); },
        onReset: () => { range = null; render(); },
      });
      box.dataset.range = range ? range.join('-') : '';
    } catch (e) {
      box.append(el('p', { class: 'error', text: e.message }));
    }
  };
  box.render = render;
  return box;
}

function historyURL(entity, project, run, metrics, range, points) {
  let url = `/api/v1/runs/${enc(entity)}/${enc(project)}/${enc(run)}/history?metrics=${metrics.map(enc).join(',')}&points=${points}`;
  if (range) url += `&min_step=${range[0]}&max_step=${range[1]}`;
  return url;
}

// ---------- pages ----------

async function homePage() {
  crumbs();
  const entities = await api('/api/v1/entities');
  app.replaceChildren(el('h1', { text: 'Projects' }));
  if (!entities.length) app.append(el('p', { class: 'muted', text: 'No entities yet.' }));
  for (const e of entities) {
    const projects = await api(`/api/v1/entities/${enc(e.name)}/projects`);
    app.append(el('h2', {}, e.name, ' ', el('span', { class: 'muted', text: `(${e.kind})` })));
    if (!projects.length) { app.append(el('p', { class: 'muted', text: 'no projects' })); continue; }
    app.append(el('table', { class: 'grid' },
      el('tr', {}, el('th', { text: 'project' }), el('th', { text: 'runs' })),
      projects.map((p) => el('tr', {}, el('td', {}, el('a', { href: `/ui/${enc(e.name)}/${enc(p.name)}`, text: p.name })), el('td', { class: 'num', text: p.runs })))));
  }
}

async function projectPage() {
  crumbs({ text: ctx.entity }, { text: ctx.project });
  document.title = `${ctx.project} · RunLog`;
  const params = new URLSearchParams(location.search);
  const q = new URLSearchParams();
  for (const k of ['tag', 'group', 'state']) if (params.get(k)) q.set(k, params.get(k));
  const runs = await api(`/api/v1/projects/${enc(ctx.entity)}/${enc(ctx.project)}/runs?${q}`);
  const summaryKeys = [...new Set(runs.flatMap((r) => Object.keys(r.summary).filter((k) => !k.startsWith('_') && num(r.summary[k]) !== null)))].sort().slice(0, 12);
  const columns = [
    { label: 'name', key: (r) => r.name, cell: (r) => el('a', { href: runURL(ctx.entity, ctx.project, r.id), text: r.name }) },
    { label: 'state', key: (r) => r.state, cell: (r) => stateBadge(r.state) },
    { label: 'group', key: (r) => r.group || '', cell: (r) => r.group || '' },
    { label: 'tags', key: (r) => (r.tags || []).join(','), cell: (r) => tags(r.tags) },
    { label: 'step', key: (r) => r.last_step, cell: (r) => r.last_step ?? '', num: true },
    { label: 'created', key: (r) => r.created, cell: (r) => fmtTime(r.created) },
    ...summaryKeys.map((k) => ({ label: k, key: (r) => num(r.summary[k]), cell: (r) => fmt(r.summary[k]), num: true, summary: k })),
  ];
  let sort = { index: params.get('sort') ? columns.findIndex((c) => c.summary === params.get('sort')) : 5, desc: params.get('order') !== 'asc' };
  if (sort.index < 0) sort.index = 5;

  const table = el('table', { class: 'grid runs' });
  const selected = new Set();
  const renderTable = () => {
    const sorted = runs.slice().sort((a, b) => {
      const x = columns[sort.index].key(a), y = columns[sort.index].key(b);
      const missX = x === null || x === undefined || Number.isNaN(x), missY = y === null || y === undefined || Number.isNaN(y);
      if (missX !== missY) return missX ? 1 : -1;
      if (missX) return 0;
      const c = x < y ? -1 : x > y ? 1 : 0;
      return sort.desc ? -c : c;
    });
    table.replaceChildren(
      el('tr', {}, el('th', {}), columns.map((c, i) => el('th', {
        class: 'sortable' + (i === sort.index ? (sort.desc ? ' sorted-desc' : ' sorted-asc') : ''), 'data-column': c.label, text: c.label,
        onclick: () => { sort = { index: i, desc: sort.index === i ? !sort.desc : !!c.num }; renderTable(); },
      }))),
      ...sorted.map((r) => el('tr', { 'data-run': r.id },
        el('td', {}, el('input', { type: 'checkbox', checked: selected.has(r.id), onchange: (ev) => { if (ev.target.checked) selected.add(r.id); else selected.delete(r.id); } })),
        columns.map((c) => el('td', { class: c.num ? 'num' : '' }, c.cell(r))))));
  };
  renderTable();

  const filters = el('form', { class: 'filters', method: 'get' },
    el('input', { name: 'tag', placeholder: 'tag', value: params.get('tag') || '' }),
    el('input', { name: 'group', placeholder: 'group', value: params.get('group') || '' }),
    el('select', { name: 'state' }, ['', 'running', 'finished', 'failed', 'crashed', 'killed'].map((s) => el('option', { value: s, selected: params.get('state') === s, text: s || 'any state' }))),
    el('button', { type: 'submit', text: 'Filter' }));
  const metricNames = summaryKeys.length ? summaryKeys : ['loss'];
  const metricSelect = el('select', {}, metricNames.map((k) => el('option', { value: k, text: k })));
  const compare = el('div', { class: 'filters' }, 'Compare the checked runs on ', metricSelect, ' ',
    el('button', { class: 'secondary', type: 'button', text: 'Compare', onclick: () => {
      const ids = [...selected];
      if (!ids.length) return;
      location.href = `/ui/${enc(ctx.entity)}/${enc(ctx.project)}/compare?runs=${ids.map(enc).join(',')}&metric=${enc(metricSelect.value)}`;
    } }));
  app.replaceChildren(el('h1', { text: ctx.project }), filters, el('p', { class: 'muted', text: `${runs.length} run${runs.length === 1 ? '' : 's'}` }), table, compare);
}

async function runPage() {
  crumbs({ text: ctx.entity }, { href: `/ui/${enc(ctx.entity)}/${enc(ctx.project)}`, text: ctx.project }, { text: ctx.run });
  const r = await api(`/api/v1/runs/${enc(ctx.entity)}/${enc(ctx.project)}/${enc(ctx.run)}`);
  document.title = `${r.name} · RunLog`;
  const header = el('div', {},
    el('h1', {}, r.name, ' ', stateBadge(r.state)),
    el('p', { class: 'muted' }, `id ${r.id}`, r.group ? ` · group ${r.group}` : '', r.job_type ? ` · job type ${r.job_type}` : '',
      ` · ${r.history_rows} rows · last step ${r.last_step ?? '–'} · started ${fmtTime(r.metadata.start_time || r.created)}`),
    el('div', {}, tags(r.tags)),
    r.notes ? el('p', { text: r.notes }) : null);
  const lineage = el('div', { class: 'lineage', id: 'lineage' });
  if (r.fork) lineage.append(el('div', {}, 'Forked from ', el('a', { href: runURL(ctx.entity, r.fork.project, r.fork.source), text: r.fork.source }), ` at step ${r.fork.step}`));
  for (const c of r.forks) lineage.append(el('div', {}, 'Fork ', el('a', { href: runURL(ctx.entity, c.project, c.id), text: c.id }), ` from step ${c.step}`));
  for (const w of r.rewinds) lineage.append(el('div', { class: 'muted' }, `Rewound to step ${w.step} (points after it archived as branch ${w.branch})`));
  if (!lineage.childNodes.length) lineage.append(el('span', { class: 'muted', text: 'No forks or rewinds.' }));

  const metrics = r.metrics.map((m) => m.name).filter((n) => !n.startsWith('_'));
  const charts = el('div', { class: 'charts' });
  const boxes = metrics.map((name) => chartBox(name, name, async (range) => {
    const h = await api(historyURL(ctx.entity, ctx.project, ctx.run, [name], range, 1000));
    const s = h.metrics[name];
    return [{ label: name, color: COLORS[0], steps: s.steps, values: s.values, min: s.min, max: s.max, sampled: s.sampled, count: s.count }];
  }));
  charts.append(...boxes);

  const files = r.files.length
    ? el('table', { class: 'grid' }, el('tr', {}, el('th', { text: 'path' }), el('th', { text: 'size' }), el('th', { text: 'policy' })),
      r.files.map((f) => el('tr', {}, el('td', { text: f.path }), el('td', { class: 'num', text: f.size }), el('td', { text: f.policy }))))
    : el('p', { class: 'muted', text: 'none' });
  app.replaceChildren(header, el('h2', { text: 'Lineage' }), lineage, el('h2', { text: 'Charts' }),
    metrics.length ? charts : el('p', { class: 'muted', text: 'No history yet.' }),
    el('div', { class: 'row' }, el('div', {}, el('h2', { text: 'Config' }), kvTable(r.config)), el('div', {}, el('h2', { text: 'Summary' }), kvTable(r.summary))),
    el('h2', { text: 'Files' }), files);
  await Promise.all(boxes.map((b) => b.render()));
  if (location.hash === '#selftest' && boxes.length) await selfTest(boxes[0]);
}

// With #selftest in the URL, the run page hovers over and drag-zooms its first chart, and
// records what happened in <body data-selftest="{...}"> (for the headless browser tests).
async function selfTest(box) {
  const svgEl = box.querySelector('svg');
  const overlay = svgEl.querySelector('rect[fill="transparent"]');
  const r = svgEl.getBoundingClientRect();
  const at = (fx) => ({ clientX: r.left + r.width * fx, clientY: r.top + r.height / 2, bubbles: true });
  overlay.dispatchEvent(new MouseEvent('mousemove', at(0.5)));
  const hover = !tooltip.hidden ? tooltip.textContent : '';
  const before = svgEl.getAttribute('data-points');
  overlay.dispatchEvent(new MouseEvent('mousedown', at(0.3)));
  overlay.dispatchEvent(new MouseEvent('mousemove', at(0.6)));
  overlay.dispatchEvent(new MouseEvent('mouseup', at(0.6)));
  for (let i = 0; i < 100 && !box.dataset.range; i++) await new Promise((ok) => setTimeout(ok, 20));
  const zoomed = box.querySelector('svg').getAttribute('data-points');
  const range = box.dataset.range;
  box.querySelector('svg rect[fill="transparent"]').dispatchEvent(new MouseEvent('dblclick', at(0.5)));
  for (let i = 0; i < 100 && box.dataset.range; i++) await new Promise((ok) => setTimeout(ok, 20));
  document.body.dataset.selftest = JSON.stringify({
    hover, before: Number(before), range, zoomed: Number(zoomed), reset: Number(box.querySelector('svg').getAttribute('data-points')),
  });
}

async function comparePage() {
  crumbs({ text: ctx.entity }, { href: `/ui/${enc(ctx.entity)}/${enc(ctx.project)}`, text: ctx.project }, { text: 'compare' });
  const params = new URLSearchParams(location.search);
  const ids = (params.get('runs') || '').split(',').filter(Boolean);
  if (!ids.length) { app.replaceChildren(el('p', { class: 'muted', text: 'Choose runs on the project page.' })); return; }
  const runs = await Promise.all(ids.map((id) => api(`/api/v1/runs/${enc(ctx.entity)}/${enc(ctx.project)}/${enc(id)}`)));
  const names = [...new Set(runs.flatMap((r) => r.metrics.map((m) => m.name).filter((n) => !n.startsWith('_'))))].sort();
  const metric = params.get('metric') || names[0] || 'loss';
  const select = el('select', { onchange: (ev) => { params.set('metric', ev.target.value); location.search = params.toString(); } },
    names.map((n) => el('option', { value: n, selected: n === metric, text: n })));
  const box = chartBox(metric, metric, async (range) => Promise.all(runs.map(async (r, i) => {
    const h = await api(historyURL(ctx.entity, ctx.project, r.id, [metric], range, 1000));
    const s = h.metrics[metric];
    return { label: r.name, color: COLORS[i % COLORS.length], steps: s.steps, values: s.values, min: s.min, max: s.max, sampled: s.sampled, count: s.count };
  })));
  app.replaceChildren(el('h1', { text: `Compare: ${metric}` }), el('div', { class: 'filters' }, 'metric ', select),
    el('p', {}, runs.map((r, i) => el('span', { style: 'margin-right:12px' }, el('a', { href: runURL(ctx.entity, ctx.project, r.id), style: `color:${COLORS[i % COLORS.length]}`, text: r.name })))),
    box);
  await box.render();
}

const pages = { home: homePage, project: projectPage, run: runPage, compare: comparePage };
(pages[ctx.page] || homePage)().then(() => { document.body.dataset.ready = 'true'; }).catch((e) => { showError(e); document.body.dataset.ready = 'error'; });
