// Dashboard behaviour, from a static file because the pages' CSP allows no inline script:
// - draw every chart element's figure (data-plotly-figure) with the local Plotly bundle, on load and after
//   every HTMX swap; then fit charts to their final cell width;
// - KPI polling only while the tab is visible (htmx runs with allowEval off, so no trigger filter expression).
(function () {
  function drawCharts() {
    if (!window.Plotly) return;
    document.querySelectorAll("[data-plotly-figure]:not(.js-plotly-plot)").forEach(function (element) {
      var figure = JSON.parse(element.getAttribute("data-plotly-figure"));
      window.Plotly.newPlot(element, figure.data, figure.layout, figure.config);
    });
  }

  function fitCharts() {
    if (!window.Plotly) return;
    document.querySelectorAll(".js-plotly-plot").forEach(function (chart) { window.Plotly.Plots.resize(chart); });
  }

  document.addEventListener("htmx:beforeRequest", function (event) {
    var element = event.detail && event.detail.elt;
    if (element && element.hasAttribute("data-poll-when-visible") && document.visibilityState !== "visible") {
      event.preventDefault();
    }
  });
  // Live KPIs (webapp/dashboard/live.py): once they count a request, the period is no longer empty.
  function dropEmptyState() {
    var requests = document.querySelector('#kpis [data-metric="requests"]');
    var empty = document.querySelector("#dash-main .empty-state");
    if (requests && empty && Number(requests.getAttribute("data-value")) > 0) empty.remove();
  }

  document.addEventListener("htmx:afterSettle", function () { drawCharts(); fitCharts(); dropEmptyState(); });
  window.addEventListener("load", fitCharts);
  drawCharts();
})();
