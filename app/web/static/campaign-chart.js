// The campaign page's chart: outcomes per hour or day (chart.json), refreshed while the
// campaign runs.
(function () {
  "use strict";
  var COLORS = { sent: "#2f5d8a", deferred: "#d69a2d", bounced: "#b3362f", failed: "#7a4b9a" };
  document.addEventListener("DOMContentLoaded", function () {
    var canvas = document.getElementById("sends-chart");
    if (!canvas || !window.Chart) { return; }
    var chart = null;
    function label(at, bucket) {
      var d = new Date(at);
      var opts = bucket === "hour" ? { day: "2-digit", month: "short", hour: "2-digit", minute: "2-digit", timeZone: "UTC" } : { day: "2-digit", month: "short", timeZone: "UTC" };
      return d.toLocaleString("en-GB", opts);
    }
    function draw(data) {
      var labels = data.points.map(function (p) { return label(p.at, data.bucket); });
      var sets = Object.keys(COLORS).map(function (key) {
        return { label: key, data: data.points.map(function (p) { return p[key]; }), backgroundColor: COLORS[key], borderRadius: 3, stack: "s" };
      });
      document.querySelector("[data-chart-bucket]").textContent = data.bucket === "hour" ? "per hour, UTC" : "per day, UTC";
      if (chart) {
        chart.data.labels = labels;
        chart.data.datasets.forEach(function (set, i) { set.data = sets[i].data; });
        chart.update("none");
        return;
      }
      chart = new window.Chart(canvas, {
        type: "bar",
        data: { labels: labels, datasets: sets },
        options: {
          maintainAspectRatio: false, animation: false,
          scales: { x: { stacked: true, grid: { display: false } }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } },
          plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } } }
        }
      });
    }
    function load() {
      fetch(canvas.getAttribute("data-chart-url"), { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (data) { if (data) { draw(data); } });
    }
    load();
    if (canvas.getAttribute("data-live") === "true") { setInterval(load, 10000); }
  });
})();
