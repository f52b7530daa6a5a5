// Busline page: submit tasks, follow one live over the WebSocket API, page through its rejects.
// Plain script, no build step and no third-party code: it is served as-is by the local cloud and S3.
"use strict";

const PHASES = ["extract", "transform", "load"];
const COUNTS = ["read", "filtered", "rejected", "loaded", "deleted"];
const TERMINAL = new Set(["SUCCEEDED", "FAILED", "CANCELLED"]);
// COMMITTING is past cancelling: its rows may be becoming visible in the target right now.
const CANCELLABLE = new Set(["ACCEPTED", "EXTRACTING", "TRANSFORMING", "LOADING"]);
const POLL_MS = 1500;
// If the socket is open but silent this long while a task runs, ask the REST API once: a push can be lost.
const STALE_MS = 8000;
const RECONNECT_MIN_MS = 500;
const RECONNECT_MAX_MS = 15000;
const REJECTS_PAGE = 50;
// Refresh an access token this long before it expires, so no request goes out with a dying one.
const TOKEN_MARGIN_MS = 60000;
// Tokens live as long as the tab (sessionStorage), never in a cookie the API would have to trust.
const SESSION_KEY = "busline.session";

const state = {
  config: null,
  taskId: null,
  snapshot: null,
  socket: null,
  socketOpen: false,
  reconnectDelay: RECONNECT_MIN_MS,
  reconnectTimer: null,
  pollTimer: null,
  lastMessageAt: 0,
  rejectsLoadedFor: null,
  rejectTokens: [null], // token of each page seen, so "previous" can go back
  rejectPage: 0,
  session: null, // {username, accessToken, refreshToken, expiresAt}
  started: false,
};

const $ = (id) => document.getElementById(id);

// ------------------------------------------------------------------ errors

function showError(message) {
  $("error-text").textContent = message;
  $("error").hidden = false;
}

function clearError() {
  $("error").hidden = true;
  $("error-text").textContent = "";
}

// Turn the API's error bodies into lines a person can act on: each names the field at fault.
function describeErrorBody(status, body) {
  const lines = [];
  if (body && typeof body === "object") {
    if (body.message) lines.push(String(body.message));
    if (Array.isArray(body.errors)) {
      for (const error of body.errors) {
        lines.push(`• ${error.field ?? "?"}: ${error.message ?? ""}`);
      }
    }
    if (Array.isArray(body.detail)) {
      // Powertools request validation: {detail: [{loc: ["body", ...], msg|type}]}
      for (const item of body.detail) {
        const loc = (item.loc || []).filter((part) => part !== "body").join(".");
        lines.push(`• ${loc || "body"}: ${item.msg || item.type || "invalid"}`);
      }
    }
  } else if (body) {
    lines.push(String(body));
  }
  if (!lines.length) lines.push("no details in the response");
  return `HTTP ${status}\n${lines.join("\n")}`;
}

// ------------------------------------------------------------------ sign-in (Cognito)

// Cognito's own API, as any AWS SDK calls it: InitiateAuth needs no AWS credentials, only the app client.
async function cognito(action, payload) {
  const auth = state.config.auth;
  const endpoint = auth.cognitoEndpoint || `https://cognito-idp.${auth.region}.amazonaws.com/`;
  const response = await fetch(endpoint, {
    method: "POST",
    headers: {
      "Content-Type": "application/x-amz-json-1.1",
      "X-Amz-Target": `AWSCognitoIdentityProviderService.${action}`,
    },
    body: JSON.stringify(payload),
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.message || body.__type || `HTTP ${response.status}`);
  return body;
}

function keepSession(username, result, refreshToken) {
  state.session = {
    username,
    accessToken: result.AccessToken,
    refreshToken: result.RefreshToken || refreshToken,
    expiresAt: Date.now() + 1000 * (result.ExpiresIn || 3600),
  };
  sessionStorage.setItem(SESSION_KEY, JSON.stringify(state.session));
}

async function signIn(username, password) {
  const result = await cognito("InitiateAuth", {
    AuthFlow: "USER_PASSWORD_AUTH",
    ClientId: state.config.auth.clientId,
    AuthParameters: { USERNAME: username, PASSWORD: password },
  });
  if (!result.AuthenticationResult) {
    throw new Error(`Cognito asks for ${result.ChallengeName}: set a permanent password for this user first`);
  }
  keepSession(username, result.AuthenticationResult, null);
}

function signOut(reason) {
  state.session = null;
  sessionStorage.removeItem(SESSION_KEY);
  if (state.socket) {
    const socket = state.socket;
    state.socket = null;
    state.socketOpen = false;
    socket.close();
  }
  clearTimeout(state.reconnectTimer);
  stopPolling();
  showSignIn(reason || "");
}

async function accessToken() {
  const session = state.session;
  if (!session) throw new Error("Not signed in.");
  if (Date.now() < session.expiresAt - TOKEN_MARGIN_MS) return session.accessToken;
  try {
    const result = await cognito("InitiateAuth", {
      AuthFlow: "REFRESH_TOKEN_AUTH",
      ClientId: state.config.auth.clientId,
      AuthParameters: { REFRESH_TOKEN: session.refreshToken },
    });
    keepSession(session.username, result.AuthenticationResult, session.refreshToken);
    return state.session.accessToken;
  } catch (error) {
    signOut("Your session has ended; sign in again.");
    throw new Error("Your session has ended; sign in again.");
  }
}

function showSignIn(message) {
  $("app").hidden = true;
  $("who").hidden = true;
  $("signin").hidden = false;
  $("signin-hint").textContent = message;
  const demo = state.config && state.config.auth && state.config.auth.demoUser;
  if (demo && !$("signin-username").value) {
    // the local cloud's demo user: a new password each start, so the form is filled in for you
    $("signin-username").value = demo.username;
    $("signin-password").value = demo.password;
    if (!message) $("signin-hint").textContent = "Local cloud: signed in as the demo user when you press Sign in.";
  }
}

function showApp() {
  $("signin").hidden = true;
  $("app").hidden = false;
  $("who").hidden = false;
  $("who-name").textContent = `signed in as ${state.session.username}`;
  if (!state.started) {
    state.started = true;
    setInterval(watchForSilence, 1000);
  }
  connectSocket();
  refreshTaskList();
  restartRuns(); // runs.js
  refreshDashboard().catch((error) => showError(error.message)); // dashboard.js
  loadPipelines().catch((error) => showError(error.message)); // pipelines.js
  refreshSchedules().catch((error) => showError(error.message)); // schedules.js
  openLinkedTask();
}

// A notification links to its task as <page>/#task=<id>: open that task once signed in.
function openLinkedTask() {
  const linked = /^#task=([A-Za-z0-9-]{1,64})$/.exec(window.location.hash);
  if (linked && state.taskId !== linked[1]) selectTask(linked[1]);
}
window.addEventListener("hashchange", () => {
  if (state.session) openLinkedTask();
});

// ------------------------------------------------------------------ REST

async function api(path, options = {}) {
  if (!state.config) throw new Error("The page is still loading its configuration; try again in a moment.");
  const url = state.config.rest.replace(/\/$/, "") + path;
  const token = await accessToken();
  let response;
  try {
    response = await fetch(url, {
      ...options,
      headers: { "Content-Type": "application/json", Authorization: token, ...(options.headers || {}) },
    });
  } catch (error) {
    throw new Error(`Cannot reach the API at ${url}: ${error.message}`);
  }
  if (response.status === 401) {
    signOut("The API refused your sign-in; sign in again.");
    throw new Error("Not signed in (HTTP 401).");
  }
  const text = await response.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch (_) {
    body = text;
  }
  if (!response.ok) throw new Error(describeErrorBody(response.status, body));
  return body;
}

async function submit(body) {
  clearError();
  const accepted = await api("/tasks", { method: "POST", body: JSON.stringify(body) });
  selectTask(accepted.taskId);
  refreshTaskList();
  restartRuns();
}

// ------------------------------------------------------------------ rendering

function percent(progress) {
  if (!progress) return 0;
  if (progress.status === "completed") return 100;
  if (!progress.total) return 0;
  return Math.min(100, Math.floor((100 * progress.done) / progress.total));
}

function formatUsd(usd) {
  return `$${usd.toFixed(usd >= 0.01 ? 4 : 6)}`;
}

// The task's estimated AWS cost (so far, while it runs), its largest services first, and the prices used.
function costText(snapshot) {
  const cost = snapshot.cost;
  if (!cost) return "";
  const services = Object.entries(cost.byService || {})
    .sort((a, b) => b[1] - a[1])
    .map(([service, usd]) => `${service} ${formatUsd(usd)}`);
  const soFar = TERMINAL.has(snapshot.status) ? "" : " so far";
  return `cost on AWS ≈ ${formatUsd(cost.usd)}${soFar} (${services.join(", ")}) · ` +
    `${formatNumber(cost.requests)} requests, ${cost.lambdaGbSeconds} Lambda GB-s · ${cost.prices}`;
}

function formatNumber(value) {
  return typeof value === "number" ? value.toLocaleString("en-US") : "0";
}

// End to end: from submission to the last change of a finished task, or to now while it runs.
function elapsedSeconds(snapshot) {
  const end = TERMINAL.has(snapshot.status) ? Date.parse(snapshot.updatedAt) : Date.now();
  return Math.max(0, (end - Date.parse(snapshot.createdAt)) / 1000);
}

function renderElapsed() {
  const snapshot = state.snapshot;
  if (!snapshot) return;
  const seconds = elapsedSeconds(snapshot).toFixed(1);
  $("task-elapsed").textContent = TERMINAL.has(snapshot.status) ? `took ${seconds} s` : `running for ${seconds} s`;
  $("task-estimate").textContent = estimateText(snapshot);
}

// While a task runs its size is unknown until extract ends: the honest guess is the owner's last run of the
// same pipeline that succeeded (the Runs view's newest), named as such; none, no guess.
function estimateText(snapshot) {
  if (TERMINAL.has(snapshot.status)) return "";
  const earlier = runs.items.find(
    (task) => task.taskId !== snapshot.taskId && task.pipeline === snapshot.pipeline && task.status === "SUCCEEDED",
  );
  if (!earlier) return "";
  const took = runSeconds(earlier); // runs.js
  const chunks = ((earlier.phases || {}).extract || {}).total;
  const left = Math.max(0, Math.ceil(took - elapsedSeconds(snapshot)));
  return `· estimate from the last ${snapshot.pipeline} run (${chunks} chunks in ${took.toFixed(1)} s): ` +
    (left > 0 ? `about ${left} s left` : "running longer than it did");
}

setInterval(renderElapsed, 1000);

function renderSnapshot(snapshot) {
  const previous = state.snapshot;
  // Polls and pushes may cross: never let an older snapshot replace a newer one.
  if (previous && previous.taskId === snapshot.taskId && snapshot.updatedAtMs < previous.updatedAtMs) return;
  state.snapshot = snapshot;

  $("no-task").hidden = true;
  $("current").hidden = false;
  $("task-id").textContent = snapshot.taskId;
  $("task-pipeline").textContent = snapshot.scheduledBy
    ? `${snapshot.pipeline} (scheduled by ${snapshot.scheduledBy.scheduleId}, due ${snapshot.scheduledBy.scheduledTime})`
    : snapshot.pipeline;
  $("task-created").textContent = new Date(snapshot.createdAt).toLocaleString();
  const status = $("status");
  status.textContent = snapshot.status;
  status.dataset.status = snapshot.status;

  for (const phase of PHASES) {
    const progress = (snapshot.phases || {})[phase] || { done: 0, total: null, status: "pending" };
    const pct = percent(progress);
    const bar = document.querySelector(`[data-testid="bar-${phase}"]`);
    bar.setAttribute("aria-valuenow", String(pct));
    bar.dataset.percent = String(pct);
    bar.dataset.status = progress.status;
    // total is unknown until extract has finished: show motion, not a made-up fraction
    bar.classList.toggle("indeterminate", progress.status === "running" && !progress.total);
    bar.querySelector(".fill").style.width = `${pct}%`;
    // Until extract has finished nobody knows the total: say what is known instead of "N/? · 0%".
    document.querySelector(`[data-testid="phase-${phase}"]`).textContent =
      progress.total == null
        ? `${progress.done} chunks so far · ${progress.status}`
        : `${progress.done}/${progress.total} chunks · ${pct}% · ${progress.status}`;
  }

  const target = snapshot.target;
  $("task-target").textContent = target
    ? `${target.kind} table ${target.table} · ${target.mode} · commit ${target.commit}`
    : "(target unknown)";
  renderElapsed();
  const seconds = elapsedSeconds(snapshot);
  const counts = snapshot.counts || {};
  const rates = [];
  if (seconds > 0 && counts.read) rates.push(`${formatNumber(Math.round(counts.read / seconds))} rows/s read`);
  if (seconds > 0 && counts.loaded) rates.push(`${formatNumber(Math.round(counts.loaded / seconds))} rows/s loaded`);
  $("task-rate").textContent = rates.length ? `· ${rates.join(" · ")}` : "";
  $("rejects-total").textContent = `(${formatNumber(counts.rejected)} in all)`;
  updateRunRow(snapshot); // runs.js: the Runs view's row too
  dashboardSawSnapshot(snapshot); // dashboard.js: a finished run changes what its charts read
  // The Recent tasks badge follows the card, push by push, not only when the list is refreshed.
  const badge = document.querySelector(`.task-item[data-task-id="${CSS.escape(snapshot.taskId)}"] .status`);
  if (badge) {
    badge.textContent = snapshot.status;
    badge.dataset.status = snapshot.status;
  }

  for (const name of COUNTS) {
    document.querySelector(`[data-testid="count-${name}"]`).textContent = formatNumber((snapshot.counts || {})[name]);
  }

  const timings = Object.entries(snapshot.timings || {})
    .filter(([, timing]) => timing && timing.seconds != null)
    .map(([phase, timing]) => `${phase} ${timing.seconds.toFixed(1)} s`);
  $("timings").textContent = timings.length ? `timings: ${timings.join(" · ")}` : "";

  const cancel = $("cancel-task");
  cancel.hidden = !CANCELLABLE.has(snapshot.status);
  cancel.disabled = false;

  const commit = $("commit-note");
  if (snapshot.commit === "task") {
    commit.textContent = snapshot.committedAt
      ? `rows visible in the target since ${new Date(snapshot.committedAt).toLocaleString()}`
      : snapshot.status === "COMMITTING"
        ? "merging the staged rows into the target (one transaction)"
        : "rows become visible in the target all at once when the task succeeds";
  } else {
    commit.textContent = "rows are visible in the target chunk by chunk";
  }

  const correlation = $("correlation");
  correlation.textContent = snapshot.correlationId
    ? `correlation id ${snapshot.correlationId} (busline logs ${snapshot.taskId})`
    : "";
  correlation.hidden = !snapshot.correlationId;

  const cost = $("task-cost");
  cost.textContent = costText(snapshot);
  cost.hidden = !snapshot.cost;

  const retried = $("task-retried");
  const offered = snapshot.retried;
  retried.textContent = offered
    ? `offered again from the previous run: ${offered.offered.toLocaleString()} rows, ` +
      `${offered.recovered.toLocaleString()} recovered, ${offered.rejectedAgain.toLocaleString()} rejected again`
    : "";
  retried.hidden = !offered;

  const retrying = $("retrying");
  retrying.replaceChildren();
  for (const notice of snapshot.retrying || []) {
    const item = document.createElement("li");
    const where = notice.chunk == null ? notice.phase : `${notice.phase} chunk ${notice.chunk}`;
    item.textContent = `${where}: attempt ${notice.attempt} failed (${notice.error}); next try at ${new Date(notice.retryAt).toLocaleTimeString()}`;
    retrying.append(item);
  }
  retrying.hidden = retrying.childElementCount === 0;

  const taskError = $("task-error");
  if (snapshot.error) {
    const where = snapshot.error.chunk == null ? snapshot.error.phase : `${snapshot.error.phase}, chunk ${snapshot.error.chunk}`;
    taskError.textContent = `Failed in ${where}: ${snapshot.error.message}`;
    taskError.hidden = false;
  } else {
    taskError.hidden = true;
  }

  if (TERMINAL.has(snapshot.status)) {
    stopPolling();
    if (state.rejectsLoadedFor !== snapshot.taskId) {
      state.rejectsLoadedFor = snapshot.taskId;
      state.rejectTokens = [null];
      state.rejectPage = 0;
      loadRejects().catch((error) => showError(error.message));
      loadRejectGroups().catch((error) => showError(error.message));
      refreshTaskList();
    }
  }
}

async function cancelTask() {
  if (!state.taskId) return;
  clearError();
  $("cancel-task").disabled = true;
  const snapshot = await api(`/tasks/${encodeURIComponent(state.taskId)}/cancel`, { method: "POST", body: "{}" });
  renderSnapshot(snapshot);
  refreshTaskList();
}

function renderTaskList(items) {
  const list = $("task-list");
  list.replaceChildren();
  for (const task of items) {
    const item = document.createElement("li");
    item.className = "task-item";
    item.dataset.taskId = task.taskId;
    if (task.taskId === state.taskId) item.classList.add("selected");
    const button = document.createElement("button");
    button.type = "button";
    const name = document.createElement("span");
    name.className = "task-name";
    name.textContent = `${task.pipeline} · ${task.taskId.slice(0, 8)}`;
    const badge = document.createElement("span");
    badge.className = "status small";
    badge.dataset.status = task.status;
    badge.textContent = task.status;
    const when = document.createElement("span");
    when.className = "hint";
    when.textContent = new Date(task.createdAt).toLocaleTimeString();
    button.append(name, badge, when);
    button.addEventListener("click", () => selectTask(task.taskId));
    item.append(button);
    list.append(item);
  }
  $("task-list-empty").hidden = items.length > 0;
}

async function refreshTaskList() {
  try {
    const page = await api("/tasks?limit=20");
    renderTaskList(page.items || []);
  } catch (error) {
    showError(error.message);
  }
}

// ------------------------------------------------------------------ rejects

// Rejected rows by kind, most rows first, before the rows themselves.
async function loadRejectGroups() {
  const taskId = state.taskId;
  const summary = await api(`/tasks/${encodeURIComponent(taskId)}/rejects/summary`);
  if (taskId !== state.taskId) return;
  const list = $("reject-groups");
  list.replaceChildren();
  for (const group of summary.groups || []) {
    const item = document.createElement("li");
    const values = (group.values || []).map((entry) => `${entry.value} ${formatNumber(entry.rows)}`);
    item.textContent = `${group.reason} — ${formatNumber(group.rows)} rows` + (values.length ? ` · by value: ${values.join(", ")}` : "");
    list.append(item);
  }
  list.hidden = list.childElementCount === 0;
  const note = $("reject-groups-note");
  note.textContent = summary.complete ? "" : `grouped from the first ${formatNumber(summary.summarized)} kept rows`;
  note.hidden = summary.complete;
}

async function loadRejects() {
  const taskId = state.taskId;
  const token = state.rejectTokens[state.rejectPage];
  const query = new URLSearchParams({ limit: String(REJECTS_PAGE) });
  if (token) query.set("nextToken", token);
  const page = await api(`/tasks/${encodeURIComponent(taskId)}/rejects?${query}`);
  if (taskId !== state.taskId) return;
  state.rejectTokens[state.rejectPage + 1] = page.nextToken || null;

  const body = $("rejects-body");
  body.replaceChildren();
  for (const reject of page.items || []) {
    const row = document.createElement("tr");
    const data = Object.entries(reject.data || {})
      .map(([name, value]) => `${name}=${value === null ? "∅" : value}`)
      .join("  ");
    // a source read in byte ranges has no row numbers: `at` says where the row is instead
    for (const value of [reject.row === null ? reject.at : String(reject.row), reject.reason, data]) {
      const cell = document.createElement("td");
      cell.textContent = value;
      row.append(cell);
    }
    // the whole source row stays one hover away; the cell shows as much as fits on one line
    row.lastChild.title = JSON.stringify(reject.data, null, 1);
    body.append(row);
  }
  const empty = !(page.items || []).length && state.rejectPage === 0;
  $("rejects").hidden = false;
  $("rejects-empty").hidden = !empty;
  $("rejects-page").textContent = empty ? "" : `page ${state.rejectPage + 1}`;
  $("rejects-prev").disabled = state.rejectPage === 0;
  $("rejects-next").disabled = !page.nextToken;
}

// ------------------------------------------------------------------ live updates

function setLive(liveState, text) {
  const live = $("live");
  live.dataset.state = liveState;
  live.textContent = text;
}

async function connectSocket() {
  clearTimeout(state.reconnectTimer);
  if (!state.session) return;
  let socket;
  try {
    // a browser cannot set headers on a WebSocket: the $connect authorizer reads the token from the query
    const token = await accessToken();
    const url = `${state.config.websocket.replace(/\/$/, "")}/?token=${encodeURIComponent(token)}`;
    socket = new WebSocket(url);
  } catch (error) {
    if (state.session) scheduleReconnect();
    return;
  }
  state.socket = socket;
  socket.addEventListener("open", () => {
    state.socketOpen = true;
    state.reconnectDelay = RECONNECT_MIN_MS;
    setLive("live", "live");
    stopPolling();
    if (state.taskId) subscribe(state.taskId);
  });
  socket.addEventListener("message", (event) => {
    state.lastMessageAt = Date.now();
    let message;
    try {
      message = JSON.parse(event.data);
    } catch (_) {
      return;
    }
    if (!message || typeof message !== "object") return;
    if (message.taskId) {
      // snapshots carry an "error" field of their own (why a task failed); they are not channel errors
      if (message.taskId === state.taskId) renderSnapshot(message);
    } else if (message.error) {
      showError(`Progress channel: ${message.error}`);
    }
  });
  socket.addEventListener("close", () => {
    if (state.socket !== socket || !state.session) return;
    state.socketOpen = false;
    state.socket = null;
    scheduleReconnect();
  });
  // "error" is always followed by "close", which does the work
}

function scheduleReconnect() {
  const delay = state.reconnectDelay;
  state.reconnectDelay = Math.min(RECONNECT_MAX_MS, delay * 2);
  setLive("polling", `polling · reconnecting in ${Math.round(delay / 100) / 10} s`);
  startPolling();
  state.reconnectTimer = setTimeout(connectSocket, delay);
}

function subscribe(taskId) {
  state.lastMessageAt = Date.now();
  if (state.socketOpen) state.socket.send(JSON.stringify({ action: "subscribe", taskId }));
}

async function pollOnce() {
  const taskId = state.taskId;
  if (!taskId) return;
  try {
    const snapshot = await api(`/tasks/${encodeURIComponent(taskId)}`);
    if (taskId === state.taskId) renderSnapshot(snapshot);
  } catch (error) {
    showError(error.message);
  }
}

function startPolling() {
  if (state.pollTimer || !state.taskId) return;
  if (state.snapshot && TERMINAL.has(state.snapshot.status)) return;
  state.pollTimer = setInterval(pollOnce, POLL_MS);
  pollOnce();
}

function stopPolling() {
  clearInterval(state.pollTimer);
  state.pollTimer = null;
}

function watchForSilence() {
  const running = state.snapshot && !TERMINAL.has(state.snapshot.status);
  if (state.socketOpen && running && Date.now() - state.lastMessageAt > STALE_MS) {
    state.lastMessageAt = Date.now();
    pollOnce();
  }
}

function selectTask(taskId) {
  state.taskId = taskId;
  state.snapshot = null;
  state.rejectsLoadedFor = null;
  $("rejects").hidden = true;
  for (const item of document.querySelectorAll(".task-item")) {
    item.classList.toggle("selected", item.dataset.taskId === taskId);
  }
  stopPolling();
  if (state.socketOpen) {
    subscribe(taskId);
  } else {
    startPolling();
  }
  // the snapshot from subscribe may race the first REST read; renderSnapshot keeps the newest
  pollOnce();
}

// ------------------------------------------------------------------ wiring

function bindControls() {
  $("error-close").addEventListener("click", clearError);
  $("cancel-task").addEventListener("click", () => {
    cancelTask().catch((error) => {
      $("cancel-task").disabled = false;
      showError(error.message);
    });
  });
  $("run-demo").addEventListener("click", () => {
    submit({ pipeline: "flights", params: {} }).catch((error) => showError(error.message));
  });
  $("submit-spec").addEventListener("click", () => {
    let spec;
    try {
      spec = JSON.parse($("spec-input").value);
    } catch (error) {
      showError(`The spec is not valid JSON: ${error.message}`);
      return;
    }
    submit(spec).catch((error) => showError(error.message));
  });
  $("refresh-tasks").addEventListener("click", refreshTaskList);
  $("sign-out").addEventListener("click", () => signOut("Signed out."));
  $("signin-form").addEventListener("submit", (event) => {
    event.preventDefault();
    clearError();
    signIn($("signin-username").value.trim(), $("signin-password").value)
      .then(showApp)
      .catch((error) => {
        $("signin-hint").textContent = `Sign-in refused: ${error.message}`;
      });
  });
  $("rejects-next").addEventListener("click", () => {
    state.rejectPage += 1;
    loadRejects().catch((error) => showError(error.message));
  });
  $("rejects-prev").addEventListener("click", () => {
    state.rejectPage = Math.max(0, state.rejectPage - 1);
    loadRejects().catch((error) => showError(error.message));
  });
}

async function main() {
  bindControls();
  try {
    const response = await fetch("/config.json", { cache: "no-store" });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    state.config = await response.json();
  } catch (error) {
    showError(`Cannot load /config.json (the local endpoints): ${error.message}`);
    setLive("down", "offline");
    return;
  }
  document.body.dataset.ready = "true";
  if (!state.config.auth) {
    showError("This deployment has no sign-in configured (no 'auth' in /config.json).");
    return;
  }
  try {
    state.session = JSON.parse(sessionStorage.getItem(SESSION_KEY) || "null");
  } catch (_) {
    state.session = null;
  }
  if (state.session) {
    showApp();
  } else {
    showSignIn("");
  }
}

main();
