// attention_map.js -- one translation's attention weights as a grid: output characters down, source characters
// across, darker = more weight; hovering a cell shows its weight in the info box. Shared by attention.html
// (`rnnlab visualize` on a translator) and translate.html (`rnnlab export --format html` of a translator).
"use strict";

const label = (ch) => ch === " " ? "\u2423" : ch;
const colour = (w) => { const c = [255, 255, 255].map((v, k) => Math.round(v + ([8, 69, 148][k] - v) * w));
                        return "rgb(" + c.join(", ") + ")"; };

// t: {source, output, weights: one row of source weights per output character}
function drawAttention(table, info, t) {
  const src = Array.from(t.source), out = Array.from(t.output);
  table.translation = t;
  table.textContent = "";
  const head = table.insertRow();
  head.appendChild(document.createElement("th"));
  src.forEach((ch, j) => { const th = document.createElement("th"); th.textContent = label(ch); th.dataset.j = j;
                           head.appendChild(th); });
  out.forEach((ch, i) => {
    const row = table.insertRow();
    const th = document.createElement("th"); th.textContent = label(ch); th.dataset.i = i; row.appendChild(th);
    src.forEach((_, j) => {
      const w = t.weights[i][j], td = row.insertCell();
      td.className = "w"; td.dataset.i = i; td.dataset.j = j; td.dataset.w = w;
      td.style.background = colour(w); td.title = label(out[i]) + " \u2190 " + label(src[j]) + ": " + w.toFixed(4);
    });
  });
  info.className = "muted";
  info.textContent = "hover over a cell to see its weight";
}

function showAttentionCell(table, info, td) {
  const t = table.translation, i = +td.dataset.i, j = +td.dataset.j;
  table.querySelectorAll(".hover, th.on").forEach((e) => e.classList.remove("hover", "on"));
  td.classList.add("hover");
  table.querySelectorAll('th[data-i="' + i + '"], th[data-j="' + j + '"]').forEach((e) => e.classList.add("on"));
  info.className = "";
  info.textContent = "";
  const line = (text) => { const div = document.createElement("div"); div.textContent = text; info.appendChild(div); };
  line("output " + (i + 1) + " '" + Array.from(t.output)[i] + "' \u2190 source " + (j + 1) + " '" + Array.from(t.source)[j] + "'");
  const weight = document.createElement("div");
  weight.id = "weight"; weight.textContent = "weight " + (+td.dataset.w).toFixed(4);
  info.appendChild(weight);
}

function watchAttention(table, info) {
  table.addEventListener("mouseover", (e) => { if (e.target.classList.contains("w")) showAttentionCell(table, info, e.target); });
}
