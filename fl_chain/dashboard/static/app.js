// flchain dashboard: renders /api/ledger and re-renders on every announcement of /api/stream.
// Every string from the chain is attacker-controlled (endpoints, URIs, blob bases): it is only ever
// set as textContent or a title attribute, never parsed as HTML.
"use strict";

const state = { ledger: null, task: null, verified: new Map(), seenRounds: new Set(), charts: [] };

function el(tag, options = {}, ...children) {
  const node = document.createElement(tag);
  if (options.text !== undefined && options.text !== null) node.textContent = String(options.text);
  if (options.cls) node.className = options.cls;
  if (options.title) node.title = String(options.title);
  for (const [key, value] of Object.entries(options.data || {})) node.dataset[key] = String(value);
  for (const child of children) node.append(child);
  return node;
}

const short = (hex) => (hex && hex.length > 14 ? `${hex.slice(0, 8)}…${hex.slice(-4)}` : hex || "");
const when = (seconds) => (seconds ? new Date(seconds * 1000).toLocaleString() : "");
const number = (n) => (n === null || n === undefined ? "" : Number(n).toLocaleString());
const percent = (x) => (x === null || x === undefined ? "" : `${(100 * x).toFixed(2)} %`);
const stamp = (s) => (s ? `${when(s.time)} (block ${s.block})` : "");

function card(label, value, id) {
  return el("div", { cls: "card", data: { card: id } }, el("div", { cls: "value", text: value }), el("div", { cls: "label", text: label }));
}

function renderHeader(ledger) {
  const chain = ledger.chain;
  document.getElementById("chain").textContent = `chain ${chain.chain_id} · ${chain.rpc} · block ${chain.head}`;
  const status = document.getElementById("status");
  const live = chain.status === "live";
  status.textContent = live ? "live" : chain.status;
  status.className = `pill ${live ? "live" : "down"}`;
}

function renderSummary(ledger) {
  const active = ledger.nodes.filter((n) => n.status === "Active").length;
  const suspended = ledger.nodes.filter((n) => n.status === "Suspended").length;
  const gas = ledger.rounds.reduce((sum, r) => sum + (r.gas || 0), 0);
  document.getElementById("summary").replaceChildren(
    card("tasks", ledger.tasks.length, "tasks"),
    card("rounds committed", ledger.rounds.length, "rounds"),
    card("active nodes", active, "active"),
    card("suspended nodes", suspended, "suspended"),
    card("gas for rounds", number(gas), "gas"),
    card("events", number(ledger.event_count), "events"),
  );
}

function renderTaskSelect(ledger) {
  const select = document.getElementById("task-select");
  const tasks = ledger.tasks.map((t) => t.task);
  if (state.task === null || !tasks.includes(state.task)) state.task = tasks.length ? tasks[tasks.length - 1] : null;
  select.replaceChildren(...tasks.map((t) => {
    const option = el("option", { text: `task ${t}` });
    option.value = String(t);
    option.selected = t === state.task;
    return option;
  }));
  const task = ledger.tasks.find((t) => t.task === state.task);
  document.getElementById("task-line").textContent = task
    ? `owner ${task.owner} · store ${task.blob_base} · config ${short(task.config_hash)} · created ${stamp(task.created)}`
    : "no task on this ledger yet";
  document.getElementById("report-error").textContent = ledger.chain.report_error
    ? `the server's report beside the chain could not be read: ${ledger.chain.report_error}` : "";
}

function finality(round, quorum) {
  if (quorum === null) return "no quorum contract";
  const attested = `${round.attestations} attestation${round.attestations === 1 ? "" : "s"}`;
  const derived = round.updates_root ? ", derivation checked" : "";
  if (round.disputed) {
    return `DISPUTED by ${round.disputes.length}: ${round.disputes.map((d) => d.reason).join("; ")}`;
  }
  return round.finalized ? `finalized (${attested}${derived}, quorum ${quorum})` : `${attested} of ${quorum} needed`;
}

function verifyCell(round) {
  const key = `${round.task}:${round.round}`;
  const result = el("span", { cls: "verify-result" });
  const shown = state.verified.get(key);
  if (shown) {
    result.textContent = shown.status;
    result.classList.add(shown.status);
    result.title = shown.detail || (shown.actual ? `expected ${shown.expected}, got ${shown.actual}` : "");
  }
  const button = el("button", { cls: "verify", text: "verify", data: { task: round.task, round: round.round } });
  button.addEventListener("click", () => verify(round.task, round.round));
  return el("td", {}, button, " ", result);
}

async function verify(task, round) {
  const key = `${task}:${round}`;
  state.verified.set(key, { status: "checking" });
  render();
  try {
    // A POST with a header only this page adds: the dashboard fetches nothing for a page elsewhere.
    const answer = await fetch(`/api/verify/${task}/${round}`, {
      method: "POST",
      cache: "no-store",
      headers: { "x-flchain-verify": "1" },
    });
    state.verified.set(key, await answer.json());
  } catch (error) {
    state.verified.set(key, { status: "unavailable", detail: String(error) });
  }
  render();
}

function renderRounds(ledger) {
  const quorum = ledger.chain.quorum;
  const rounds = ledger.rounds.filter((r) => r.task === state.task);
  const rows = rounds.slice().reverse().map((r) => {
    const key = `${r.task}:${r.round}`;
    const row = el("tr", { data: { task: r.task, round: r.round } },
      el("td", { text: r.round }),
      el("td", { text: when(r.time), title: `block ${r.block}` }),
      el("td", { cls: "mono", text: short(r.model_hash), title: r.model_hash }),
      el("td", { cls: "mono wrap", text: r.uri }),
      el("td", { text: r.participants, title: Object.keys(r.contributions).join("\n") }),
      el("td", { text: number(r.gas), title: r.tx }),
      el("td", { text: finality(r, quorum) }),
      el("td", { text: percent(r.accuracy), title: r.accuracy_source || "not known" }),
      verifyCell(r),
    );
    if (state.ledger && !state.seenRounds.has(key) && state.seenRounds.size) row.classList.add("new");
    return row;
  });
  document.querySelector("#rounds-table tbody").replaceChildren(...rows);
  for (const r of rounds) state.seenRounds.add(`${r.task}:${r.round}`);
}

function eventCell(s, extra) {
  if (!s) return el("td");
  // The transaction that did it, shortened in the cell and whole on hover.
  const text = `${stamp(s)} · tx ${short(s.tx)}${extra ? ` · ${extra}` : ""}`;
  return el("td", { text, title: `tx ${s.tx}${s.by ? `\nby ${s.by}` : ""}` });
}

function renderNodes(ledger) {
  const rows = ledger.nodes.map((n) => el("tr", { data: { address: n.address } },
    el("td", { cls: "mono", text: n.address }),
    el("td", { cls: `status-${n.status}`, text: n.status }),
    el("td", { text: n.reputation === null ? "" : n.reputation.toFixed(3) }),
    el("td", { text: n.scored }),
    el("td", { text: n.missed }),
    el("td", { text: n.penalized }),
    el("td", { text: n.capacity ? `${n.capacity.cores} cores · ${number(n.capacity.memory_mb)} MB · ${number(n.capacity.samples_per_sec)}/s` : "" }),
    el("td", { cls: "mono wrap endpoint", text: n.endpoint }),
    eventCell(n.applied),
    eventCell(n.approved),
    eventCell(n.suspended, n.suspended && n.suspended.reason),
  ));
  document.querySelector("#nodes-table tbody").replaceChildren(...rows);
}

function describe(event) {
  const a = event.args;
  const who = a.node ? short(a.node) : a.validator ? short(a.validator) : "";
  const where = a.task !== undefined ? `task ${a.task}${a.round !== undefined ? ` round ${a.round}` : ""}` : "";
  return [where, who].filter(Boolean).join(" · ");
}

function renderEvents(ledger) {
  document.getElementById("events").replaceChildren(...ledger.events.slice(0, 100).map((e) =>
    el("li", { title: `tx ${e.tx}` }, el("span", { cls: "kind", text: e.name }), el("span", { text: `block ${e.block} · ${describe(e)}` }))));
}

const palette = (i) => `hsl(${(i * 137.5) % 360}, 65%, 45%)`;

function chart(id, title, x, series) {
  const target = document.getElementById(id);
  target.replaceChildren();
  if (!x.length) {
    target.append(el("p", { cls: "muted", text: "no data yet" }));
    return;
  }
  const width = Math.max(300, target.clientWidth || 400);
  const options = {
    width, height: 220, legend: { show: series.length <= 12 },
    scales: { x: { time: false } },
    series: [{ label: title }, ...series.map((s, i) => ({
      label: s.label, stroke: palette(i), width: 2, spanGaps: true, points: { size: 5 },
      ...(s.stepped ? { paths: uPlot.paths.stepped({ align: 1 }) } : {}),
    }))],
    axes: [{ incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000] }, { size: 70 }],
  };
  state.charts.push(new uPlot(options, [x, ...series.map((s) => s.values)], target));
}

function renderCharts(ledger) {
  for (const c of state.charts) c.destroy();
  state.charts = [];
  const rounds = ledger.rounds.filter((r) => r.task === state.task);
  const x = rounds.map((r) => r.round);
  chart("chart-accuracy", "round", x, [{ label: "accuracy", values: rounds.map((r) => r.accuracy) }]);
  chart("chart-gas", "round", x, [{ label: "gas", values: rounds.map((r) => r.gas) }]);
  // By block, not wall time: a fast federation commits several rounds within one second.
  const blocks = [...new Set(ledger.nodes.flatMap((n) => n.history.map((h) => h.block)))].sort((a, b) => a - b);
  const series = ledger.nodes.filter((n) => n.history.length).map((n) => {
    // A reputation holds until its next update: carry it forward, drawn as steps.
    const byBlock = new Map(n.history.map((h) => [h.block, h.value]));
    let last = null;
    const values = blocks.map((b) => (byBlock.has(b) ? (last = byBlock.get(b)) : last));
    return { label: short(n.address), values, stepped: true };
  });
  chart("chart-reputation", "block", blocks, series);
}

function render() {
  const ledger = state.ledger;
  if (!ledger || !ledger.chain) return;
  renderHeader(ledger);
  renderSummary(ledger);
  renderTaskSelect(ledger);
  renderRounds(ledger);
  renderNodes(ledger);
  renderEvents(ledger);
  renderCharts(ledger);
  document.body.dataset.version = String(ledger.version);
  if (!document.body.dataset.firstPaintMs) document.body.dataset.firstPaintMs = String(Math.round(performance.now())); // since navigation began
}

async function load() {
  const answer = await fetch("/api/ledger", { cache: "no-store" });
  const ledger = await answer.json();
  if (state.ledger && ledger.version < state.ledger.version) return; // an older answer arrived late
  state.ledger = ledger;
  render();
}

function listen() {
  const stream = new EventSource("/api/stream");
  stream.addEventListener("ledger", (message) => {
    // Always re-read: after a reconnect the version may be unchanged but the header must say "live".
    load();
  });
  stream.onerror = () => {
    const status = document.getElementById("status");
    status.textContent = "dashboard not answering (reconnecting)";
    status.className = "pill down";
  };
}

document.getElementById("task-select").addEventListener("change", (e) => {
  state.task = Number(e.target.value);
  render();
});
load().then(listen);
