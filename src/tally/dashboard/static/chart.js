// Charts drawn with plotly.js, which Tally serves from the installed `plotly` Python package
// (/dashboard/vendor/plotly.min.js). The library is loaded on first use, not on every page.

let loading = null;

function loadPlotly() {
  if (window.Plotly) return Promise.resolve(window.Plotly);
  if (!loading) {
    loading = new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = "/dashboard/vendor/plotly.min.js";
      script.onload = () => resolve(window.Plotly);
      script.onerror = () => {
        loading = null;
        reject(new Error("the charting library could not be loaded"));
      };
      document.head.append(script);
    });
  }
  return loading;
}

const LAYOUT = {
  margin: { l: 48, r: 16, t: 16, b: 48 },
  paper_bgcolor: "rgba(0,0,0,0)",
  plot_bgcolor: "rgba(0,0,0,0)",
  font: { family: "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", size: 12 },
  legend: { orientation: "h", y: -0.2 },
  hovermode: "x unified",
  xaxis: { automargin: true },
  yaxis: { automargin: true, rangemode: "tozero" },
};

const CONFIG = { responsive: true, displaylogo: false, modeBarButtonsToRemove: ["select2d", "lasso2d"] };

/**
 * Draws a chart into `container` (a div): `traces` are plotly traces, `options.layout` is
 * merged into the default layout. `options.label` describes the chart for screen readers
 * (the numbers are always in a table next to it as well).
 */
export async function drawChart(container, traces, { layout = {}, label = "Chart" } = {}) {
  container.setAttribute("role", "img");
  container.setAttribute("aria-label", label);
  container.classList.add("chart");
  const Plotly = await loadPlotly();
  if (!container.isConnected) return;
  await Plotly.react(
    container,
    traces,
    { ...LAYOUT, ...layout, xaxis: { ...LAYOUT.xaxis, ...(layout.xaxis || {}) }, yaxis: { ...LAYOUT.yaxis, ...(layout.yaxis || {}) } },
    CONFIG,
  );
}

/** Frees a chart's resources (call when the view goes away). */
export function dropChart(container) {
  if (window.Plotly && container) window.Plotly.purge(container);
}
