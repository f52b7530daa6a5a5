"use strict";
// The named pipelines (GET /pipelines): pick one, edit its params (prefilled with the defaults its JSON
// Schema declares), run it. The API checks the params and names a bad one; the page shows that answer.
// Uses app.js's globals: api, $, state, submit, showError.

const namedPipelines = { items: [] };

function defaultParams(schema) {
  const params = {};
  for (const [name, prop] of Object.entries((schema && schema.properties) || {})) {
    if (prop && prop.default !== undefined && prop.default !== null) params[name] = prop.default;
  }
  return params;
}

function showPipeline(name) {
  const pipeline = namedPipelines.items.find((item) => item.name === name);
  $("pipeline-description").textContent = pipeline ? pipeline.description : "";
  $("pipeline-params").value = pipeline ? JSON.stringify(defaultParams(pipeline.params), null, 2) : "{}";
}

async function loadPipelines() {
  if (!state.session) return;
  const listed = await api("/pipelines");
  namedPipelines.items = listed.items || [];
  const select = $("pipeline-name");
  select.replaceChildren(
    ...namedPipelines.items.map((item) => {
      const option = document.createElement("option");
      option.value = item.name;
      option.textContent = item.name;
      return option;
    }),
  );
  showPipeline(select.value);
}

$("pipeline-name").addEventListener("change", (event) => showPipeline(event.target.value));
// The form's params, or null (the page has said why) when they are not JSON.
function formParams() {
  try {
    return JSON.parse($("pipeline-params").value || "{}");
  } catch (error) {
    showError(`The params are not valid JSON: ${error.message}`);
    return null;
  }
}

$("submit-pipeline").addEventListener("click", () => {
  const params = formParams();
  if (params === null) return;
  submit({ pipeline: $("pipeline-name").value, params }).catch((error) => showError(error.message));
});
