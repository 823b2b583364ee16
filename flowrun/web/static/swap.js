// Helpers the pages share: swap in server-rendered regions, call the JSON API, show notices,
// tick elapsed times.
//
// Regions come from the server already rendered (and, for transcript Markdown, sanitized);
// this module only places them. Inside an element marked `data-children`, children are matched
// by id: unchanged ones (same server HTML as last time) are left alone, so an open drawer, a
// checkpoint comment being typed or an expanded thinking block survives a live update.

const applied = new Map(); // id -> the server HTML last placed for that element

function isContainer(el) {
  return el.hasAttribute("data-children");
}

export function remember(root) {
  // record what the server rendered in the initial page, before anything changes it
  const walk = (el) => {
    if (isContainer(el)) { for (const child of el.children) if (child.id) walk(child); }
    else if (el.id) applied.set(el.id, el.outerHTML);
  };
  walk(root);
}

function morph(current, next) {
  if (isContainer(current) && isContainer(next) && current.tagName === next.tagName) {
    if (current.className !== next.className) current.className = next.className;
    const kids = [...next.children];
    if (kids.every((k) => k.id)) {
      const existing = new Map([...current.children].filter((c) => c.id).map((c) => [c.id, c]));
      let anchor = null;
      for (const kid of kids) {
        let el = existing.get(kid.id);
        if (el) { existing.delete(kid.id); el = morph(el, kid); }
        else { applied.set(kid.id, kid.outerHTML); el = kid; }
        const want = anchor ? anchor.nextElementSibling : current.firstElementChild;
        if (el !== want) current.insertBefore(el, want);
        anchor = el;
      }
      for (const stale of existing.values()) stale.remove();
      for (const stray of [...current.children]) if (!stray.id) stray.remove();
      return current;
    }
  }
  const html = next.outerHTML;
  if (!isContainer(next) && applied.get(current.id) === html) return current;
  applied.set(current.id, html);
  current.replaceWith(next);
  return next;
}

export function applyRegions(regions, { appendTo } = {}) {
  const tpl = document.createElement("template");
  for (const { id, html } of regions) {
    tpl.innerHTML = html;
    const next = tpl.content.getElementById ? tpl.content.getElementById(id) : tpl.content.querySelector(`[id="${CSS.escape(id)}"]`);
    if (!next) continue;
    const current = document.getElementById(id);
    if (current) morph(current, next);
    else if (appendTo) { applied.set(id, next.outerHTML); appendTo.appendChild(next); }
  }
  tick();
}

export async function api(method, path, body) {
  const init = { method, headers: { Accept: "application/json" }, credentials: "same-origin" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  let payload = null;
  try { payload = await response.json(); } catch { payload = null; }
  if (!response.ok) {
    const err = new Error((payload && payload.message) || `${response.status} ${response.statusText}`);
    err.code = payload && payload.code;
    err.status = response.status;
    err.payload = payload;
    err.retryAfter = response.headers.get("Retry-After");
    throw err;
  }
  return payload;
}

let noticeTimer = null;
export function notice(text, { link, linkText } = {}) {
  const el = document.getElementById("notice");
  if (!el) return;
  el.replaceChildren(document.createTextNode(text));
  if (link) {
    const a = document.createElement("a");
    a.href = link;
    a.textContent = linkText || link;
    el.append(" ", a);
  }
  el.hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => { el.hidden = true; }, 8000);
}

function fmt(seconds) {
  if (seconds < 60) return `${seconds.toFixed(1)}s`;
  const m = Math.floor(seconds / 60), s = Math.floor(seconds % 60);
  if (m < 60) return `${m}m ${String(s).padStart(2, "0")}s`;
  return `${Math.floor(m / 60)}h ${String(m % 60).padStart(2, "0")}m`;
}

export function tick() {
  const now = Date.now();
  for (const el of document.querySelectorAll(".ticker[data-since]")) {
    const since = Date.parse(el.dataset.since);
    if (!Number.isNaN(since)) el.textContent = fmt(Math.max(0, (now - since) / 1000));
  }
}
setInterval(tick, 1000);

export function connectionBadge(socket) {
  const el = document.getElementById("conn");
  if (!el) return;
  const show = (state, reason) => {
    el.dataset.state = state;
    el.textContent = state === "open" ? "live" : state === "closed" ? `reconnecting… ${reason || ""}`.trim() : "connecting…";
  };
  show(socket.state);
  socket.onStatus(show);
}

export function newDecisionId() {
  return (crypto.randomUUID && crypto.randomUUID()) || `d-${Date.now()}-${Math.random().toString(16).slice(2)}`;
}
