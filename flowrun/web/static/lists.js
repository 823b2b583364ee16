// Sessions and the Command Center: re-render the list when the socket says something changed.
import { sharedSocket } from "./ws.js";
import { api, applyRegions, connectionBadge, remember } from "./swap.js";

const page = document.body.dataset.page;
const [topic, part, regionId] = page === "command-center" ? ["tasks", "tasks", "tasks"] : ["sessions", "rows", "session-rows"];
remember(document.getElementById(regionId));

let inflight = false;
let again = false;
let timer = null;

async function refresh() {
  if (inflight) { again = true; return; }
  inflight = true;
  try {
    const body = await api("GET", `${location.pathname}?part=${part}`);
    applyRegions(body.regions);
  } catch { /* the next event or reconnect tries again */ } finally {
    inflight = false;
    if (again) { again = false; schedule(); }
  }
}

function schedule(delay = 150) {
  if (timer !== null) return;
  timer = setTimeout(() => { timer = null; refresh(); }, delay);
}

const socket = sharedSocket();
connectionBadge(socket);
socket.subscribe({ topic }, 0, () => schedule(), { onOpen: () => schedule(0) });
