// The devtools page: plain JS, no build step. It asks the server for one page of data at a time.
"use strict";

const TOKEN = document.body.dataset.token;
const PAGE = 100;            // timeline rows per page
const MAX_CHILDREN = 200;    // children rendered per tree node before a "more" link
const LONG = 120;            // strings longer than this are shortened (full text in the tooltip)
const $ = (id) => document.getElementById(id);

const view = { seq: 0, length: 0, offset: 0, total: 0, filter: "", tab: "state", info: null,
               expanded: new Set([""]), pending: false, busy: false, state: null, diffChosen: false };

async function api(path, params = {}, method = "GET") {
  const query = new URLSearchParams({ ...params, token: TOKEN });
  const response = await fetch(`api/${path}?${query}`, { method, headers: { "X-Devtools-Token": TOKEN } });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

const time = (ts) => new Date(ts * 1000).toISOString().slice(11, 23);
const escapePart = (key) => String(key).replaceAll("~", "~0").replaceAll("/", "~1");
function short(value) {
  const text = JSON.stringify(value);
  return text !== undefined && text.length > LONG ? text.slice(0, LONG - 1) + "…" : String(text);
}
function showError(error) { $("status").textContent = error ? String(error.message || error) : ""; }

// --- the state tree ---------------------------------------------------------------------------------

function leaf(key, value, path) {
  const kind = value === null ? "null" : typeof value;
  const shown = el("span", { class: `value ${kind}`, "data-path": path, title: JSON.stringify(value),
                             onclick: () => whoChanged(path) }, short(value));
  return el("div", { class: "leaf" }, el("span", { class: "key" }, key), ": ", shown);
}

function branch(key, value, path) {
  const entries = Array.isArray(value) ? value.map((item, i) => [i, item]) : Object.entries(value);
  const label = Array.isArray(value) ? `[${value.length}]` : `{${entries.length}}`;
  const details = el("details", { "data-path": path },
                     el("summary", {}, el("span", { class: "key" }, key), " ", el("span", { class: "count" }, label)));
  const fill = () => {
    if (details.dataset.filled) return;
    details.dataset.filled = "1";
    let shown = 0;
    const more = (from) => {
      for (const [childKey, child] of entries.slice(from, from + MAX_CHILDREN)) {
        details.append(node(String(childKey), child, `${path}/${escapePart(childKey)}`));
        shown += 1;
      }
      if (shown < entries.length) {
        const link = el("div", { class: "more" }, `… ${entries.length - shown} more`);
        link.addEventListener("click", () => { link.remove(); more(shown); });
        details.append(link);
      }
    };
    more(0);
  };
  details.fill = fill;
  details.addEventListener("toggle", () => {
    if (details.open) { view.expanded.add(path); fill(); } else view.expanded.delete(path);
  });
  if (view.expanded.has(path)) { details.open = true; fill(); }
  return details;
}

function node(key, value, path) {
  return value !== null && typeof value === "object" ? branch(key, value, path) : leaf(key, value, path);
}

function renderTree(state) {
  $("tree").replaceChildren(node(view.info?.root_type || "root", state, ""));
}

function setAll(open) {
  view.expanded = new Set([""]);
  if (view.state === null) return;  // (no state shown)
  if (!open) { renderTree(view.state); return; }
  let budget = 5000;   // nodes opened at most, so a huge state cannot freeze the page
  for (let closed; budget > 0 && (closed = [...$("tree").querySelectorAll("details:not([open])")]).length;) {
    for (const details of closed.slice(0, budget)) {
      view.expanded.add(details.dataset.path);
      details.open = true;
      details.fill();   // now, not on the (asynchronous) toggle event: the next pass opens its children
    }
    budget -= closed.length;
  }
}

// --- state at a seq, the timeline ------------------------------------------------------------------

async function loadState() {
  if (view.busy) { view.pending = true; return; }
  view.busy = true;
  try {
    do {
      view.pending = false;
      const seq = view.seq;
      const answer = await api("state", { seq });
      view.state = answer.state;
      $("seq-label").textContent = seq;
      $("seq-entry").textContent = answer.entry ? `${time(answer.entry.ts)}  ${answer.entry.call}` : "initial state";
      renderTree(answer.state);
      $("tree").dataset.seq = seq;
      markCurrent();
      if (view.tab === "llm") await loadLLM();
    } while (view.pending);
    showError(null);
  } catch (error) {  // (a corrupt line before it): not the last state shown under this one's number
    $("tree").replaceChildren(el("div", { class: "hint" }, `state ${view.seq} cannot be shown`));
    delete $("tree").dataset.seq;
    $("seq-entry").textContent = "";
    view.state = null;
    showError(error);
  } finally {
    view.busy = false;
    if (view.pending) loadState();  // a move made while the failed request was out
  }
}

function setSeq(seq) {
  seq = Math.max(0, Math.min(view.length, seq));
  view.seq = seq;
  $("seq-slider").value = seq;
  $("seq-label").textContent = seq;
  loadState();
  if (view.tab === "diff") diffOfShownState();
}

async function loadTimeline() {
  const answer = await api("entries", { offset: view.offset, limit: PAGE, action: view.filter });
  view.total = answer.total;
  view.offset = answer.offset;
  const rows = answer.entries.map((entry) =>
    el("tr", { "data-seq": entry.seq, onclick: () => { $("follow").checked = false; setSeq(entry.seq); } },
       el("td", {}, String(entry.seq)), el("td", {}, entry.error ? "" : time(entry.ts)),
       entry.error  // a line of the log that cannot be read: the rest of the timeline still is
         ? el("td", { class: "corrupt", title: entry.error }, "unreadable: " + entry.error)
         : el("td", { title: entry.call }, entry.call),
       el("td", {}, entry.error ? "" : String(entry.patches))));
  $("timeline").tBodies[0].replaceChildren(...rows);
  const last = Math.min(view.total, view.offset + PAGE);
  $("page-label").textContent = view.total ? `${view.offset + 1}–${last} of ${view.total}` : "no entries";
  $("older").disabled = view.offset <= 0;
  $("newer").disabled = last >= view.total;
  markCurrent();
}

function markCurrent() {
  for (const row of $("timeline").tBodies[0].rows) row.classList.toggle("current", Number(row.dataset.seq) === view.seq);
}

function lastPage(total) { return Math.max(0, total - PAGE); }

async function onLength(length) {
  const grew = length !== view.length;
  view.length = length;
  $("length").textContent = length;
  $("seq-slider").max = length;
  if (!grew) return;
  if ($("follow").checked) {
    if (!view.filter) view.offset = lastPage(length);
    await loadTimeline();
    if (view.filter) { view.offset = lastPage(view.total); await loadTimeline(); }
    setSeq(length);
  }
}

// --- diff, who changed, LLM ---------------------------------------------------------------------------

let diffTicket = 0;  // only the answer to the latest request is shown (requests may answer out of order)
async function runDiff() {
  const ticket = ++diffTicket;
  const a = $("diff-a").value, b = $("diff-b").value;
  try {
    const answer = await api("diff", { a, b });
    if (ticket !== diffTicket) return;
    $("diff-patches").dataset.range = `${a}-${b}`;  // which diff the tables show (tests wait for it)
    $("diff-summary").textContent =
      `${answer.total_patches} patches, ${answer.total_changed} paths` +
      (answer.total_patches > answer.patches.length ? ` (first ${answer.patches.length} shown)` : "");
    const cell = (row, side) => side in row  // a side left out: the path is not in that state
      ? el("td", { class: side }, short(row[side])) : el("td", { class: `${side} absent` }, "(absent)");
    $("diff-changed").tBodies[0].replaceChildren(...answer.changed.map((row) =>
      el("tr", {}, el("td", {}, row.path || '""'), cell(row, "before"), cell(row, "after"))));
    $("diff-patches").tBodies[0].replaceChildren(...answer.patches.map((patch) =>
      el("tr", {}, el("td", {}, patch.op), el("td", {}, patch.path || '""'),
         el("td", {}, "value" in patch ? short(patch.value) : ""))));
    showError(null);
  } catch (error) {
    if (ticket !== diffTicket) return;
    delete $("diff-patches").dataset.range;  // not the previous diff's tables under the new seqs
    $("diff-summary").textContent = "";
    $("diff-changed").tBodies[0].replaceChildren();
    $("diff-patches").tBodies[0].replaceChildren();
    showError(error);
  }
}

let whoTicket = 0;  // as for the diff: only the latest answer is shown
async function whoChanged(path) {
  const ticket = ++whoTicket;
  $("who-path").value = path;
  showTab("who");
  try {
    const answer = await api("who", { path, limit: 200 });
    if (ticket !== whoTicket) return;
    $("who-summary").textContent = `${answer.total} entries changed ${path || "the root"}` +
      (answer.total > answer.entries.length ? ` (the last ${answer.entries.length} shown)` : "");
    $("who").tBodies[0].replaceChildren(...answer.entries.map((entry) =>
      el("tr", { "data-seq": entry.seq, onclick: () => { $("follow").checked = false; setSeq(entry.seq); } },
         el("td", {}, String(entry.seq)), el("td", {}, time(entry.ts)), el("td", {}, entry.call),
         el("td", {}, entry.changes.map((p) => `${p.op} ${p.path} ${"value" in p ? short(p.value) : ""}`).join("\n")))));
    showError(null);
  } catch (error) {
    if (ticket !== whoTicket) return;
    $("who-summary").textContent = "";  // not the previous path's answer under the new path
    $("who").tBodies[0].replaceChildren();
    showError(error);
  }
}

function chart(series) {
  const width = 420, height = 90;
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("class", "chart"); svg.setAttribute("width", width); svg.setAttribute("height", height);
  if (series.length) {
    const t0 = series[0].ts, t1 = series[series.length - 1].ts || t0 + 1;
    const top = Math.max(...series.map((p) => p.value), 1);
    const points = series.map((p) => {
      const x = t1 > t0 ? ((p.ts - t0) / (t1 - t0)) * (width - 10) + 5 : width / 2;
      return `${x.toFixed(1)},${(height - 5 - (p.value / top) * (height - 20)).toFixed(1)}`;
    });
    const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
    line.setAttribute("points", points.join(" ")); line.setAttribute("fill", "none");
    line.setAttribute("stroke", "#3f51b5"); line.setAttribute("stroke-width", "2");
    const label = document.createElementNS("http://www.w3.org/2000/svg", "text");
    label.setAttribute("x", 6); label.setAttribute("y", 12); label.setAttribute("font-size", "11");
    label.textContent = `max ${top.toFixed(1)} tokens/s`;
    svg.append(line, label);
  }
  return svg;
}

// tokens_generated and tokens_per_second are those of the generation running or last finished, not totals
function generationText(m) {
  const finished = `${m.generations} generation${m.generations === 1 ? "" : "s"} finished`;
  const current = m.state === "generating" ? "this one so far" : m.generations ? "the last one" : "";
  return current ? `${finished}; ${current}: ${m.tokens_generated} tokens at ${m.tokens_per_second.toFixed(1)} tokens/s`
                 : finished;
}

function bar(fraction) { return el("span", { class: "bar" }, el("span", { style: `width:${Math.round(fraction * 100)}%` })); }

async function loadLLM() {
  const answer = await api("llm", { seq: view.seq });
  const found = answer.models.length + answer.stores.length > 0;
  $("tabs").querySelector('[data-tab="llm"]').hidden = !found;
  const cards = answer.models.map((m) => el("div", { class: "card model", "data-at": m.at },
    el("h3", {}, `LlamaModel at ${m.at}`),
    el("div", {}, `state: `, el("b", { class: "llm-state" }, m.state), m.error ? `  error: ${m.error}` : ""),
    el("div", {}, "load ", bar(m.load_progress), ` ${(m.load_progress * 100).toFixed(0)} %`),
    el("div", { class: "llm-tokens" }, generationText(m)),
    el("div", { class: "hint" }, `tokens/s over the session (${m.series.length} points)`), chart(m.series)));
  for (const store of answer.stores) {
    cards.push(el("div", { class: "card store", "data-at": store.at }, el("h3", {}, `LLMStore at ${store.at || "/"}`),
      el("table", {}, el("thead", {}, el("tr", {}, ...["model", "status", "download", "error"].map((h) => el("th", {}, h)))),
        el("tbody", {}, ...store.models.map((info) => el("tr", {},
          el("td", {}, info.key + (info.key === store.selected ? " (selected)" : "")), el("td", {}, info.status),
          el("td", {}, bar(info.progress / 100), ` ${info.progress.toFixed(0)} %`), el("td", {}, info.error || "")))))));  // progress is 0-100
  }
  $("llm").replaceChildren(...cards);
}

function showTab(name) {
  view.tab = name;
  for (const button of $("tabs").children) button.classList.toggle("active", button.dataset.tab === name);
  for (const section of document.querySelectorAll(".view")) section.hidden = section.id !== `view-${name}`;
  if (name === "llm") loadLLM().catch(showError);
  if (name === "diff") diffOfShownState();
}

function diffOfShownState() {  // until seqs are typed in: what the entry of the state shown changed
  if (view.diffChosen) return;
  $("diff-a").value = Math.max(0, view.seq - 1);
  $("diff-b").value = view.seq;
  runDiff();
}

// --- wiring -----------------------------------------------------------------------------------------

function follow() {
  const events = new EventSource(`api/events?token=${encodeURIComponent(TOKEN)}`);
  events.onmessage = (message) => {
    const data = JSON.parse(message.data);
    if (data.session !== view.info.started) { location.reload(); return; }  // an app started a new session in the file
    onLength(data.length).catch(showError);
  };
  events.onerror = () => showError("the connection to the server was lost; retrying");
  events.onopen = () => showError(null);
}

async function start() {
  view.info = await api("info");
  if (!view.info.started) {  // an empty file (an app about to record to it): the page loads once the header is there
    $("source").textContent = `${view.info.file} (no session header yet: waiting for it)`;
    follow();
    return;
  }
  $("source").textContent = `${view.info.root_type} · ${view.info.file}${view.info.live ? " (live tree)" : ""}`;
  $("travel").hidden = !view.info.time_travel;
  view.length = view.info.length;
  $("seq-slider").max = view.length;
  $("length").textContent = view.length;
  view.offset = lastPage(view.length);
  await loadTimeline().catch(showError);  // (the page stays usable: the slider reaches every readable state)
  setSeq(view.length);
  await loadLLM();   // shows the LLM tab when the tree holds models or stores
  follow();
}

$("seq-slider").addEventListener("input", (e) => { $("follow").checked = false; setSeq(Number(e.target.value)); });
$("prev").addEventListener("click", () => { $("follow").checked = false; setSeq(view.seq - 1); });
$("next").addEventListener("click", () => setSeq(view.seq + 1));
document.addEventListener("keydown", (e) => {
  if (e.target.tagName === "INPUT" && e.target.type !== "range") return;
  if (e.key === "ArrowLeft") { e.preventDefault(); $("follow").checked = false; setSeq(view.seq - 1); }
  if (e.key === "ArrowRight") { e.preventDefault(); setSeq(view.seq + 1); }
});
$("older").addEventListener("click", () => { view.offset = Math.max(0, view.offset - PAGE); loadTimeline().catch(showError); });
$("newer").addEventListener("click", () => { view.offset += PAGE; loadTimeline().catch(showError); });
let filterTimer = null;
$("filter").addEventListener("input", (e) => {
  clearTimeout(filterTimer);
  filterTimer = setTimeout(async () => {
    view.filter = e.target.value.trim();
    view.offset = 0;
    try { await loadTimeline(); view.offset = lastPage(view.total); await loadTimeline(); } catch (error) { showError(error); }
  }, 150);
});
$("expand-all").addEventListener("click", () => setAll(true));
$("collapse-all").addEventListener("click", () => setAll(false));
$("diff-run").addEventListener("click", runDiff);
for (const id of ["diff-a", "diff-b"]) {
  $(id).addEventListener("input", () => { view.diffChosen = true; });
  $(id).addEventListener("keydown", (e) => { if (e.key === "Enter") runDiff(); });
}
$("who-run").addEventListener("click", () => whoChanged($("who-path").value));
$("who-path").addEventListener("keydown", (e) => { if (e.key === "Enter") whoChanged($("who-path").value); });
$("travel").addEventListener("click", () => api("travel", { seq: view.seq }, "POST").then(() => showError(null), showError));
for (const button of $("tabs").children) button.addEventListener("click", () => showTab(button.dataset.tab));

start().catch(showError);
