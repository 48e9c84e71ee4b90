// Retention: people grouped by the day or week of their first start event (cohorts), and how many
// of them did the return event 0, 1, 2... periods later, as a shaded grid and an average curve.

import { dropChart, drawChart } from "../chart.js";
import { addDays, bucketLabel, today } from "../dates.js";
import { announce, append, clear, errorBox, field, format, h, pageHeader, select } from "../dom.js";
import {
  catalogProblem,
  clampInt,
  eventInput,
  eventList,
  filtersEditor,
  InputError,
  loadCatalog,
  oneOf,
  parseFilters,
  parsePeriod,
  periodBody,
  periodControls,
  periodQuery,
  wholeNumber,
  wireQuery,
} from "../query-controls.js";

const INTERVALS = [
  ["day", "Day"],
  ["week", "Week"],
];
const MAX_PERIODS = 100;
const SHADE = [43, 89, 195]; // the accent colour; at most 0.6 alpha keeps dark text readable

/** The view's state from the URL: start=a&return=b&interval=day&periods=8&range=30d... */
function parseState(ctx) {
  const q = ctx.query;
  return {
    start: (q.get("start") || "").trim(),
    back: (q.get("return") || "").trim(),
    interval: oneOf(q.get("interval"), INTERVALS.map(([key]) => key), "day"),
    periods: clampInt(q.get("periods"), 1, MAX_PERIODS, 8),
    period: parsePeriod(q, ctx, "30d"),
    filters: parseFilters(q.get("filters")),
  };
}

function urlOf(state) {
  return {
    start: state.start,
    return: state.back,
    interval: state.interval,
    periods: state.periods,
    ...periodQuery(state.period),
    filters: state.filters.length ? JSON.stringify(state.filters) : null,
  };
}

function queryOf(state) {
  return {
    kind: "retention",
    start_event: { event: state.start },
    return_event: { event: state.back },
    interval: state.interval,
    periods: state.periods,
    ...periodBody(state.period),
    filters: state.filters,
  };
}

export async function render(ctx) {
  const state = parseState(ctx);
  const catalog = await loadCatalog(ctx);
  const list = eventList(catalog.events);

  const start = eventInput(state.start, list, null);
  const back = eventInput(state.back, list, null);
  const interval = select(INTERVALS, { value: state.interval });
  const periods = h("input", {
    type: "number",
    min: "1",
    max: String(MAX_PERIODS),
    step: "1",
    value: String(state.periods),
    inputmode: "numeric",
  });
  const period = periodControls(state.period);
  const filters = filtersEditor(state.filters, catalog.properties);
  const problems = h("div");
  const submit = h("button", { type: "submit", class: "primary" }, "Show retention");
  const form = h(
    "form",
    { class: "panel query-form", "aria-label": "Retention query" },
    catalogProblem(catalog),
    h(
      "div",
      { class: "toolbar" },
      field("Start event", start, "Puts people in the cohort of its first time."),
      field("Return event", back, "Counts them as retained."),
    ),
    h(
      "div",
      { class: "toolbar" },
      field("Cohorts by", interval),
      field("Periods", periods),
      period.node,
    ),
    filters.node,
    h("div", { class: "toolbar" }, submit),
    problems,
    list,
  );
  const results = h("section", { class: "results", "aria-label": "Retention" });
  const chart = h("div", { class: "chart" });
  ctx.onLeave(() => dropChart(chart));

  function read() {
    if (!start.value.trim()) throw new InputError("Choose the start event.");
    if (!back.value.trim()) throw new InputError("Choose the return event.");
    return {
      start: start.value.trim(),
      back: back.value.trim(),
      interval: interval.value,
      periods: wholeNumber(periods.value, "Periods", 1, MAX_PERIODS),
      period: period.read(),
      filters: filters.read(),
    };
  }

  function draw(current, answer) {
    drawResults(results, chart, current, answer);
    announce(`Retention updated: ${answer.cohorts.length} cohorts`);
  }

  const show = wireQuery(ctx, { form, problems, results, read, url: urlOf, query: queryOf, draw });

  ctx.main.append(pageHeader("Retention"), form, results);
  if (state.start && state.back) {
    await show(state);
  } else {
    const hint = "Choose the start and return events above and press Show retention.";
    results.append(h("p", { class: "notice" }, hint));
  }
}

/**
 * Whether period `k` of the cohort starting at `t` has begun by today (in the query's zone);
 * later periods have no data yet and stay out of the averages.
 */
function reached(t, k, state) {
  const days = state.interval === "week" ? 7 : 1;
  return addDays(t.slice(0, 10), k * days) <= today(state.period.tz);
}

/** The average curve: per period, retained people over cohort sizes, of cohorts that got there. */
function averages(state, answer) {
  return Array.from({ length: state.periods }, (_, k) => {
    const cohorts = answer.cohorts.filter((cohort) => reached(cohort.t, k, state));
    const people = cohorts.reduce((sum, cohort) => sum + cohort.values[k], 0);
    const size = cohorts.reduce((sum, cohort) => sum + cohort.size, 0);
    return { reached: cohorts.length > 0, people, rate: size ? people / size : null };
  });
}

function drawResults(results, chart, state, answer) {
  const average = averages(state, answer);
  const people = answer.cohorts.reduce((sum, cohort) => sum + cohort.size, 0);
  append(clear(results), [
    people ? null : h("p", { class: "notice" }, "Nobody did the start event in this period."),
    chart,
    grid(state, answer, average),
  ]);
  plot(chart, state, average);
}

function periodLabel(state, k) {
  return `${state.interval === "week" ? "Week" : "Day"} ${k}`;
}

function cell(rate, people, label) {
  if (rate === null) return h("td", { class: "num" }, "–");
  const alpha = (0.06 + 0.54 * Math.min(rate, 1)).toFixed(2);
  return h(
    "td",
    { class: "num", style: `background-color: rgba(${SHADE.join(", ")}, ${alpha})`, title: label },
    format.percent(rate),
    h("span", { class: "count" }, ` (${format.number(people)})`),
  );
}

function notYet() {
  return h("td", { class: "num future" }, h("span", { class: "visually-hidden" }, "not yet"));
}

/** The cohort grid: an average row, then a row per cohort with its size and each period. */
function grid(state, answer, average) {
  const total = answer.cohorts.reduce((sum, cohort) => sum + cohort.size, 0);
  const head = h(
    "tr",
    {},
    h("th", { scope: "col" }, state.interval === "week" ? "Week of" : "Day"),
    h("th", { scope: "col", class: "num" }, "People"),
    Array.from({ length: state.periods }, (_, k) =>
      h("th", { scope: "col", class: "num" }, periodLabel(state, k)),
    ),
  );
  const averageRow = h(
    "tr",
    { class: "average" },
    h("th", { scope: "row" }, "All cohorts"),
    h("td", { class: "num" }, format.number(total)),
    average.map((item, k) =>
      item.reached ? cell(item.rate, item.people, `All cohorts, ${periodLabel(state, k)}`) : notYet(),
    ),
  );
  const rows = answer.cohorts.map((cohort) => {
    const name = bucketLabel(cohort.t, state.interval);
    return h(
      "tr",
      {},
      h("th", { scope: "row" }, name),
      h("td", { class: "num" }, format.number(cohort.size)),
      cohort.values.map((people, k) =>
        reached(cohort.t, k, state)
          ? cell(cohort.rates[k], people, `${name}, ${periodLabel(state, k)}`)
          : notYet(),
      ),
    );
  });
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { class: "retention" },
      h("caption", {}, "Retained people per cohort (percent of the cohort, with the count)"),
      h("thead", {}, head),
      h("tbody", {}, averageRow, rows),
    ),
  );
}

function plot(chart, state, average) {
  drawChart(
    chart,
    [
      {
        type: "scatter",
        mode: "lines+markers",
        name: "Average retention",
        x: average.map((_, k) => periodLabel(state, k)),
        y: average.map((item) => item.rate),
        hovertemplate: "%{y:.1%}<extra></extra>",
      },
    ],
    {
      layout: {
        showlegend: false,
        xaxis: { type: "category" },
        yaxis: { tickformat: ".0%", range: [0, 1.05], rangemode: "normal" },
      },
      label:
        "Line chart of the average retention per period; the numbers are in the All cohorts row " +
        "of the table below.",
    },
  ).catch((error) => {
    clear(chart).append(errorBox(error));
  });
}
