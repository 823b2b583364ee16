// The Flows page: the Run Flow dialog (Start stays disabled until every required parameter is
// filled; a refusal is shown in the dialog) and, once an interactive run starts, the Flow
// progress overlay following it right here.
import { mountOverlay } from "./overlay.js";
import { sharedSocket } from "./ws.js";
import { api, connectionBadge, notice } from "./swap.js";

const host = document.getElementById("overlay-host");
let overlay = null;

function follow(runId) {
  if (overlay) overlay.destroy();
  overlay = mountOverlay(host, runId, { ws: sharedSocket(), onClose: () => {
    overlay = null;
    history.replaceState(null, "", location.pathname);
  } });
  history.replaceState(null, "", `?run=${encodeURIComponent(runId)}`);
}

function requiredFilled(form) {
  return [...form.querySelectorAll("[required]")].every((field) => field.value.trim() !== "");
}

function readParams(form) {
  const params = {};
  for (const field of form.querySelectorAll('[name^="param:"]')) {
    const name = field.name.slice("param:".length);
    const raw = field.value.trim();
    if (raw === "") continue;
    const type = field.dataset.type;
    if (type === "integer") {
      if (!/^-?\d+$/.test(raw)) throw new Error(`${name} must be a whole number`);
      params[name] = Number(raw);
    } else if (type === "number") {
      if (Number.isNaN(Number(raw))) throw new Error(`${name} must be a number`);
      params[name] = Number(raw);
    } else if (type === "boolean") {
      params[name] = raw === "true";
    } else if (type === "array" || type === "object") {
      try { params[name] = JSON.parse(raw); } catch { throw new Error(`${name} must be JSON (${type})`); }
    } else {
      params[name] = field.value;
    }
  }
  return params;
}

for (const button of document.querySelectorAll("[data-run-flow]")) {
  const dialog = document.getElementById(`dialog-${button.dataset.runFlow}`);
  const form = dialog.querySelector("form");
  const start = form.querySelector("[data-start]");
  const refusal = form.querySelector(".refusal");
  const update = () => { start.disabled = !requiredFilled(form); };
  form.addEventListener("input", update);
  form.addEventListener("change", update);
  form.querySelector("[data-close]").addEventListener("click", () => dialog.close());
  button.addEventListener("click", () => {
    refusal.hidden = true;
    update();
    dialog.showModal();
  });
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (!requiredFilled(form)) return;
    refusal.hidden = true;
    start.disabled = true;
    const data = new FormData(form);
    try {
      const body = {
        flow_id: form.dataset.flow,
        params: readParams(form),
        sandbox_profile: data.get("sandbox_profile") || undefined,
        execution_mode: data.get("execution_mode") || undefined,
        checkpoint_mode: data.get("checkpoint_mode") || undefined,
        record_id: data.get("record_id") || undefined, // "Run a Flow from this plan"
      };
      const run = await api("POST", "/api/runs", body);
      const runId = run.id || (run.run && run.run.id);
      dialog.close();
      if (body.execution_mode === "background") {
        notice("Started in the background: it is a task in the Command Center.", { link: "/command-center", linkText: "Open Command Center" });
      } else {
        follow(runId);
      }
    } catch (err) {
      const wait = err.retryAfter ? ` (retry in ${err.retryAfter} s)` : "";
      refusal.textContent = `${err.message}${wait}`;
      refusal.hidden = false;
    } finally {
      update();
    }
  });
}

connectionBadge(sharedSocket());
const following = new URLSearchParams(location.search).get("run");
if (following) follow(following);
