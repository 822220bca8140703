// Draw with mouse, pen or finger; the picture goes to POST /predict as a PNG while you draw.
"use strict";

const pad = document.getElementById("pad");
const ink = pad.getContext("2d");
const bars = document.getElementById("bars");
let classes = [];
let drawing = false;
let dirty = false;
let inFlight = false;

function clearPad() {
  ink.fillStyle = "#fff";
  ink.fillRect(0, 0, pad.width, pad.height);
  document.getElementById("prediction").textContent = "–";
  document.getElementById("confidence").textContent = "";
  document.getElementById("status").textContent = "";
  showBars(classes.map(() => 0), -1);
  dirty = false;
}

function showBars(probabilities, best) {
  bars.replaceChildren(...classes.map((name, i) => {
    const row = document.createElement("li");
    row.className = i === best ? "best" : "";
    row.dataset.label = name;
    const label = document.createElement("span");
    label.textContent = name;
    const track = document.createElement("span");
    track.className = "track";
    const fill = document.createElement("span");
    fill.className = "fill";
    fill.style.width = `${(probabilities[i] * 100).toFixed(1)}%`;
    fill.style.display = "block";
    track.append(fill);
    const value = document.createElement("span");
    value.className = "value";
    value.textContent = `${(probabilities[i] * 100).toFixed(1)}%`;
    row.append(label, track, value);
    return row;
  }));
}

function point(event) {
  const box = pad.getBoundingClientRect();
  return [(event.clientX - box.left) * pad.width / box.width, (event.clientY - box.top) * pad.height / box.height];
}

pad.addEventListener("pointerdown", (event) => {
  drawing = true;
  pad.setPointerCapture(event.pointerId);
  ink.beginPath();
  ink.moveTo(...point(event));
});
pad.addEventListener("pointermove", (event) => {
  if (!drawing) return;
  ink.lineWidth = 18;
  ink.lineCap = "round";
  ink.lineJoin = "round";
  ink.strokeStyle = "#000";
  ink.lineTo(...point(event));
  ink.stroke();
  dirty = true;
});
for (const type of ["pointerup", "pointercancel", "pointerleave"]) {
  pad.addEventListener(type, () => { drawing = false; predict(); });
}
document.getElementById("clear").addEventListener("click", clearPad);

async function predict() {
  if (!dirty || inFlight) return;
  inFlight = true;
  dirty = false;
  try {
    const response = await fetch("/predict", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ image: pad.toDataURL("image/png") }),
    });
    const answer = await response.json();
    if (!response.ok) {
      document.getElementById("status").textContent = answer.error;
      return;
    }
    document.getElementById("status").textContent = "";
    document.getElementById("prediction").textContent = answer.name;
    document.getElementById("confidence").textContent = `(${(answer.probability * 100).toFixed(1)}%)`;
    showBars(answer.probabilities, answer.label);
  } catch (error) {
    document.getElementById("status").textContent = `no answer from the service: ${error}`;
  } finally {
    inFlight = false;
    if (dirty) predict();
  }
}

setInterval(() => { if (drawing) predict(); }, 250);  // live while the stroke goes on

fetch("/model").then((r) => r.json()).then((model) => {
  classes = model.classes;
  const accuracy = model.test_accuracy == null ? "" : `, ${(model.test_accuracy * 100).toFixed(2)}% test accuracy`;
  document.getElementById("about").textContent = `${model.file}: ${model.dataset}${accuracy}`;
  clearPad();
});
