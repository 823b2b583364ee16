// On every page: the unread badge in the nav, kept live over /ws (`subscribe {topic:
// "notifications"}`), and a desktop notification (the browser's Notification API, once the
// person allowed it) for each new one; clicking it opens the run. The server sends only
// notifications about runs this person may see. Pages that list notifications listen for the
// `flowrun:notification` event this module dispatches on `document`.
import { sharedSocket } from "./ws.js";

const badge = document.getElementById("unread-badge");

export function setUnread(count) {
  if (!badge) return;
  badge.textContent = String(count);
  badge.hidden = count <= 0;
  badge.parentElement.setAttribute("aria-label", `Notifications, ${count} unread`);
}

export function desktopAllowed() {
  return "Notification" in window && Notification.permission === "granted";
}

function popup(note) {
  if (!desktopAllowed()) return;
  const shown = new Notification(note.title, { body: note.message, tag: note.id });
  shown.addEventListener("click", () => {
    window.focus();
    location.assign(`/runs/${encodeURIComponent(note.run_id)}`);
    shown.close();
  });
}

const socket = sharedSocket();
socket.subscribe({ topic: "notifications" }, 0, (msg) => {
  setUnread(msg.unread);
  if (msg.notification) popup(msg.notification);
  document.dispatchEvent(new CustomEvent("flowrun:notification", { detail: msg }));
});
