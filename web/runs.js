"use strict";
// The Runs view: the signed-in owner's tasks, filterable by pipeline and status, a page at a time, live,
// and two charts over the page's finished runs (uPlot, served with the page from vendor/).
// Uses app.js's globals: api, formatNumber, formatUsd, TERMINAL, $, state, selectTask.

const RUNS_PAGE = 20;
const RUNS_REFRESH_MS = 3000; // while a listed run is still going
const SERIES_COLOURS = ["#2b6cb0", "#c05621", "#2f855a", "#6b46c1", "#b83280", "#2c7a7b"];

const runs = {
  tokens: [null], // tokens[k]: the nextToken that reads page k
  page: 0,
  asked: 0, // refreshes asked for: only the last one's answer is shown
  items: [],
  timer: null,
  charts: {},
};

function runFilters() {
  const query = new URLSearchParams({ limit: String(RUNS_PAGE) });
  const pipeline = $("runs-pipeline").value.trim();
  const status = $("runs-status").value;
  if (pipeline) query.set("pipeline", pipeline);
  if (status) query.set("status", status);
  return query;
}

async function refreshRuns() {
  clearTimeout(runs.timer);
  if (!state.session) return; // signed out meanwhile
  const query = runFilters();
  const token = runs.tokens[runs.page];
  if (token) query.set("nextToken", token);
  const asked = ++runs.asked;
  const page = await api(`/tasks?${query}`);
  // An earlier refresh (the list loaded at sign-in, other filters, another page) may answer after a later
  // one: showing it would put back what the filters just replaced.
  if (asked !== runs.asked) return;
  runs.tokens[runs.page + 1] = page.nextToken || null;
  runs.items = page.items || [];
  renderRuns();
  clearTimeout(runs.timer);
  if (runs.items.some((task) => !TERMINAL.has(task.status))) {
    runs.timer = setTimeout(() => refreshRuns().catch((error) => showError(error.message)), RUNS_REFRESH_MS);
  }
}

function runSeconds(task) {
  const end = TERMINAL.has(task.status) ? Date.parse(task.updatedAt) : Date.now();
  return Math.max(0, (end - Date.parse(task.createdAt)) / 1000);
}

function runCells(task) {
  const counts = task.counts || {};
  return {
    task: task.taskId.slice(0, 8),
    pipeline: task.pipeline,
    status: task.status,
    started: new Date(task.createdAt).toLocaleString(),
    duration: `${runSeconds(task).toFixed(1)} s${TERMINAL.has(task.status) ? "" : " so far"}`,
    read: formatNumber(counts.read),
    loaded: formatNumber(counts.loaded),
    rejected: formatNumber(counts.rejected),
    cost: task.cost ? formatUsd(task.cost.usd) : "",
  };
}

// What the listed runs cost on AWS, summed per pipeline (finished runs only: a running one is not done).
function renderRunCosts() {
  const sums = new Map();
  for (const task of runs.items) {
    if (!TERMINAL.has(task.status) || !task.cost) continue;
    const sum = sums.get(task.pipeline) || { usd: 0, runs: 0 };
    sum.usd += task.cost.usd;
    sum.runs += 1;
    sums.set(task.pipeline, sum);
  }
  const parts = [...sums.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([pipeline, sum]) => `${pipeline} ${formatUsd(sum.usd)} (${sum.runs} run${sum.runs === 1 ? "" : "s"})`);
  const line = $("runs-cost");
  line.textContent = parts.length ? `cost on AWS of the finished runs shown: ${parts.join(" · ")}` : "";
  line.dataset.pipelines = JSON.stringify(Object.fromEntries([...sums].map(([name, sum]) => [name, sum.usd])));
}

function fillRunRow(row, task) {
  row.replaceChildren();
  for (const [field, text] of Object.entries(runCells(task))) {
    const cell = document.createElement("td");
    cell.dataset.field = field;
    if (field === "status") {
      const badge = document.createElement("span");
      badge.className = "status small";
      badge.dataset.status = task.status;
      badge.textContent = text;
      cell.append(badge);
    } else {
      cell.textContent = text;
    }
    row.append(cell);
  }
}

function renderRuns() {
  const body = $("runs-body");
  body.replaceChildren();
  for (const task of runs.items) {
    const row = document.createElement("tr");
    row.dataset.taskId = task.taskId;
    fillRunRow(row, task);
    row.addEventListener("click", () => selectTask(task.taskId));
    body.append(row);
  }
  $("runs-empty").hidden = runs.items.length > 0;
  $("runs-page").textContent = `page ${runs.page + 1}`;
  $("runs-newer").disabled = runs.page === 0;
  $("runs-older").disabled = !runs.tokens[runs.page + 1];
  renderRunCharts();
  renderRunCosts();
}

// A pushed snapshot (the followed task's, over the WebSocket) updates its row at once.
function updateRunRow(snapshot) {
  const index = runs.items.findIndex((task) => task.taskId === snapshot.taskId);
  if (index < 0) return;
  if (runs.items[index].updatedAtMs > snapshot.updatedAtMs) return;
  runs.items[index] = snapshot;
  const row = document.querySelector(`#runs-body tr[data-task-id="${CSS.escape(snapshot.taskId)}"]`);
  if (row) fillRunRow(row, snapshot);
  if (TERMINAL.has(snapshot.status)) {
    renderRunCharts();
    renderRunCosts();
  }
}

// One series per pipeline over the page's finished runs; x is when the run started.
function chartData(value) {
  const finished = runs.items.filter((task) => TERMINAL.has(task.status));
  const pipelines = [...new Set(finished.map((task) => task.pipeline))].sort();
  const xs = [...new Set(finished.map((task) => Date.parse(task.createdAt) / 1000))].sort((a, b) => a - b);
  const series = pipelines.map((pipeline) =>
    xs.map((x) => {
      const task = finished.find((run) => run.pipeline === pipeline && Date.parse(run.createdAt) / 1000 === x);
      return task ? value(task) : null;
    }),
  );
  return { pipelines, data: [xs, ...series], points: finished.length };
}

function drawChart(id, label, value) {
  const holder = $(id);
  const { pipelines, data, points } = chartData(value);
  holder.dataset.points = String(points);
  holder.dataset.series = pipelines.join(",");
  if (runs.charts[id]) runs.charts[id].destroy();
  runs.charts[id] = null;
  holder.replaceChildren();
  if (points === 0 || typeof uPlot === "undefined") return;
  const options = {
    width: Math.max(300, holder.clientWidth || 420),
    height: 180,
    legend: { show: false }, // the caption names the series (one colour per pipeline)
    scales: { x: { time: true } },
    series: [
      {},
      ...pipelines.map((pipeline, k) => ({
        label: pipeline,
        stroke: SERIES_COLOURS[k % SERIES_COLOURS.length],
        spanGaps: true,
        points: { show: true, size: 6 },
      })),
    ],
    axes: [{}, { label, size: 80 }],
  };
  runs.charts[id] = new uPlot(options, data, holder);
  const xs = data[0];
  if (xs[xs.length - 1] - xs[0] < 60) {
    // a lone run (or runs within a minute): an hour around it, not uPlot's span of years
    runs.charts[id].setScale("x", { min: xs[0] - 1800, max: xs[xs.length - 1] + 1800 });
  }
  const legend = document.createElement("p");
  legend.className = "hint";
  pipelines.forEach((pipeline, k) => {
    const entry = document.createElement("span");
    entry.style.color = SERIES_COLOURS[k % SERIES_COLOURS.length];
    entry.textContent = `● ${pipeline} `;
    legend.append(entry);
  });
  holder.append(legend);
}

function renderRunCharts() {
  drawChart("runs-chart-duration", "seconds", runSeconds);
  drawChart("runs-chart-rows", "rows loaded", (task) => (task.counts || {}).loaded || 0);
}

function restartRuns() {
  runs.tokens = [null];
  runs.page = 0;
  refreshRuns().catch((error) => showError(error.message));
}

$("runs-filters").addEventListener("submit", (event) => {
  event.preventDefault();
  restartRuns();
});
$("runs-older").addEventListener("click", () => {
  if (!runs.tokens[runs.page + 1]) return;
  runs.page += 1;
  refreshRuns().catch((error) => showError(error.message));
});
$("runs-newer").addEventListener("click", () => {
  runs.page = Math.max(0, runs.page - 1);
  refreshRuns().catch((error) => showError(error.message));
});
