"use strict";
// The caller's schedules (GET /schedules): each with its pipeline, expression, time zone and next run, and
// a delete button; "Schedule it" creates one from the Named pipeline form (POST /schedules). The API checks
// the expression, the time zone and the params, naming what is wrong; the page shows that answer.
// Uses app.js's globals: api, $, clearError, showError; pipelines.js's form.

function scheduleRow(schedule) {
  const item = document.createElement("li");
  item.dataset.scheduleId = schedule.scheduleId;
  item.dataset.testid = "schedule";
  const what = document.createElement("span");
  what.textContent = `${schedule.pipeline} · ${schedule.expression} (${schedule.timezone})`;
  const next = document.createElement("span");
  next.className = "hint";
  next.dataset.testid = "schedule-next";
  next.textContent = schedule.nextRuns.length
    ? ` next ${new Date(schedule.nextRuns[0]).toLocaleString()}`
    : " no next run";
  const remove = document.createElement("button");
  remove.type = "button";
  remove.className = "link";
  remove.textContent = "delete";
  remove.dataset.testid = "delete-schedule";
  remove.addEventListener("click", () => deleteSchedule(schedule.scheduleId).catch((error) => showError(error.message)));
  item.append(what, next, remove);
  return item;
}

async function refreshSchedules() {
  if (!state.session) return;
  const listed = await api("/schedules");
  const items = listed.items || [];
  $("schedule-list").replaceChildren(...items.map(scheduleRow));
  $("schedule-list-empty").hidden = items.length > 0;
}

async function deleteSchedule(scheduleId) {
  clearError();
  await api(`/schedules/${encodeURIComponent(scheduleId)}`, { method: "DELETE" });
  await refreshSchedules();
}

async function createSchedule() {
  clearError();
  const params = formParams(); // pipelines.js
  if (params === null) return;
  await api("/schedules", {
    method: "POST",
    body: JSON.stringify({
      pipeline: $("pipeline-name").value,
      params,
      expression: $("schedule-expression").value.trim(),
      timezone: $("schedule-timezone").value.trim() || "UTC",
    }),
  });
  await refreshSchedules();
}

$("schedule-timezone").value = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
$("create-schedule").addEventListener("click", () => createSchedule().catch((error) => showError(error.message)));
$("refresh-schedules").addEventListener("click", () => refreshSchedules().catch((error) => showError(error.message)));
