// Charts are drawn while the page is still being parsed, before their grid cells have their final width;
// fit them once layout is done and after every HTMX swap.
(function () {
  function fitCharts() {
    if (!window.Plotly) return;
    document.querySelectorAll(".js-plotly-plot").forEach(function (chart) { window.Plotly.Plots.resize(chart); });
  }
  window.addEventListener("load", fitCharts);
  document.addEventListener("htmx:afterSettle", fitCharts);
})();
