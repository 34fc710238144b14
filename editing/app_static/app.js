"use strict";
// The browser editor's page: builds the sliders from /api/state, sends the moved ones to /api/edit
// ("preview" while a slider moves, the chosen editor when it is let go) and shows the returned grid.

const ANGLES = ["pitch", "yaw", "roll"];
let sliders = [];          // [{name, min, max, step, value}] of the current face
let touched = {};          // slider name -> absolute value the user asked for
let busy = false;          // one request to /api/edit at a time
let pending = null;        // the latest request waiting for it
let version = 0;

const $ = (id) => document.getElementById(id);

function say(text, info) {
  $("message").textContent = text || "";
  $("message").className = info ? "info" : "";
}

async function call(url, options) {
  const response = await fetch(url, options);
  let payload;
  try { payload = await response.json(); } catch (error) { payload = {error: `server error (${response.status})`}; }
  if (!response.ok) throw new Error(payload.error || `server error (${response.status})`);
  return payload;
}

function postJson(url, body) {
  return call(url, {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
}

function editor() {
  return document.querySelector("input[name=editor]:checked").value;
}

function format(name, value) {
  return ANGLES.includes(name) ? `${value.toFixed(1)}°` : value.toFixed(3);
}

function showState(state) {
  $("model").textContent = `${state.generator} ${state.resolution}² · ${state.face || "no face"} · ${state.regressor}`;
  sliders = state.sliders;
  touched = {};
  const box = $("sliders");
  box.querySelectorAll(".slider").forEach((row) => row.remove());
  for (const entry of sliders) {
    const row = document.createElement("div");
    row.className = "slider";
    row.id = `row-${entry.name}`;
    const label = document.createElement("span");
    label.textContent = entry.name.replace("_", " ");
    const input = document.createElement("input");
    Object.assign(input, {type: "range", min: entry.min, max: entry.max, step: entry.step, value: entry.value});
    input.id = `slider-${entry.name}`;
    input.dataset.name = entry.name;
    const output = document.createElement("output");
    output.textContent = format(entry.name, entry.value);
    input.addEventListener("input", () => move(entry.name, input, output, "preview"));
    input.addEventListener("change", () => move(entry.name, input, output, editor()));
    row.append(label, input, output);
    box.append(row);
  }
  if (!state.presets) say("expression presets need a 68-landmark model; this one has none", true);
}

function setSlider(name, value) {
  const input = $(`slider-${name}`);
  if (!input) return;
  input.value = value;
  input.parentElement.querySelector("output").textContent = format(name, value);
  input.parentElement.classList.add("touched");
  touched[name] = value;
}

function move(name, input, output, which) {
  const value = parseFloat(input.value);
  output.textContent = format(name, value);
  input.parentElement.classList.add("touched");
  touched[name] = value;
  request(which);
}

function request(which) {
  pending = {changes: {...touched}, editor: which, detect: $("detect").checked};
  if (!busy) next();
}

async function next() {
  if (!pending) return;
  const body = pending;
  pending = null;
  busy = true;
  $("view").dataset.state = "busy";
  $("status").textContent = body.editor === "preview" ? "preview…" : `${body.editor} editor…`;
  try {
    const view = await postJson("/api/edit", body);
    version += 1;
    const image = $("view");
    image.src = view.image;
    image.dataset.version = String(version);
    image.dataset.editor = view.editor;
    image.dataset.q = JSON.stringify(view.q);
    const found = view.detected === null ? "" : (view.detected ? " · face detected" : " · no face detected");
    $("status").textContent = `${view.editor}: ${(1000 * view.seconds).toFixed(0)} ms on the server${found}` +
      ` · yaw ${(view.q.yaw * 180 / Math.PI).toFixed(1)}°`;
    say(view.note, true);
  } catch (error) {
    say(error.message);
  } finally {
    busy = false;
    $("view").dataset.state = pending ? "busy" : "ready";
    next();
  }
}

async function chooseFace(promise) {
  try {
    showState(await promise);
    request(editor());
  } catch (error) {
    say(error.message);
  }
}

async function upload(url, file) {
  return call(url, {method: "POST", body: await file.arrayBuffer(), headers: {"Content-Type": "application/octet-stream"}});
}

function wire() {
  $("load-seed").addEventListener("click", () => chooseFace(postJson("/api/face", {seed: $("seed").value})));
  $("random").addEventListener("click", () => chooseFace(postJson("/api/face", {random: true})));
  $("latent-file").addEventListener("change", (event) => {
    const file = event.target.files[0];
    if (file) chooseFace(upload(`/api/face/upload?name=${encodeURIComponent(file.name)}`, file));
    event.target.value = "";
  });
  $("load-regressor").addEventListener("click", () => chooseFace(postJson("/api/regressor", {path: $("regressor-path").value})));
  $("frontal").addEventListener("click", () => { ANGLES.forEach((name) => setSlider(name, 0)); request(editor()); });
  $("neutral").addEventListener("click", () => {
    sliders.filter((entry) => entry.name.startsWith("alpha.")).forEach((entry) => setSlider(entry.name, 0));
    request(editor());
  });
  $("reset").addEventListener("click", () => chooseFace(call("/api/state")));
  $("photo-file").addEventListener("change", async (event) => {
    const file = event.target.files[0];
    event.target.value = "";
    if (!file) return;
    const parts = ["rotation", "expression"].filter((part) => $(`transfer-${part}`).checked);
    try {
      const answer = await upload(`/api/transfer?parts=${parts.join(",")}`, file);
      Object.entries(answer.changes).forEach(([name, value]) => setSlider(name, value));
      request(editor());
    } catch (error) {
      say(error.message);
    }
  });
  for (const link of [$("download-npz"), $("download-png")]) {
    link.addEventListener("click", (event) => {
      if (version === 0) { event.preventDefault(); say("nothing edited yet; move a slider first"); }
    });
  }
}

window.addEventListener("DOMContentLoaded", () => {
  wire();
  chooseFace(call("/api/state"));
});
