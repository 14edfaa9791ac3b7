// decaylab's pages work without this file; it adds confirmations, auto-submitting filters,
// the compare button's state and live updates. No inline handlers: a CSP can forbid them.
"use strict";

// A button with data-confirm asks before its form is submitted.
document.addEventListener("submit", (event) => {
  const button = event.submitter;
  if (button && button.dataset.confirm && !window.confirm(button.dataset.confirm)) {
    event.preventDefault();
  }
});

// Selects with data-autosubmit apply at once.
document.addEventListener("change", (event) => {
  const target = event.target;
  if (target.matches("[data-autosubmit]") && target.form) {
    target.form.requestSubmit();
  }
  if (target.matches("#compare-form input[name=runs]")) {
    updateCompare();
  }
});

// The list's Compare button needs two ticked runs; say how many are ticked.
function updateCompare() {
  const button = document.getElementById("compare");
  if (!button) return;
  const ticked = document.querySelectorAll("#compare-form input[name=runs]:checked").length;
  button.disabled = ticked < Number(button.dataset.minTicked);
  document.getElementById("ticked").textContent =
    ticked ? `${ticked} ticked` : "tick two or more runs to compare them";
}

// A live part (data-live-url) polls its own URL. The server tags each answer (ETag) and says
// 304 while it is unchanged; the browser's cache turns that back into the same body and tag,
// and only a new tag (a run moved on) replaces the part.
const POLL_MS = 2000;

async function follow(part) {
  let etag = null;
  while (part.dataset.live === "true") {
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    let response;
    try {
      response = await fetch(part.dataset.liveUrl, { cache: "no-cache" });
    } catch {
      continue; // the server restarting: try again at the next tick
    }
    const tag = response.headers.get("ETag");
    if (!response.ok || tag === etag) continue;
    const template = document.createElement("template");
    template.innerHTML = (await response.text()).trim();
    const fresh = template.content.firstElementChild;
    part.replaceWith(fresh); // same figure URLs: the browser keeps their images
    part = fresh;
    etag = tag;
  }
}

updateCompare();
document.querySelectorAll("[data-live-url]").forEach(follow);
