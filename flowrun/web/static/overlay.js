// The Flow progress overlay: a self-contained component any page can mount (the Flows page
// after Start Flow; the chat panel).
//
//   import { mountOverlay } from "/static/overlay.js";
//   const overlay = mountOverlay(element, runId, { ws, onClose });
//   overlay.destroy();
//
// `element` is emptied and filled with the overlay; `ws` is a FlowSocket (./ws.js) to share,
// or omitted for the page's shared one. The run's steps update live. When the run pauses at a
// checkpoint a modal dialog opens with the message, the previous step's summary, the completed
// step's artifact links, a comment box and Approve & Continue / Reject / Skip Step. Focus moves
// into the dialog; Esc closes it without deciding ("Review checkpoint" reopens it). A decision
// made elsewhere (another tab, the CLI, MCP) closes the dialog and says who decided.
//
// Data comes from GET /runs/{id}/progress (plain JSON) and decisions go to
// POST /api/runs/{id}/decide. Everything is built with textContent: no markup from run data.
import { sharedSocket } from "./ws.js";

const ICONS = { pending: "○", running: "◌", completed: "✓", failed: "✕", blocked: "‖", skipped: "→", cancelled: "⊘" };
const LABELS = { interrupted: "Interrupted" };
const VERBS = { approve: "Approved", reject: "Rejected", skip: "Skipped" };

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

function statusLabel(status) {
  return LABELS[status] || status.charAt(0).toUpperCase() + status.slice(1);
}

function decisionText(d) {
  const who = d.auto ? "automatically" : `by ${d.actor}`;
  return `${VERBS[d.kind] || d.kind} ${who} at step ${d.step + 1} “${d.step_name}”${d.comment ? `: ${d.comment}` : ""}`;
}

export function mountOverlay(element, runId, { ws, onClose } = {}) {
  const socket = ws || sharedSocket();
  const uid = `fro-${Math.random().toString(36).slice(2, 8)}`;
  let state = null;
  let dismissedKey = null;
  let openKey = null;
  let inflight = false;
  let again = false;
  let destroyed = false;

  const title = el("strong", { class: "fro-title", text: "Flow run" });
  const badge = el("span", { class: "badge" });
  const close = el("button", { type: "button", class: "fro-close", "aria-label": "Close progress", text: "×" });
  const steps = el("ol", { class: "fro-steps", "aria-live": "polite" });
  const note = el("p", { class: "fro-note", role: "status" });
  const record = el("p", { class: "fro-record", hidden: true });
  const review = el("button", { type: "button", class: "btn primary small", hidden: true, text: "Review checkpoint" });
  const open = el("a", { class: "btn small secondary", href: `/runs/${encodeURIComponent(runId)}`, text: "Open run page" });

  const dTitle = el("h2", { id: `${uid}-title` });
  const dMessage = el("p", { class: "fro-message" });
  const dPrevious = el("div", { class: "fro-previous" });
  const dArtifacts = el("ul", { class: "fro-artifacts" });
  const dComment = el("textarea", { rows: 3, id: `${uid}-comment` });
  const dError = el("p", { class: "fro-error", role: "alert", hidden: true });
  const approve = el("button", { type: "button", class: "btn primary", text: "Approve & Continue" });
  const reject = el("button", { type: "button", class: "btn danger", text: "Reject" });
  const skip = el("button", { type: "button", class: "btn secondary", text: "Skip Step" });
  const dialog = el("dialog", { class: "fro-dialog", "aria-labelledby": `${uid}-title` },
    dTitle, dMessage, dPrevious, dArtifacts,
    el("label", { for: `${uid}-comment`, class: "fro-label", text: "Comment (optional, recorded with the decision)" }),
    dComment, dError, el("div", { class: "fro-buttons" }, approve, reject, skip),
    el("p", { class: "dim fro-hint", text: "Esc closes this without deciding." }));

  const panel = el("section", { class: "fro", "aria-label": "Flow progress" },
    el("header", { class: "fro-head" }, title, badge, close),
    record, steps, note, el("div", { class: "fro-actions" }, review, open), dialog);
  element.replaceChildren(panel);

  function renderSteps() {
    steps.replaceChildren(...state.steps.map((s) => el("li", { class: `fro-step step-${s.status}`, "data-status": s.status },
      el("span", { class: `icon icon-${s.status}`, "aria-hidden": "true", text: s.status === "running" ? "" : ICONS[s.status] || "•" }),
      el("span", { class: "fro-name", text: `${s.index + 1}. ${s.name}` }),
      el("span", { class: "skill", text: `/${s.skill}` }),
      el("span", { class: `badge step-${s.status}`, text: s.status }))));
  }

  function fillDialog(cp) {
    dTitle.textContent = `Checkpoint before step ${cp.step + 1}: ${cp.step_name}`;
    dMessage.textContent = cp.message;
    dPrevious.replaceChildren();
    if (cp.previous_summary) {
      dPrevious.append(el("span", { class: "dim", text: "The completed step reported:" }), el("p", { text: cp.previous_summary }));
    }
    dArtifacts.replaceChildren(...cp.artifacts.map((a) => el("li", {},
      a.href ? el("a", { href: a.href, target: "_blank", rel: "noopener noreferrer nofollow", text: a.label })
        : el("span", {}, `${a.label}: `, el("code", { text: a.ref })))));
    dArtifacts.hidden = cp.artifacts.length === 0;
    dComment.value = "";
    dError.hidden = true;
    for (const b of [approve, reject, skip]) b.disabled = !state.can_decide;
  }

  function showDialog() {
    if (!dialog.open) dialog.showModal();
    approve.focus();
  }

  function closeDialog() {
    if (dialog.open) dialog.close();
  }

  function render() {
    title.textContent = state.flow_name;
    if (state.record) { // the plan or initiative it runs against, by its title
      const kind = state.record.kind.charAt(0).toUpperCase() + state.record.kind.slice(1);
      record.replaceChildren(`${kind}: `, el("a", { href: state.record.url, text: state.record.title }));
    }
    record.hidden = !state.record;
    badge.className = `badge status-${state.status}`;
    badge.textContent = statusLabel(state.status);
    renderSteps();
    const cp = state.checkpoint;
    if (cp) {
      if (openKey !== cp.key) { openKey = cp.key; fillDialog(cp); }
      review.hidden = false;
      if (dismissedKey !== cp.key) showDialog();
    } else {
      review.hidden = true;
      if (openKey !== null) {
        closeDialog();
        openKey = null;
      }
    }
    const lines = [];
    if (state.decision) lines.push(decisionText(state.decision));
    if (state.error && state.status !== "rejected") lines.push(state.error);
    note.textContent = lines.join(" · ");
  }

  async function refresh() {
    if (inflight) { again = true; return; }
    inflight = true;
    try {
      const response = await fetch(`/runs/${encodeURIComponent(runId)}/progress`, { credentials: "same-origin", headers: { Accept: "application/json" } });
      const body = await response.json();
      if (!response.ok) { note.textContent = body.message || `error ${response.status}`; return; }
      if (destroyed) return;
      if (!state || body.seq >= state.seq) { state = body; render(); }
    } catch (err) {
      note.textContent = `Could not load the run: ${err.message}`;
    } finally {
      inflight = false;
      if (again && !destroyed) { again = false; refresh(); }
    }
  }

  async function decide(kind) {
    if (!state || !state.checkpoint) return;
    const cp = state.checkpoint;
    for (const b of [approve, reject, skip]) b.disabled = true;
    dError.hidden = true;
    try {
      const response = await fetch(`/api/runs/${encodeURIComponent(runId)}/decide`, {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify({ decision: kind, comment: dComment.value, step: cp.step,
          decision_id: (crypto.randomUUID && crypto.randomUUID()) || `d-${Date.now()}` }),
      });
      if (!response.ok) {
        let message = `error ${response.status}`;
        try { message = (await response.json()).message || message; } catch { /* not JSON */ }
        throw new Error(message);
      }
      closeDialog();
      dismissedKey = cp.key;
    } catch (err) {
      dError.textContent = err.message;
      dError.hidden = false;
      for (const b of [approve, reject, skip]) b.disabled = !state.can_decide;
    }
    refresh();
  }

  approve.addEventListener("click", () => decide("approve"));
  reject.addEventListener("click", () => decide("reject"));
  skip.addEventListener("click", () => decide("skip"));
  dialog.addEventListener("cancel", () => { // Esc: close without deciding
    if (state && state.checkpoint) dismissedKey = state.checkpoint.key;
  });
  review.addEventListener("click", () => { dismissedKey = null; if (state && state.checkpoint) showDialog(); });
  close.addEventListener("click", () => { overlay.destroy(); if (onClose) onClose(); });

  let sub = null;
  refresh().then(() => {
    if (destroyed) return;
    sub = socket.subscribe({ run_id: runId }, state ? state.seq : 0, () => refresh(), { onOpen: () => refresh() });
  });

  const overlay = {
    refresh,
    destroy() {
      destroyed = true;
      if (sub) sub.close();
      closeDialog();
      element.replaceChildren();
    },
  };
  return overlay;
}
