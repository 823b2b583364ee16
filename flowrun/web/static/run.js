// The run detail page: tabs, the Inspect Output drawers, the header actions, the inline
// checkpoint card, and live updates. The page arrives rendered at `data-seq`; the socket
// subscribes from there and every event (or reconnect) asks the server for the regions as they
// are now (`/runs/{id}/live?after_seq=`), so what is shown always equals the log: a reload or a
// dropped connection leaves no gap.
import { sharedSocket } from "./ws.js";
import { api, applyRegions, connectionBadge, newDecisionId, notice, remember, tick } from "./swap.js";

const root = document.getElementById("run-root");
const runId = root.dataset.runId;
let seq = Number(root.dataset.seq) || 0;

// tabs ---------------------------------------------------------------------------------------
const tabs = [...document.querySelectorAll('[role="tab"]')];
function selectTab(tab, focus = false) {
  for (const t of tabs) {
    const on = t === tab;
    t.setAttribute("aria-selected", String(on));
    t.tabIndex = on ? 0 : -1;
    document.getElementById(t.getAttribute("aria-controls")).hidden = !on;
  }
  if (focus) tab.focus();
  const name = tab.id.replace("tab-", "");
  history.replaceState(null, "", name === "timeline" ? location.pathname : `#${name}`);
}
for (const tab of tabs) {
  tab.addEventListener("click", () => selectTab(tab));
  tab.addEventListener("keydown", (ev) => {
    const i = tabs.indexOf(tab);
    if (ev.key === "ArrowRight") selectTab(tabs[(i + 1) % tabs.length], true);
    if (ev.key === "ArrowLeft") selectTab(tabs[(i + tabs.length - 1) % tabs.length], true);
  });
}
const initial = tabs.find((t) => `#${t.id.replace("tab-", "")}` === location.hash);
if (initial) selectTab(initial);

// clicks ---------------------------------------------------------------------------------------
document.addEventListener("click", async (ev) => {
  const target = ev.target instanceof Element ? ev.target : null;
  if (!target) return;
  const drawerButton = target.closest("[data-drawer]");
  if (drawerButton) {
    const drawer = document.getElementById(drawerButton.dataset.drawer);
    if (drawer) {
      drawer.hidden = !drawer.hidden;
      drawerButton.setAttribute("aria-expanded", String(!drawer.hidden));
    }
    return;
  }
  const decide = target.closest("[data-decide]");
  if (decide) { await decideOnCard(decide); return; }
  const action = target.closest("[data-action]");
  if (action) await headerAction(action);
});

async function decideOnCard(button) {
  const card = button.closest(".checkpoint-card");
  const error = card.querySelector(".cp-error");
  const buttons = [...card.querySelectorAll("button")];
  buttons.forEach((b) => { b.disabled = true; });
  error.hidden = true;
  try {
    await api("POST", `/api/runs/${encodeURIComponent(runId)}/decide`, {
      decision: button.dataset.decide,
      comment: card.querySelector("textarea").value,
      step: Number(card.dataset.step),
      decision_id: newDecisionId(),
    });
    schedule(0);
  } catch (err) {
    error.textContent = err.message;
    error.hidden = false;
    buttons.forEach((b) => { b.disabled = false; });
    schedule(0);
  }
}

async function headerAction(button) {
  const name = button.dataset.action;
  const body = name === "retry" ? { clone: button.dataset.clone === "1" } : {};
  button.disabled = true;
  try {
    const result = await api("POST", `/api/runs/${encodeURIComponent(runId)}/${name}`, body);
    const id = result && (result.id || (result.run && result.run.id));
    if (id && id !== runId) { location.assign(`/runs/${encodeURIComponent(id)}`); return; }
    schedule(0);
  } catch (err) {
    notice(err.message);
    button.disabled = false;
  }
}

// live -----------------------------------------------------------------------------------------
let inflight = false;
let again = false;
let timer = null;

async function refresh() {
  if (inflight) { again = true; return; }
  inflight = true;
  try {
    const body = await api("GET", `/runs/${encodeURIComponent(runId)}/live?after_seq=${seq}`);
    if (body.seq >= seq) {
      applyRegions(body.regions, { appendTo: document.getElementById("transcript") });
      seq = body.seq;
      root.dataset.seq = String(seq);
      root.dataset.status = body.status;
    }
  } catch (err) {
    if (err.status === 401) notice("Signed out: open the login link that flowrun serve printed.");
  } finally {
    inflight = false;
    if (again) { again = false; schedule(); }
  }
}

function schedule(delay = 100) {
  if (timer !== null) return;
  timer = setTimeout(() => { timer = null; refresh(); }, delay);
}

remember(document.getElementById("run-head"));
remember(document.getElementById("banners"));
remember(document.getElementById("summary"));
remember(document.getElementById("timeline"));
remember(document.getElementById("transcript"));
tick();

const socket = sharedSocket();
connectionBadge(socket);
socket.subscribe({ run_id: runId }, seq, (msg) => {
  if (typeof msg.seq !== "number" || msg.seq > seq) schedule();
}, {
  onOpen: () => schedule(0),
  onError: (msg) => notice(msg.message || "The live stream refused this run."),
});
