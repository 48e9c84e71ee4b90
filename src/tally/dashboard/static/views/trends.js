// Trends: one or more events measured per hour, day, week or month, with filters, a breakdown
// and the previous period for comparison; a chart and the same numbers in a table.

import { dropChart, drawChart } from "../chart.js";
import { bucketLabel } from "../dates.js";
import {
  announce,
  append,
  clear,
  errorBox,
  field,
  format,
  h,
  pageHeader,
  select,
  table,
} from "../dom.js";
import {
  breakdownControls,
  catalogProblem,
  eventInput,
  eventList,
  filtersEditor,
  InputError,
  loadCatalog,
  oneOf,
  parseBreakdown,
  parseFilters,
  parsePeriod,
  periodBody,
  periodControls,
  periodQuery,
  rowsEditor,
  wireQuery,
} from "../query-controls.js";

const MEASURES = [
  ["count", "Count"],
  ["users", "Users"],
  ["sum", "Sum"],
  ["dur", "Duration"],
  ["avg_sum", "Average sum"],
  ["avg_dur", "Average duration"],
];
const INTERVALS = [
  ["hour", "Hour"],
  ["day", "Day"],
  ["week", "Week"],
  ["month", "Month"],
];
const CHARTS = [
  ["line", "Line"],
  ["bar", "Bars"],
];
const MAX_SERIES = 20;

/** The view's state from the URL: event=a&measure=count&event=b&measure=users&interval=day... */
function parseState(ctx) {
  const q = ctx.query;
  const measures = q.getAll("measure");
  const series = q
    .getAll("event")
    .slice(0, MAX_SERIES)
    .filter((event) => event.trim())
    .map((event, index) => ({
      event,
      measure: oneOf(measures[index], MEASURES.map(([key]) => key), "count"),
    }));
  return {
    series,
    interval: oneOf(q.get("interval"), INTERVALS.map(([key]) => key), "day"),
    period: parsePeriod(q, ctx, "30d"),
    filters: parseFilters(q.get("filters")),
    breakdown: parseBreakdown(q),
    compare: q.get("compare") === "1",
    chart: oneOf(q.get("chart"), CHARTS.map(([key]) => key), "line"),
  };
}

function urlOf(state) {
  return {
    event: state.series.map((item) => item.event),
    measure: state.series.map((item) => item.measure),
    interval: state.interval,
    ...periodQuery(state.period),
    filters: state.filters.length ? JSON.stringify(state.filters) : null,
    breakdown: state.breakdown ? state.breakdown.field : null,
    limit: state.breakdown ? state.breakdown.limit : null,
    compare: state.compare ? "1" : null,
    chart: state.chart === "line" ? null : state.chart,
  };
}

function queryOf(state) {
  return {
    kind: "trends",
    events: state.series.map(({ event, measure }) => ({ event, measure })),
    interval: state.interval,
    ...periodBody(state.period),
    filters: state.filters,
    ...(state.breakdown ? { breakdown: state.breakdown } : {}),
    compare: state.compare,
  };
}

function measureLabel(measure) {
  return MEASURES.find(([key]) => key === measure)[1];
}

/** A series' name: event, measure and, with a breakdown, its value. */
function seriesName(series, state) {
  const name = `${series.event} · ${measureLabel(series.measure)}`;
  if (!state.breakdown) return name;
  if (series.other) return `${name} · other`;
  return `${name} · ${series.breakdown === null ? "(not set)" : series.breakdown}`;
}

function seriesRow(item, index, list) {
  const event = eventInput(item.event, list, `Series ${index + 1} event`);
  const measure = select(MEASURES, { value: item.measure, label: `Series ${index + 1} measure` });
  return {
    node: [field("Event", event), field("Measure", measure)],
    read: () => ({ event: event.value.trim(), measure: measure.value }),
  };
}

export async function render(ctx) {
  const state = parseState(ctx);
  const catalog = await loadCatalog(ctx);
  const list = eventList(catalog.events);

  const series = rowsEditor({
    items: state.series.length ? state.series : [{ event: "", measure: "count" }],
    row: (item, index) => seriesRow(item, index, list),
    blank: () => ({ event: "", measure: "count" }),
    min: 1,
    max: MAX_SERIES,
    addLabel: "Add series",
    removeLabel: (index) => `Remove series ${index + 1}`,
  });
  const interval = select(INTERVALS, { value: state.interval });
  const period = periodControls(state.period);
  const chartType = select(CHARTS, { value: state.chart });
  const compare = h("input", { type: "checkbox", checked: state.compare });
  const filters = filtersEditor(state.filters, catalog.properties);
  const breakdown = breakdownControls(state.breakdown, catalog.properties);
  const problems = h("div");
  const submit = h("button", { type: "submit", class: "primary" }, "Show trend");
  const form = h(
    "form",
    { class: "panel query-form", "aria-label": "Trend query" },
    catalogProblem(catalog),
    h("fieldset", {}, h("legend", {}, "Series"), series.node),
    h("div", { class: "toolbar" }, field("Interval", interval), period.node, field("Chart", chartType)),
    h("label", { class: "check" }, compare, "Compare with the previous period"),
    filters.node,
    h("div", { class: "toolbar" }, breakdown.node),
    h("div", { class: "toolbar" }, submit),
    problems,
    list,
  );
  const results = h("section", { class: "results", "aria-label": "Trend" });
  const chart = h("div", { class: "chart" });
  ctx.onLeave(() => dropChart(chart));
  let shown = null; // the state and answer on screen, to redraw the chart in another style

  function read() {
    const chosen = series.read().filter((item) => item.event);
    if (!chosen.length) throw new InputError("Choose at least one event.");
    return {
      series: chosen,
      interval: interval.value,
      period: period.read(),
      filters: filters.read(),
      breakdown: breakdown.read(),
      compare: compare.checked,
      chart: chartType.value,
    };
  }

  function draw(current, answer) {
    shown = { state: current, answer };
    drawResults(results, chart, current, answer);
    announce(`Trend updated: ${answer.series.length} series`);
  }

  const show = wireQuery(ctx, { form, problems, results, read, url: urlOf, query: queryOf, draw });
  chartType.addEventListener("change", () => {
    if (!shown) return;
    shown.state = { ...shown.state, chart: chartType.value };
    ctx.setQuery(urlOf(shown.state));
    plot(chart, shown.state, shown.answer);
  });

  ctx.main.append(pageHeader("Trends"), form, results);
  if (state.series.length) await show(state);
  else results.append(h("p", { class: "notice" }, "Choose an event above and press Show trend."));
}

/**
 * The previous period's series, in the order of the current ones (null where there is none: an
 * `other` series is left out of a period where nothing else was left out).
 */
function pairPrevious(answer) {
  const left = [...(answer.previous || [])];
  const key = (item) => JSON.stringify([item.event, item.measure, item.breakdown, item.other]);
  return answer.series.map((item) => {
    const found = left.findIndex((candidate) => key(candidate) === key(item));
    return found < 0 ? null : left.splice(found, 1)[0];
  });
}

function drawResults(results, chart, state, answer) {
  const previous = state.compare ? pairPrevious(answer) : null;
  const empty = answer.series.every((item) => !item.total);
  append(clear(results), [
    h("h2", {}, "Totals"),
    h(
      "div",
      { class: "cards" },
      answer.series.map((item, index) =>
        totalCard(seriesName(item, state), item, previous ? previous[index] : null),
      ),
    ),
    empty ? h("p", { class: "notice" }, "No matching events in this period.") : null,
    chart,
    trendTable(state, answer, previous),
  ]);
  plot(chart, state, answer);
}

function totalCard(name, series, previous) {
  const change = previous ? format.change(series.total || 0, previous.total || 0) : null;
  return h(
    "div",
    { class: "card" },
    h("div", { class: "label" }, name),
    h("div", { class: "value" }, format.number(series.total)),
    change
      ? h(
          "div",
          { class: `change ${change.direction}` },
          `${change.text} (previous period: ${format.number(previous.total)})`,
        )
      : null,
  );
}

/** Rows are buckets, columns are series (and their previous period), then a totals row. */
function trendTable(state, answer, previous) {
  const bucket = INTERVALS.find(([key]) => key === state.interval)[1];
  const columns = [{ label: bucket, value: (row) => row.label, rowHeader: true }];
  answer.series.forEach((item, index) => {
    columns.push({
      label: seriesName(item, state),
      value: (row) => format.number(row.values[index]),
      numeric: true,
    });
    if (previous) {
      columns.push({
        label: `${seriesName(item, state)} (previous period)`,
        value: (row) => format.number(row.previous[index]),
        numeric: true,
      });
    }
  });
  const points = answer.series.length ? answer.series[0].points : [];
  const rows = points.map((point, i) => ({
    label: bucketLabel(point.t, state.interval),
    values: answer.series.map((item) => item.points[i].value),
    previous: (previous || []).map((item) => (item && item.points[i] ? item.points[i].value : null)),
  }));
  rows.push({
    label: "Total",
    values: answer.series.map((item) => item.total),
    previous: (previous || []).map((item) => (item ? item.total : null)),
  });
  const wrap = table({ caption: `Trend by ${state.interval}`, columns, rows });
  // the totals row goes to a <tfoot>, so that it reads as a summary rather than a bucket
  const totals = wrap.querySelector("tbody tr:last-child");
  wrap.querySelector("table").append(h("tfoot", {}, totals));
  return wrap;
}

function plot(chart, state, answer) {
  const bars = state.chart === "bar";
  const previous = state.compare ? pairPrevious(answer) : null;
  const points = answer.series.length ? answer.series[0].points : [];
  const x = points.map((point) => bucketLabel(point.t, state.interval));
  const trace = (name, item, style) => ({
    ...(bars ? { type: "bar" } : { type: "scatter", mode: "lines+markers" }),
    name,
    x,
    y: item.points.map((point) => point.value),
    ...style,
  });
  const traces = answer.series.flatMap((item, index) => {
    const name = seriesName(item, state);
    const before = previous && previous[index];
    if (!before) return [trace(name, item, {})];
    const faded = { opacity: 0.55, line: { dash: "dot" } };
    return [trace(name, item, {}), trace(`${name} (previous period)`, before, faded)];
  });
  const names = answer.series.map((item) => seriesName(item, state)).join(", ");
  drawChart(chart, traces, {
    layout: { barmode: "group", showlegend: true },
    label:
      `${bars ? "Bar" : "Line"} chart of ${names} per ${state.interval}; ` +
      "the numbers are in the table below.",
  }).catch((error) => {
    clear(chart).append(errorBox(error));
  });
}
