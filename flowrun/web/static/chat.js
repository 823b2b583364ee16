// The chat page: the conversation with the chat agent, and the Flow progress overlay of each run
// it started. The page arrives rendered at `data-seq`; the socket subscribes to the chat's log
// from there. A reply's streamed pieces are shown as plain text the moment they arrive; when a
// message is complete (or a tool ran, or a note came) the server renders the conversation again
// (`/chats/{id}/live`, Markdown sanitized on the server) and the page swaps it in. A run linked to
// the chat gets its overlay at once; decisions taken in it come back as notes in the conversation.
import { sharedSocket } from "./ws.js";
import { mountOverlay } from "./overlay.js";
import { api, applyRegions, connectionBadge, notice, remember } from "./swap.js";

const root = document.getElementById("chat-root");
const chatId = root.dataset.chatId;
const list = document.getElementById("chat-messages");
const overlays = document.getElementById("chat-overlays");
const form = document.getElementById("chat-form");
const input = document.getElementById("chat-input");
const errorBox = document.getElementById("chat-error");
const socket = sharedSocket();
const mounted = new Map();
connectionBadge(socket);
remember(root);

function mount(runId) {
  if (mounted.has(runId)) return;
  let holder = overlays.querySelector(`[data-run-id="${CSS.escape(runId)}"]`);
  if (!holder) {
    holder = document.createElement("div");
    holder.className = "chat-overlay";
    holder.dataset.runId = runId;
    overlays.prepend(holder);
  }
  mounted.set(runId, mountOverlay(holder, runId, { ws: socket }));
  overlays.hidden = false;
}
for (const holder of overlays.querySelectorAll("[data-run-id]")) mount(holder.dataset.runId);

let busy = false;
let again = false;
async function refresh() {
  if (busy) { again = true; return; }
  busy = true;
  try {
    const body = await api("GET", `/chats/${encodeURIComponent(chatId)}/live`);
    applyRegions(body.regions);
    for (const runId of body.runs) mount(runId);
    list.scrollTop = list.scrollHeight;
  } catch (err) {
    notice(`Could not refresh the conversation: ${err.message}`);
  } finally {
    busy = false;
    if (again) { again = false; refresh(); }
  }
}

function streamPiece(messageId, text) {
  const id = `msg-${messageId}`;
  let item = document.getElementById(id);
  if (!item) {
    item = document.createElement("li");
    item.id = id;
    item.className = "msg msg-assistant streaming";
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = "agent";
    const body = document.createElement("div");
    body.className = "body chat-stream";
    item.append(who, body);
    list.append(item);
  }
  let body = item.querySelector(".body.chat-stream");
  if (!body) {  // a rendered partial reply: go on in plain text below it
    body = document.createElement("div");
    body.className = "body chat-stream";
    item.append(body);
  }
  body.append(document.createTextNode(text));
  list.scrollTop = list.scrollHeight;
}

socket.subscribe({ chat_id: chatId }, Number(root.dataset.seq) || 0, (msg) => {
  const data = msg.event && msg.event.data;
  if (!data) return;
  if (data.type === "chat_delta") streamPiece(data.message_id, data.text);
  else if (data.type === "chat_run") { mount(data.run_id); refresh(); }
  else if (data.type === "chat_message" || data.type === "chat_tool") refresh();
}, { onOpen: refresh, onError: (err) => notice(err.message || err.code) });

form.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const text = input.value;
  errorBox.hidden = true;
  try {
    await api("POST", `/api/chats/${encodeURIComponent(chatId)}/messages`, { text });
    input.value = "";
  } catch (err) {
    errorBox.textContent = err.message;
    errorBox.hidden = false;
  }
  input.focus();
});

input.addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
    ev.preventDefault();
    form.requestSubmit();
  }
});
