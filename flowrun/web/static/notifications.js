// The Notifications page: mark read (one, or all), the "Enable desktop notifications" button
// (Notification.requestPermission), and the list as the server renders it whenever the socket
// says something changed.
import { api, applyRegions, connectionBadge, notice, remember } from "./swap.js";
import { sharedSocket } from "./ws.js";
import { setUnread } from "./notify.js";

remember(document.getElementById("notifications"));
connectionBadge(sharedSocket());

async function refresh() {
  try {
    const body = await api("GET", "/notifications?part=list");
    applyRegions(body.regions);
  } catch { /* the next notification or reconnect tries again */ }
}

async function mark(body, button) {
  if (button) button.disabled = true;
  try {
    const box = await api("POST", "/api/notifications/read", body);
    setUnread(box.unread);
    await refresh();
  } catch (err) {
    notice(err.message);
    if (button) button.disabled = false;
  }
}

document.addEventListener("click", (ev) => {
  const target = ev.target instanceof Element ? ev.target : null;
  if (!target) return;
  const one = target.closest("[data-mark]");
  if (one) { mark({ ids: [one.dataset.mark] }, one); return; }
  const all = target.closest("[data-mark-all]");
  if (all) mark({ all: true }, all);
});
document.addEventListener("flowrun:notification", () => refresh());

// desktop notifications -------------------------------------------------------------------------
const enable = document.getElementById("enable-desktop");
const state = document.getElementById("desktop-state");

function showPermission() {
  if (!("Notification" in window)) {
    state.textContent = "This browser has no desktop notifications.";
    return;
  }
  const permission = Notification.permission;
  enable.hidden = permission !== "default";
  state.textContent = permission === "granted" ? "Desktop notifications are on."
    : permission === "denied" ? "Desktop notifications are blocked in this browser's site settings." : "";
}

enable.addEventListener("click", async () => {
  enable.disabled = true;
  try { await Notification.requestPermission(); } finally {
    enable.disabled = false;
    showPermission();
  }
});
showPermission();
