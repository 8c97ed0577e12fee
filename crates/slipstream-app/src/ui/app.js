// slipstream's status page: reads the admin server's JSON API (docs/openapi.yaml) and draws
// the SLO table, per-SLO SVG charts with deploy markers, and the event timeline. Refreshes
// every 10 s. No dependencies, no build step. Times are UTC, like the API's.
'use strict';

const REFRESH_MS = 10000;
const state = {
  slos: [], uncataloged: [], evaluatedAt: null, events: [], series: null,
  details: new Map(), open: new Set(), first: true,
};

const $ = (id) => document.getElementById(id);
const ESC = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
const esc = (v) => String(v ?? '').replace(/[&<>"']/g, (c) => ESC[c]);
const num = (v) => typeof v === 'number' && Number.isFinite(v);

// ---- formatting ----
const objective = (v) => `${+(v * 100).toFixed(4)}%`;
const sli = (ratio) => (!num(ratio) ? '—' : ratio === 0 ? '100%' : `${((1 - ratio) * 100).toFixed(ratio < 0.01 ? 3 : 2)}%`);
const pct = (v) => (num(v) ? `${(v * 100).toFixed(1)}%` : '—');
const burn = (v) => (num(v) ? `${v.toFixed(v >= 100 ? 0 : v >= 10 ? 1 : 2)}×` : '—');
const ms = (iso) => (iso ? Date.parse(iso) : NaN);
const hhmm = (t) => new Date(t).toISOString().slice(11, 16);
const stamp = (iso) => (iso ? new Date(iso).toISOString().slice(0, 16).replace('T', ' ') + ' UTC' : '—');
const timeTag = (iso) => (iso ? `<time datetime="${esc(iso)}" title="${esc(stamp(iso))}">${hhmm(ms(iso))}</time>` : '—');
function duration(seconds) {
  if (!num(seconds)) return '—';
  const units = [['d', 86400], ['h', 3600], ['m', 60], ['s', 1]];
  const parts = [];
  let rest = Math.round(seconds);
  for (const [u, n] of units) {
    if (rest >= n || (u === 's' && !parts.length)) parts.push(`${Math.floor(rest / n)}${u}`);
    rest %= n;
    if (parts.length === 2) break;
  }
  return parts.join(' ');
}
const ago = (iso) => {
  const now = ms(state.evaluatedAt);
  return iso && num(now) ? `${duration(Math.max(0, (now - ms(iso)) / 1000))} ago` : '';
};
const win = (s, w) => (s.windows || []).find((x) => x.window === w);
const level = (b) => (!num(b) ? 'none' : b <= 0 ? 'bad' : b < 0.25 ? 'warn' : 'good');
const domId = (name) => `slo-${String(name).replace(/[^A-Za-z0-9_-]/g, '_')}`;

// ---- data ----
async function getJSON(url) {
  const r = await fetch(url, { cache: 'no-store', headers: { Accept: 'application/json' } });
  if (!r.ok) throw Object.assign(new Error(`${url}: HTTP ${r.status}`), { status: r.status });
  return r.json();
}

function sorted(slos) {
  const key = (b) => (num(b) ? b : Infinity);
  return [...slos].sort((a, b) => key(a.budget_remaining) - key(b.budget_remaining)
    || (b.current_burn_rate ?? 0) - (a.current_burn_rate ?? 0) || a.name.localeCompare(b.name));
}

async function loadDetail(name) {
  try {
    state.details.set(name, await getJSON(`/api/v1/slos/${encodeURIComponent(name)}`));
  } catch (e) {
    if (e.status === 404) { state.open.delete(name); state.details.delete(name); } else throw e;
  }
}

function hashSlo() {
  const m = /^#slo=(.+)$/.exec(location.hash);
  return m ? decodeURIComponent(m[1]) : null;
}

let loading = false;
async function load() {
  if (loading) return;
  loading = true;
  try {
    const [slos, events, series] = await Promise.all([
      getJSON('/api/v1/slos'),
      getJSON('/api/v1/events'),
      getJSON('/api/v1/series?sort=errors&limit=10&window=1h').catch(() => null),
    ]);
    state.slos = slos.slos || [];
    state.uncataloged = slos.uncataloged_services || [];
    state.evaluatedAt = slos.evaluated_at;
    state.events = events.events || [];
    state.series = series && series.series;
    if (state.first && state.slos.length) {
      state.first = false;
      const wanted = hashSlo();
      state.open.add(wanted && state.slos.some((s) => s.name === wanted) ? wanted : sorted(state.slos)[0].name);
    }
    await Promise.all([...state.open].map(loadDetail));
    showError(null);
  } catch (e) {
    showError(`Cannot read the admin API: ${e.message}. Retrying every ${REFRESH_MS / 1000} s.`);
  }
  loading = false;
  render();
}

function showError(msg) {
  const el = $('error');
  el.hidden = !msg;
  el.textContent = msg || '';
}

// ---- SLO table ----
// A policy row's short name: its windows, or for time-to-exhaustion and budget-drop rows
// their parameter and window.
function rowName(a) {
  if (a.kind === 'exhaustion') return `exhausts within ${a.exhausts_within} (${a.long_window})`;
  if (a.kind === 'budget_drop') return `${a.budget_drop_percent}% of budget in ${a.long_window}`;
  return `${a.long_window}/${a.short_window}`;
}

function badges(s) {
  const firing = (s.alerts || []).filter((a) => a.firing);
  if (!firing.length) return '<span class="badge ok">ok</span>';
  return firing.map((a) => {
    const note = a.superseded ? 'held back' : a.notified ? '' : 'silenced';
    const why = a.superseded ? '; held back while a page of this SLO fires' : a.notified ? '' : '; silenced, receivers not told';
    const cond = a.kind === 'exhaustion'
      ? `the budget left runs out within ${a.exhausts_within} at the burn rate of ${a.long_window}`
      : a.kind === 'budget_drop'
        ? `${a.budget_drop_percent}% or more of the budget went in ${a.long_window}`
        : `burn rate above ${a.factor}× over ${a.long_window} and ${a.short_window}`;
    const title = `firing since ${stamp(a.since)} (${ago(a.since)}): ${cond}${why}`;
    return `<span class="badge firing sev-${esc(a.severity)}${a.superseded ? ' superseded' : ''}" title="${esc(title)}">`
      + `FIRING · ${esc(a.severity)} · ${esc(rowName(a))}`
      + `${note ? ` <small>(${note})</small>` : ''}</span>`;
  }).join(' ');
}

function budgetCell(b) {
  const w = num(b) ? Math.max(0, Math.min(1, b)) * 100 : 0;
  return `<svg class="bar" viewBox="0 0 100 8" aria-hidden="true"><rect class="track ${level(b)}" width="100" height="8" rx="2"/>`
    + `<rect class="fill ${level(b)}" width="${w.toFixed(1)}" height="8" rx="2"/></svg> ${pct(b)}`;
}

function sloRow(s) {
  const open = state.open.has(s.name);
  const pageFiring = (s.alerts || []).some((a) => a.firing && a.severity === 'page');
  const tte = num(s.budget_remaining) && s.budget_remaining <= 0 ? 'exhausted' : duration(s.time_to_exhaustion_seconds);
  return `<tr class="slo${pageFiring ? ' is-firing' : ''}${open ? ' is-open' : ''}">`
    + `<th scope="row"><button type="button" class="toggle" data-name="${esc(s.name)}" aria-expanded="${open}" aria-controls="${domId(s.name)}">`
    + `<span class="caret" aria-hidden="true">▸</span>${esc(s.name)}</button>`
    + `<small>${esc(s.sli)} · ${esc(s.source)} · ${esc(s.period)}</small></th>`
    + `<td>${esc(s.service)}</td><td class="n">${objective(s.objective)}</td>`
    + `<td class="n">${sli(win(s, '1h')?.error_ratio)}</td>`
    + `<td class="n">${burn(win(s, '5m')?.burn_rate)} <span class="sep">/</span> ${burn(win(s, '1h')?.burn_rate)}</td>`
    + `<td class="n budget">${budgetCell(s.budget_remaining)}</td><td class="n">${tte}</td>`
    + `<td class="alerts">${badges(s)}</td></tr>`
    + (open ? `<tr class="detail" id="${domId(s.name)}"><td colspan="8">${detail(s.name)}</td></tr>` : '');
}

function renderSlos() {
  const root = $('slos');
  if (!state.slos.length) {
    root.innerHTML = '<p class="empty"><strong>No SLOs yet: send traces.</strong> Point an OpenTelemetry SDK or collector at the OTLP receivers (gRPC :4317, HTTP :4318); '
      + 'SLOs appear at the next evaluation for the services of <code>slo.objectives</code> and, through <code>slo.templates</code>, for every service seen.</p>';
    return;
  }
  root.innerHTML = '<table class="slos"><thead><tr><th scope="col">SLO</th><th scope="col">Service</th><th scope="col" class="n">Objective</th>'
    + '<th scope="col" class="n">SLI 1h</th><th scope="col" class="n">Burn rate 5m / 1h</th><th scope="col" class="n">Budget remaining</th>'
    + '<th scope="col" class="n">Time to exhaustion</th><th scope="col">Alerts</th></tr></thead>'
    + `<tbody>${sorted(state.slos).map(sloRow).join('')}</tbody></table>`;
}

// ---- charts ----
function niceTicks(a, b, n) {
  const raw = (b - a) / n;
  const mag = 10 ** Math.floor(Math.log10(raw || 1));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => (b - a) / s <= n) || mag * 10;
  const out = [];
  for (let v = Math.ceil(a / step - 1e-9) * step; v <= b + 1e-9; v += step) out.push(+v.toFixed(10));
  return out;
}

function timeTicks(t0, t1) {
  const steps = [1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440].map((m) => m * 60000);
  const step = steps.find((s) => (t1 - t0) / s <= 6) || steps[steps.length - 1];
  const out = [];
  for (let t = Math.ceil(t0 / step) * step; t <= t1; t += step) out.push(t);
  return out;
}

// One SVG line chart. lines: [{label, cls, points: [[t, v|null]]}], hlines: [{v, label, cls}],
// markers: [{t, label, cls, title}], area: fill under the first line down to 0.
function chart({ label, lines, t0, t1, y0, y1, log, yFmt, hlines = [], markers = [], area }) {
  const W = 440, H = 200, L = 46, R = 10, T = 20, B = 22;
  const f = log ? (v) => Math.log10(1 + Math.max(0, v)) : (v) => v;
  const X = (t) => L + (t1 > t0 ? (t - t0) / (t1 - t0) : 0.5) * (W - L - R);
  const Y = (v) => T + (1 - (f(Math.min(y1, Math.max(y0, v))) - f(y0)) / ((f(y1) - f(y0)) || 1)) * (H - T - B);
  const yTicks = log ? [0, 1, 10, 100, 1000, 10000, 100000].filter((v) => v <= y1) : niceTicks(y0, y1, 4);
  let s = `<svg class="chart" viewBox="0 0 ${W} ${H}" role="img" aria-label="${esc(label)}">`;
  for (const v of yTicks) {
    s += `<line class="grid" x1="${L}" x2="${W - R}" y1="${Y(v)}" y2="${Y(v)}"/>`
      + `<text class="tick" x="${L - 5}" y="${Y(v) + 3}" text-anchor="end">${esc(yFmt(v))}</text>`;
  }
  for (const t of timeTicks(t0, t1)) {
    s += `<line class="grid" x1="${X(t)}" x2="${X(t)}" y1="${T}" y2="${H - B}"/>`
      + `<text class="tick" x="${X(t)}" y="${H - 6}" text-anchor="middle">${hhmm(t)}</text>`;
  }
  for (const h of hlines) {
    if (h.v < y0 || h.v > y1) continue;
    s += `<line class="hline ${h.cls || ''}" x1="${L}" x2="${W - R}" y1="${Y(h.v)}" y2="${Y(h.v)}"/>`
      + `<text class="hlabel ${h.cls || ''}" x="${L + 3}" y="${Y(h.v) - 3}">${esc(h.label)}</text>`;
  }
  lines.forEach((ln, i) => {
    const segs = [];
    let cur = null;
    for (const [t, v] of ln.points) {
      if (!num(v)) { cur = null; continue; }
      if (!cur) segs.push((cur = []));
      cur.push([X(t).toFixed(1), Y(v).toFixed(1)]);
    }
    const d = segs.map((seg) => `M${seg.map((p) => p.join(',')).join('L')}`).join('');
    if (area && i === 0) {
      const base = Y(Math.max(y0, 0)).toFixed(1);
      const a = segs.map((seg) => `M${seg[0][0]},${base}L${seg.map((p) => p.join(',')).join('L')}L${seg[seg.length - 1][0]},${base}Z`).join('');
      s += `<path class="area" d="${a}"/>`;
    }
    s += `<path class="line ${ln.cls}" d="${d}"><title>${esc(ln.label)}</title></path>`;
  });
  for (const m of markers) {
    if (!(m.t >= t0 && m.t <= t1)) continue;
    const x = X(m.t), end = x > W * 0.7;
    s += `<g class="${m.cls}"><title>${esc(m.title)}</title><line x1="${x}" x2="${x}" y1="${T - 4}" y2="${H - B}"/>`
      + (m.label ? `<text x="${end ? x - 3 : x + 3}" y="${T - 8}" text-anchor="${end ? 'end' : 'start'}">${esc(m.label)}</text>` : '')
      + '</g>';
  }
  return `${s}</svg>`;
}

function figure(title, svg, legend) {
  return `<figure><figcaption>${esc(title)}</figcaption>${svg}`
    + (legend.length ? `<ul class="legend">${legend.map(([cls, text]) => `<li><span class="swatch ${cls}"></span>${esc(text)}</li>`).join('')}</ul>` : '')
    + '</figure>';
}

function deploys(events) {
  const seen = new Map();
  for (const e of events) {
    if (e.newest_version && e.newest_version_since) seen.set(`${e.newest_version}@${e.newest_version_since}`, e);
  }
  return [...seen.values()].sort((a, b) => ms(a.newest_version_since) - ms(b.newest_version_since));
}

function charts(d) {
  const hist = d.history || [];
  if (!hist.length) return '<p class="empty">No history yet: the first point comes with the next evaluation.</p>';
  const t1 = ms(hist[hist.length - 1].at), t0 = Math.min(ms(hist[0].at), t1 - 60000);
  const windows = hist[hist.length - 1].windows.map((w) => w.window);
  const series = (w, fn) => hist.map((h) => {
    const x = h.windows.find((y) => y.window === w);
    return [ms(h.at), x ? fn(x) : null];
  });
  const cls = (w) => `c${windows.indexOf(w) % 8}`;
  const markers = [
    ...deploys(d.events || []).map((e) => ({ t: ms(e.newest_version_since), label: e.newest_version, cls: 'deploy-marker', title: `${e.newest_version} first seen ${stamp(e.newest_version_since)}` })),
    ...(d.events || []).map((e) => ({ t: ms(e.at), cls: `event-marker ${e.state}`, title: `${e.severity} ${e.state} ${stamp(e.at)}` })),
  ];
  const base = { t0, t1, markers };
  // SLI: the shortest window and 1h, against the objective.
  const sliWindows = [...new Set([windows[0], windows.includes('1h') ? '1h' : windows[1]])].filter(Boolean);
  const sliLines = sliWindows.map((w) => ({ label: `SLI ${w}`, cls: cls(w), points: series(w, (x) => (num(x.error_ratio) ? 1 - x.error_ratio : null)) }));
  const lowest = Math.min(...sliLines.flatMap((l) => l.points.map((p) => p[1]).filter(num)), d.objective);
  const sliY0 = lowest >= d.objective ? Math.max(0, 2 * d.objective - 1) : Math.max(0, Math.floor(lowest * 10) / 10);
  const fine = 1 - sliY0 < 0.05;
  const sliChart = chart({
    ...base, label: `SLI of ${d.name} over time`, lines: sliLines, y0: sliY0, y1: 1,
    yFmt: (v) => `${(v * 100).toFixed(fine ? 2 : 0)}%`,
    hlines: [{ v: d.objective, label: `objective ${objective(d.objective)}`, cls: 'objective' }],
  });
  // Burn rate per window, log scale, with the alert factors.
  const burnLines = windows.map((w) => ({ label: `burn rate ${w}`, cls: cls(w), points: series(w, (x) => x.burn_rate) }));
  const factors = new Map();
  for (const a of (d.alerts || []).filter((x) => !x.kind || x.kind === 'burn_rate')) {
    factors.set(a.factor, [...(factors.get(a.factor) || []), a.severity]);
  }
  const top = Math.max(2, ...burnLines.flatMap((l) => l.points.map((p) => p[1]).filter(num)), ...factors.keys()) * 1.2;
  const burnChart = chart({
    ...base, label: `Burn rate of ${d.name} per window over time`, lines: burnLines, y0: 0, y1: top, log: true,
    yFmt: (v) => `${v}×`,
    hlines: [...factors].map(([v, sev]) => ({ v, label: `${v}× ${[...new Set(sev)].join('/')}`, cls: 'threshold' })),
  });
  // Budget remaining.
  const budget = hist.map((h) => [ms(h.at), h.budget_remaining]);
  const bvals = budget.map((p) => p[1]).filter(num);
  // Below -100% the line is pinned to the bottom (the table has the value).
  const bY0 = Math.max(-1, Math.min(0, Math.floor(Math.min(...bvals, 0) * 4) / 4));
  const budgetChart = chart({
    ...base, label: `Error budget remaining of ${d.name} over time`, area: true, y0: bY0, y1: 1,
    lines: [{ label: 'budget remaining', cls: `budget-line ${level(bvals[bvals.length - 1])}`, points: budget }],
    yFmt: (v) => `${Math.round(v * 100)}%`, hlines: bY0 < 0 ? [{ v: 0, label: 'exhausted', cls: 'zero' }] : [],
  });
  const marks = [['deploy-swatch', 'deploy (newest version)'], ['firing-swatch', 'firing'], ['resolved-swatch', 'resolved']];
  return '<div class="charts">'
    + figure('SLI (1 − error ratio)', sliChart, [...sliLines.map((l) => [l.cls, l.label.slice(4)]), ['objective-swatch', 'objective']])
    + figure('Burn rate per window (log scale)', burnChart, burnLines.map((l) => [l.cls, l.label.slice(10)]))
    + figure('Error budget remaining', budgetChart, marks)
    + '</div>';
}

function eventItem(e, withSlo) {
  const versions = e.newest_version
    ? `<span class="version">newest version <strong>${esc(e.newest_version)}</strong> since ${timeTag(e.newest_version_since)}</span>`
    : '';
  return `<li class="event ${esc(e.state)}">${timeTag(e.at)} <span class="state ${esc(e.state)}">${esc(e.state)}</span> `
    + `<span class="sev sev-${esc(e.severity)}">${esc(e.severity)}</span> `
    + (withSlo ? `<strong>${esc(e.slo)}</strong> ` : '')
    + (e.kind && e.kind !== 'burn_rate' ? `${esc(rowName(e))} · ` : '')
    + `burn rate ${esc(e.long_window)} ${burn(e.long_burn_rate)} · ${esc(e.short_window)} ${burn(e.short_burn_rate)} (threshold ${esc(e.factor)}×), `
    + `budget ${pct(e.budget_remaining)}${e.repeat ? ' <small>(repeat)</small>' : ''} ${versions}${shares(e)}</li>`;
}

// What the bad requests of the event's short window share: each value's share of the bad
// requests against its share of all requests, and an example bad request of its own (linked
// to its trace where `exemplars.trace_url` is set, http and https links only).
function shareExample(x) {
  return x ? ` (example ${traceLink(x.trace_id, x.url)})` : '';
}

function shares(e) {
  const list = e.bad_requests_share || [];
  if (!list.length) return '';
  const item = (s) => `<li><code>${esc(s.attribute)}=${esc(s.value)}</code>: `
    + `<strong>${Math.round(s.bad_share * 100)}%</strong> of bad, ${Math.round(s.all_share * 100)}% of all`
    + `${shareExample(s.example)}</li>`;
  return `<div class="shares">bad requests share <ul>${list.map(item).join('')}</ul></div>`;
}

// A trace id, linked to its trace where `exemplars.trace_url` gave a link (http and https
// links only).
function traceLink(traceId, url) {
  return /^https?:\/\//.test(url || '')
    ? `<a href="${esc(url)}" rel="noopener noreferrer">${esc(traceId)}</a>`
    : `<code>${esc(traceId)}</code>`;
}

// Example requests of an SLO (from the list of SLOs): linked to their traces where
// `exemplars.trace_url` is set, else their trace ids.
function exemplarItem(e) {
  return `<li>${traceLink(e.trace_id, e.url)} ${timeTag(e.end)} ${(e.duration_seconds * 1000).toFixed(1)} ms`
    + `${e.bad ? ' <span class="state firing">bad</span>' : ''}</li>`;
}

function exemplars(name) {
  const ex = state.slos.find((s) => s.name === name)?.exemplars;
  if (!ex || (!ex.bad.length && !ex.slow.length)) return '<p class="empty">No example requests kept.</p>';
  const list = (items) => (items.length ? `<ul class="exemplars">${items.map(exemplarItem).join('')}</ul>` : '<p class="empty">None.</p>');
  return `<h4>Most recent bad</h4>${list(ex.bad)}<h4>Slowest</h4>${list(ex.slow)}`;
}

function detail(name) {
  const d = state.details.get(name);
  if (!d) return '<p class="empty">Loading…</p>';
  const events = d.events || [];
  const dep = deploys(events);
  const windows = (d.windows || []).map((w) => `<tr><th scope="row">${esc(w.window)}</th><td class="n">${esc(w.total)}</td><td class="n">${esc(w.bad)}</td>`
    + `<td class="n">${sli(w.error_ratio)}</td><td class="n">${burn(w.burn_rate)}</td></tr>`).join('');
  return charts(d) + '<div class="panels">'
    + '<section><h3>Windows</h3><table class="small"><thead><tr><th scope="col">Window</th><th scope="col" class="n">Requests</th>'
    + `<th scope="col" class="n">Bad</th><th scope="col" class="n">SLI</th><th scope="col" class="n">Burn</th></tr></thead><tbody>${windows}</tbody></table></section>`
    + `<section><h3>Event timeline</h3>${events.length ? `<ol class="timeline">${[...events].reverse().map((e) => eventItem(e, false)).join('')}</ol>` : '<p class="empty">No burn-rate events.</p>'}</section>`
    + `<section><h3>Example traces</h3>${exemplars(name)}</section>`
    + `<section><h3>Deploys</h3>${dep.length ? `<ul class="deploys">${dep.map((e) => `<li><span class="marker-dot" aria-hidden="true"></span><strong>${esc(e.newest_version)}</strong> first seen ${timeTag(e.newest_version_since)} <small>${esc(ago(e.newest_version_since))}</small></li>`).join('')}</ul>` : '<p class="empty">No version seen in an event yet.</p>'}</section>`
    + '</div>';
}

// ---- other sections ----
function renderRest() {
  const u = $('uncataloged');
  u.hidden = !state.uncataloged.length;
  $('uncataloged-list').innerHTML = state.uncataloged.map((s) => `<li>${esc(s)}</li>`).join('');
  $('events').innerHTML = state.events.length
    ? `<ol class="timeline">${state.events.slice(-20).reverse().map((e) => eventItem(e, true)).join('')}</ol>`
    : '<p class="empty">No burn-rate events yet.</p>';
  const rows = (state.series || []).filter((s) => s.bad > 0);
  $('series').innerHTML = rows.length
    ? '<table class="small"><thead><tr><th scope="col">Series</th><th scope="col" class="n">Requests</th><th scope="col" class="n">Bad</th><th scope="col" class="n">Error ratio</th><th scope="col" class="n">p99</th></tr></thead><tbody>'
      + rows.map((s) => `<tr><td><ul class="chips">${Object.entries(s.labels).map(([k, v]) => `<li>${esc(k)}=${esc(v)}</li>`).join('')}</ul></td>`
        + `<td class="n">${s.total}</td><td class="n">${s.bad}</td><td class="n">${pct(s.error_ratio)}</td>`
        + `<td class="n">${s.latency_seconds ? `${(s.latency_seconds.p99 * 1000).toFixed(0)} ms` : '—'}</td></tr>`).join('')
      + '</tbody></table>'
    : '<p class="empty">No errors in the last hour.</p>';
  $('evaluated').textContent = state.evaluatedAt ? `evaluated ${stamp(state.evaluatedAt)}` : 'not evaluated yet';
  $('refreshed').textContent = `· refreshed ${new Date().toLocaleTimeString()} · every ${REFRESH_MS / 1000} s`;
}

function render() {
  const focused = document.activeElement?.dataset?.name;
  renderSlos();
  renderRest();
  if (focused) document.querySelector(`button.toggle[data-name="${CSS.escape(focused)}"]`)?.focus();
}

async function toggle(name) {
  if (state.open.has(name)) {
    state.open.delete(name);
    if (hashSlo() === name) history.replaceState(null, '', location.pathname);
  } else {
    state.open.add(name);
    history.replaceState(null, '', `#slo=${encodeURIComponent(name)}`);
    render();
    await loadDetail(name).catch((e) => showError(e.message));
  }
  render();
}

document.addEventListener('DOMContentLoaded', () => {
  $('slos').addEventListener('click', (e) => {
    const b = e.target.closest('button.toggle');
    if (b) toggle(b.dataset.name);
  });
  window.addEventListener('hashchange', () => {
    const name = hashSlo();
    if (name && !state.open.has(name)) toggle(name);
  });
  load();
  setInterval(load, REFRESH_MS);
});
