// The Schedules page: Pause and Resume through the JSON API, then the list as the server renders
// it now (the same template), so what is shown is what the store holds.
import { api, applyRegions, notice, remember } from "./swap.js";

remember(document.getElementById("schedules"));

async function refresh() {
  const body = await api("GET", "/schedules?part=list");
  applyRegions(body.regions);
}

document.addEventListener("click", async (ev) => {
  const button = ev.target instanceof Element ? ev.target.closest("[data-schedule]") : null;
  if (!button) return;
  button.disabled = true;
  try {
    await api("POST", `/api/schedules/${encodeURIComponent(button.dataset.schedule)}/${button.dataset.op}`);
    await refresh();
  } catch (err) {
    notice(err.message);
    button.disabled = false;
  }
});
