// The Integrations page: connect GitHub with a pasted token (checked by the server against
// GitHub, stored 0600, never shown again) or disconnect it. The token field is cleared whatever
// the answer; on success the page reloads, or goes back to the blocked run that sent us here.
import { api, notice } from "./swap.js";

const form = document.getElementById("github-connect");
const back = document.getElementById("back-run");

function showError(text) {
  const el = form.querySelector(".form-error");
  el.textContent = text;
  el.hidden = !text;
}

function done() {
  if (back && back.dataset.runId) location.assign(`/runs/${encodeURIComponent(back.dataset.runId)}`);
  else location.reload();
}

if (form) {
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const field = form.elements.namedItem("token");
    const token = field.value.trim();
    field.value = "";
    if (!token) { showError("Paste a token first."); return; }
    const buttons = [...form.querySelectorAll("button")];
    buttons.forEach((b) => { b.disabled = true; });
    showError("");
    try {
      await api("POST", "/api/integrations/github", { token, connect_for: form.elements.namedItem("connect_for").value });
      done();
    } catch (err) {
      showError(err.message);
      buttons.forEach((b) => { b.disabled = false; });
    }
  });
  form.addEventListener("click", async (ev) => {
    const button = ev.target instanceof Element ? ev.target.closest("[data-disconnect]") : null;
    if (!button) return;
    button.disabled = true;
    try {
      await api("POST", "/api/integrations/github/disconnect", { connect_for: button.dataset.disconnect });
      location.reload();
    } catch (err) {
      notice(err.message);
      button.disabled = false;
    }
  });
}
