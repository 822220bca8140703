// Write with mouse, pen or finger; the picture goes to POST /predict as a PNG while you write.
// The answer comes back with a box per digit (drawn over the pad) and the 28×28 input of each.
"use strict";

const pad = document.getElementById("pad");
const ink = pad.getContext("2d");
const overlay = document.getElementById("boxes").getContext("2d");
const bars = document.getElementById("bars");
const inputs = document.getElementById("inputs");
let classes = [];
let drawing = false;
let dirty = false;
let inFlight = false;

function clearPad() {
  ink.fillStyle = "#fff";
  ink.fillRect(0, 0, pad.width, pad.height);
  overlay.clearRect(0, 0, pad.width, pad.height);
  document.getElementById("prediction").textContent = "–";
  document.getElementById("confidence").textContent = "";
  document.getElementById("status").textContent = "";
  inputs.replaceChildren();
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

function showDigits(digits) {
  overlay.clearRect(0, 0, pad.width, pad.height);
  overlay.lineWidth = 3;
  overlay.strokeStyle = "#d0582a";
  overlay.fillStyle = "#d0582a";
  overlay.font = "bold 18px system-ui, sans-serif";
  inputs.replaceChildren(...digits.map((digit) => {
    const [x0, y0, x1, y1] = digit.box;
    overlay.strokeRect(x0, y0, x1 - x0, y1 - y0);
    overlay.fillText(digit.name, x0 + 3, Math.max(18, y0 - 4));
    const item = document.createElement("li");
    const picture = document.createElement("img");
    picture.src = digit.input;
    picture.width = 56;
    picture.height = 56;
    picture.alt = `28×28 input read as ${digit.name}`;
    const caption = document.createElement("span");
    caption.textContent = `${digit.name} ${(digit.probability * 100).toFixed(1)}%`;
    item.append(picture, caption);
    return item;
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
  ink.lineWidth = 16;
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

function show(answer) {
  const status = document.getElementById("status");
  status.textContent = answer.rejected ? `not read: ${answer.reason}` : "";
  document.getElementById("prediction").textContent = answer.rejected ? "?" : answer.name;
  document.getElementById("confidence").textContent = answer.rejected ? "" : `(${(answer.probability * 100).toFixed(1)}%)`;
  showDigits(answer.digits || []);
  const single = (answer.digits || []).length <= 1 && answer.probabilities.length > 0;
  document.getElementById("bars-title").hidden = !single;
  if (single) showBars(answer.probabilities, answer.label);
  else bars.replaceChildren();
}

async function predict() {
  if (!dirty || inFlight) return;
  inFlight = true;
  dirty = false;
  try {
    const response = await fetch("/predict?inputs=true", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ image: pad.toDataURL("image/png") }),
    });
    const answer = await response.json();
    if (!response.ok) {
      document.getElementById("status").textContent = answer.error;
      return;
    }
    show(answer);
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
  if (!model.reads_numbers) {  // one item per picture: a square pad
    pad.width = pad.height = document.getElementById("boxes").width = 280;
    document.querySelector(".stack").classList.add("square");
    document.getElementById("title").textContent = "Draw an item";
  }
  const accuracy = model.test_accuracy == null ? "" : `, ${(model.test_accuracy * 100).toFixed(2)}% test accuracy`;
  document.getElementById("about").textContent = `${model.file}: ${model.dataset}${accuracy}`;
  clearPad();
});
