"use strict";
// The pipeline dashboard: the charts a pipeline declares over the signed-in owner's own table
// (GET /pipelines/{name}/dashboard), drawn with uPlot (served with the page from vendor/). It reloads when
// a followed task of that pipeline succeeds, so the charts show what was just loaded.
// Uses app.js's globals: api, $, state, showError, formatNumber.

const dashboard = { charts: [], loading: false };

function dashboardPath() {
  const pipeline = $("dashboard-pipeline").value.trim() || "flights";
  const table = $("dashboard-table").value.trim();
  const query = table ? `?${new URLSearchParams({ table })}` : "";
  return { pipeline, path: `/pipelines/${encodeURIComponent(pipeline)}/dashboard${query}` };
}

async function refreshDashboard() {
  if (!state.session || dashboard.loading) return;
  dashboard.loading = true;
  try {
    const { path } = dashboardPath();
    renderDashboard(await api(path));
  } finally {
    dashboard.loading = false;
  }
}

function renderDashboard(answer) {
  for (const chart of dashboard.charts) chart.destroy();
  dashboard.charts = [];
  const holder = $("dashboard-charts");
  holder.replaceChildren();
  holder.dataset.pipeline = answer.pipeline;
  holder.dataset.table = answer.table;
  holder.dataset.loaded = String(answer.loaded);
  $("dashboard-note").textContent = answer.loaded
    ? `table ${answer.table} · each query read-only, at most ${formatNumber(answer.rowCap)} rows and ` +
      `${answer.statementTimeoutMs / 1000} s`
    : `Nothing loaded into ${answer.table} yet: run the ${answer.pipeline} pipeline first.`;
  for (const chart of answer.charts) holder.append(chartFigure(chart));
  $("dashboard").dataset.state = "drawn";
}

function chartFigure(chart) {
  const figure = document.createElement("figure");
  const caption = document.createElement("figcaption");
  caption.textContent = chart.title + (chart.truncated ? " (first rows only)" : "");
  const plot = document.createElement("div");
  plot.className = "dashboard-chart";
  plot.dataset.testid = `dashboard-chart-${chart.name}`;
  plot.setAttribute("data-testid", `dashboard-chart-${chart.name}`);
  plot.dataset.kind = chart.chart;
  plot.dataset.points = String(chart.points.length);
  plot.dataset.labels = JSON.stringify(chart.points.map((point) => point.x));
  figure.append(caption, plot);
  if (chart.error) {
    const error = document.createElement("p");
    error.className = "task-error";
    error.dataset.testid = "dashboard-error";
    error.textContent = chart.error;
    figure.append(error);
    return figure;
  }
  // The chart is drawn once the figure is in the page (uPlot measures its holder).
  requestAnimationFrame(() => drawDashboardChart(plot, chart));
  return figure;
}

// x is the category's position; the axis names each one (a carrier, a month, a destination).
function drawDashboardChart(holder, chart) {
  if (typeof uPlot === "undefined" || chart.points.length === 0) return;
  const labels = chart.points.map((point) => (point.x === null ? "(none)" : String(point.x)));
  const xs = labels.map((_, k) => k);
  const ys = chart.points.map((point) => point.y);
  const bars = chart.chart === "bar";
  const options = {
    width: Math.max(300, holder.clientWidth || 420),
    height: 200,
    legend: { show: false },
    scales: {
      x: { time: false, range: [-0.6, xs.length - 0.4] },
      // a bar's height is its value: bars start at zero; a line may zoom into its range
      y: bars ? { range: (_, min, max) => [Math.min(0, min), Math.max(0, max) * 1.08 || 1] } : {},
    },
    series: [
      {},
      {
        label: chart.yLabel || "y",
        stroke: "#2b6cb0",
        fill: bars ? "rgba(43, 108, 176, 0.35)" : undefined,
        width: bars ? 1 : 2,
        paths: bars ? uPlot.paths.bars({ size: [0.7, 60] }) : undefined,
        points: { show: !bars, size: 6 },
      },
    ],
    axes: [
      { label: chart.xLabel, splits: () => xs, values: (_, splits) => splits.map((k) => labels[k] ?? "") },
      { label: chart.yLabel, size: 70 },
    ],
  };
  const plot = new uPlot(options, [xs, ys], holder);
  holder.dataset.drawn = String(plot.data[0].length);
  dashboard.charts.push(plot);
}

// A pushed snapshot: a task of the shown pipeline that just succeeded changed what the charts read.
function dashboardSawSnapshot(snapshot) {
  const { pipeline } = dashboardPath();
  if (snapshot.pipeline !== pipeline || snapshot.status !== "SUCCEEDED") return;
  if ($("dashboard").dataset.after === snapshot.taskId) return;
  $("dashboard").dataset.after = snapshot.taskId;
  refreshDashboard().catch((error) => showError(error.message));
}

$("dashboard-form").addEventListener("submit", (event) => {
  event.preventDefault();
  refreshDashboard().catch((error) => showError(error.message));
});
