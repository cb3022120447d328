// stashdb ui: the pages' few scripts. Served from the package (CSP: script-src 'self').
"use strict";

const POLL_MS = 1500;

function data(id) {
  const node = document.getElementById(id);
  return node ? JSON.parse(node.textContent) : null;
}

function kb(bytes) {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let n = bytes, i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return (i ? n.toFixed(1) : n) + " " + units[i];
}

// The graph follows new snapshots without a reload: poll the store's state,
// and when it moved, fetch this page's rows again and swap them in.
function followHistory() {
  const live = document.getElementById("live");
  const body = document.querySelector("#commits tbody");
  if (!live || !body) return;
  live.classList.add("on");
  let state = document.body.dataset.state;
  let busy = false;
  window.stashdbUpdates = 0;
  setInterval(async () => {
    if (busy) return;
    busy = true;
    try {
      const now = (await (await fetch("/api/state", { credentials: "same-origin" })).json()).state;
      if (now !== state) {
        const query = new URLSearchParams(location.search);
        query.set("fragment", "1");
        const rows = await fetch("/?" + query.toString(), { credentials: "same-origin" });
        if (rows.ok) {
          body.innerHTML = await rows.text();
          state = now;
          document.body.dataset.state = now;
          window.stashdbUpdates += 1;
          live.classList.add("fresh");
          live.textContent = "live · updated " + new Date().toLocaleTimeString();
        }
      }
    } catch (err) {
      live.classList.remove("on");
      live.textContent = "live · the server stopped";
    } finally {
      busy = false;
    }
  }, POLL_MS);
}

function sizeChart() {
  const points = data("size-data");
  const canvas = document.getElementById("size-chart");
  if (!points || !canvas || !window.Chart) return;
  new Chart(canvas, {
    type: "line",
    data: {
      labels: points.map(p => p.commit + " " + p.time.replace("T", " ")),
      datasets: [
        { label: "pickled", data: points.map(p => p.size), stepped: true, borderColor: "#0969da", backgroundColor: "#0969da" },
        { label: "stored", data: points.map(p => p.stored), stepped: true, borderColor: "#1a7f37", backgroundColor: "#1a7f37" },
      ],
    },
    options: {
      animation: false, maintainAspectRatio: false,
      scales: { y: { beginAtZero: true, ticks: { callback: v => kb(v) } } },
      plugins: { tooltip: { callbacks: { label: c => c.dataset.label + ": " + kb(c.parsed.y) } } },
    },
  });
}

function spaceCharts() {
  const space = data("space-data");
  if (!space || !window.Chart) return;
  const bar = (id, rows, color) => {
    const canvas = document.getElementById(id);
    if (!canvas) return;
    new Chart(canvas, {
      type: "bar",
      data: { labels: rows.map(r => r[0]), datasets: [{ label: "stored", data: rows.map(r => r[1]), backgroundColor: color }] },
      options: {
        animation: false, maintainAspectRatio: false, indexAxis: "y",
        scales: { x: { beginAtZero: true, ticks: { callback: v => kb(v) } } },
        plugins: { legend: { display: false }, tooltip: { callbacks: { label: c => kb(c.parsed.x) } } },
      },
    });
  };
  bar("by-variable", space.variables, "#0969da");
  bar("by-type", space.types, "#8250df");
}

// The whole store's totals scan every manifest: fetched after the page shows.
async function storeStats() {
  const box = document.getElementById("stats");
  if (!box) return;
  const stats = await (await fetch("/api/stats", { credentials: "same-origin" })).json();
  document.getElementById("stat-stored").textContent = stats.text.stored + " in the database (" + stats.text.raw + " uncompressed)";
  document.getElementById("stat-logical").textContent = stats.text.logical + " across " + stats.commits + " snapshots";
  document.getElementById("stat-ratio").textContent = stats.text.ratio + " what is stored";
  document.getElementById("stat-counts").textContent = stats.commits + " commits, " + stats.branches + " branches, " + stats.tags + " tags, " + stats.objects + " objects, " + stats.chunks + " chunks";
  delete box.dataset.loading;
}

document.addEventListener("DOMContentLoaded", () => {
  followHistory();
  sizeChart();
  spaceCharts();
  storeStats();
});
