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

// A figure (<img data-figure data-src=URL>, any view's PNG) is requested at the size its box
// is shown at, times the screen's pixel ratio, so that its text is as large as the page's; a
// box that changes size asks again. A new picture replaces the old only once it has loaded:
// a figure never shows an empty frame while a run trains.
const FIGURE_LIMITS = { width: [400, 4000], height: [300, 4000], dpi: [50, 300] };
const clamp = (value, [low, high]) => Math.min(Math.max(Math.round(value), low), high);

function figureUrl(img) {
  // The picture's own box (no border); its height follows from width and height attributes.
  if (!img.clientWidth) return null; // not laid out (hidden): asked for once it shows
  const ratio = window.devicePixelRatio || 1;
  const url = new URL(img.dataset.src, window.location.href);
  url.searchParams.set("width", clamp(img.clientWidth * ratio, FIGURE_LIMITS.width));
  url.searchParams.set("height", clamp(img.clientHeight * ratio, FIGURE_LIMITS.height));
  // 100 dpi draws 10-point text 14 pixels high: at the ratio, 14 of the page's pixels.
  url.searchParams.set("dpi", clamp(100 * ratio, FIGURE_LIMITS.dpi));
  return url.pathname + url.search;
}

// Figures loading a new picture: one load at a time each, so that a server slower to draw
// than a run to train still shows every figure moving on (to the newest once it has loaded).
const loading = new WeakSet();

function showFigure(img) {
  const url = figureUrl(img);
  if (!url || img.dataset.wanted === url) return;
  img.dataset.wanted = url;
  if (!img.getAttribute("src")) {
    img.src = url; // nothing shown yet: nothing to keep
    return;
  }
  if (loading.has(img)) return;
  loading.add(img);
  const next = new Image();
  next.src = url;
  // Decoded, the picture is in the page's image cache: setting src shows it at once. A broken
  // one is set too, so that the browser shows it as broken.
  const swap = () => {
    loading.delete(img);
    img.src = url;
    img.dataset.wanted = url;
    showFigure(img); // the newest, if the figure moved on meanwhile
  };
  next.decode().then(swap, swap);
}

const figureBoxes = new ResizeObserver((entries) => entries.forEach((e) => showFigure(e.target)));

function followFigures(root) {
  root.querySelectorAll("img[data-figure]").forEach((img) => {
    // Without a picture yet an <img> is a line of alt text: give its box the figure's shape
    // (its width and height attributes), so that its size is the one the picture will have.
    img.style.aspectRatio = `${img.getAttribute("width")} / ${img.getAttribute("height")}`;
    figureBoxes.observe(img);
    showFigure(img);
  });
}

// A fresh live part keeps the old part's <img> of each figure (same data-figure), picture and
// all, and points it at the figure's new version, which showFigure loads before it swaps.
function keepPictures(old, fresh) {
  const shown = new Map();
  old.querySelectorAll("img[data-figure]").forEach((img) => {
    if (img.getAttribute("src")) shown.set(img.dataset.figure, img);
  });
  fresh.querySelectorAll("img[data-figure]").forEach((img) => {
    const before = shown.get(img.dataset.figure);
    if (!before) return;
    before.dataset.src = img.dataset.src;
    before.alt = img.alt;
    img.replaceWith(before);
  });
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
    // A template is parsed as if without scripting: a <noscript>'s fallback pictures would be
    // elements here, and load.
    fresh.querySelectorAll("noscript").forEach((fallback) => fallback.remove());
    part.replaceWith(fresh);
    keepPictures(part, fresh); // both in this document now: moved, an image stays loaded
    followFigures(fresh);
    part = fresh;
    etag = tag;
  }
}

updateCompare();
followFigures(document);
document.querySelectorAll("[data-live-url]").forEach(follow);

// The runs list: a sweep's members fold under its row until its button unfolds them.
document.querySelectorAll("tbody.sweep").forEach((group) => {
  const button = group.querySelector("button.fold");
  const fold = (folded) => {
    group.classList.toggle("folded", folded);
    button.setAttribute("aria-expanded", String(!folded));
    button.textContent = folded ? "▸ show its runs" : "▾ hide its runs";
  };
  button.hidden = false;
  fold(true);
  button.addEventListener("click", () => fold(!group.classList.contains("folded")));
});

// The new-sweep form says what one click queues: how many runs and epochs, and about how long
// they train on this server (from the time its stored epochs took per sample and weight).
function sizeGrid(out) {
  const sizing = JSON.parse(out.dataset.sizing);
  const data = new FormData(out.closest("form"));
  const base = Object.fromEntries(data);
  const values = data.getAll("grid_values");
  const grid = [];
  data.getAll("grid_field").forEach((field, i) => {
    const separator = sizing.list_fields.includes(field) ? sizing.list_separator : ",";
    const parts = (values[i] || "").split(separator).map((v) => v.trim()).filter(Boolean);
    if (field && parts.length) grid.push([field, parts]);
  });
  let specs = [{}];
  for (const [field, parts] of grid) {
    specs = specs.flatMap((spec) => parts.map((part) => ({ ...spec, [field]: part })));
    if (specs.length > 100000) break;
  }
  let epochs = 0;
  let cost = 0;
  for (const combination of specs) {
    const spec = { ...base, ...combination };
    const runEpochs = Number(spec.epochs) || 0;
    const sizes = [sizing.inputs, ...String(spec.hidden_sizes).split(",").map(Number), sizing.classes];
    let weights = 0;
    for (let i = 1; i < sizes.length; i++) weights += sizes[i - 1] * sizes[i];
    epochs += runEpochs;
    cost += runEpochs * (Number(spec.train_size) || sizing.train_sizes[spec.dataset] || 0) * weights;
  }
  const runs = specs.length;
  let text = `Submitting queues ${runs.toLocaleString("en")} run${runs === 1 ? "" : "s"}, ` +
    `${epochs.toLocaleString("en")} epoch${epochs === 1 ? "" : "s"} in all`;
  if (sizing.seconds_per_cost && Number.isFinite(cost)) {
    text += `: about ${duration(cost * sizing.seconds_per_cost)} of training on one worker of ` +
      "this server, going by the epochs it has trained.";
  } else {
    text += ". (No time estimate yet: this server has not trained an epoch.)";
  }
  out.textContent = text;
}

function duration(seconds) {
  if (seconds < 90) return `${Math.max(1, Math.round(seconds))} s`;
  if (seconds < 90 * 60) return `${Math.round(seconds / 60)} min`;
  if (seconds < 48 * 3600) return `${(seconds / 3600).toFixed(1)} h`;
  return `${(seconds / 86400).toFixed(1)} days`;
}

const gridSize = document.getElementById("grid-size");
if (gridSize) {
  gridSize.closest("form").addEventListener("input", () => sizeGrid(gridSize));
  sizeGrid(gridSize);
}
