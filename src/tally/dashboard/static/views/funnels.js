// Funnels: how many people went through ordered steps within a conversion window, step to step
// and overall, optionally broken down by a field of their entry event.

import { dropChart, drawChart } from "../chart.js";
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
  clampInt,
  eventInput,
  eventList,
  filtersEditor,
  formatSeconds,
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
  wholeNumber,
  wireQuery,
} from "../query-controls.js";

const UNITS = [
  ["minute", "Minutes"],
  ["hour", "Hours"],
  ["day", "Days"],
];
const MAX_STEPS = 20;
const MAX_WINDOW = 100000;

/** The view's state from the URL: step=a&step=b&window=7&unit=day&range=30d... */
function parseState(ctx) {
  const q = ctx.query;
  const steps = q.getAll("step").slice(0, MAX_STEPS);
  return {
    steps: steps.length >= 2 && steps.every((step) => step.trim()) ? steps : [],
    window: clampInt(q.get("window"), 1, MAX_WINDOW, 7),
    unit: oneOf(q.get("unit"), UNITS.map(([key]) => key), "day"),
    period: parsePeriod(q, ctx, "30d"),
    filters: parseFilters(q.get("filters")),
    breakdown: parseBreakdown(q),
  };
}

function urlOf(state) {
  return {
    step: state.steps,
    window: state.window,
    unit: state.unit,
    ...periodQuery(state.period),
    filters: state.filters.length ? JSON.stringify(state.filters) : null,
    breakdown: state.breakdown ? state.breakdown.field : null,
    limit: state.breakdown ? state.breakdown.limit : null,
  };
}

function queryOf(state) {
  return {
    kind: "funnel",
    steps: state.steps.map((event) => ({ event })),
    window: { value: state.window, unit: state.unit },
    ...periodBody(state.period),
    filters: state.filters,
    ...(state.breakdown ? { breakdown: state.breakdown } : {}),
  };
}

/** "2. signup": numbered, since the same event may be two steps. */
function stepName(step, index) {
  return `${index + 1}. ${step.event}`;
}

function groupName(group) {
  if (group.other) return "Other";
  return group.value === null ? "(not set)" : group.value;
}

export async function render(ctx) {
  const state = parseState(ctx);
  const catalog = await loadCatalog(ctx);
  const list = eventList(catalog.events);

  const steps = rowsEditor({
    items: state.steps.length ? state.steps : ["", ""],
    row: (value, index) => {
      const input = eventInput(value, list, null);
      return { node: field(`Step ${index + 1}`, input), read: () => input.value.trim() };
    },
    blank: () => "",
    min: 2,
    max: MAX_STEPS,
    addLabel: "Add step",
    removeLabel: (index) => `Remove step ${index + 1}`,
  });
  const windowValue = h("input", {
    type: "number",
    min: "1",
    max: String(MAX_WINDOW),
    step: "1",
    value: String(state.window),
    inputmode: "numeric",
  });
  const windowUnit = select(UNITS, { value: state.unit });
  const period = periodControls(state.period);
  const filters = filtersEditor(state.filters, catalog.properties);
  const breakdown = breakdownControls(state.breakdown, catalog.properties);
  const problems = h("div");
  const submit = h("button", { type: "submit", class: "primary" }, "Show funnel");
  const form = h(
    "form",
    { class: "panel query-form", "aria-label": "Funnel query" },
    catalogProblem(catalog),
    h("fieldset", {}, h("legend", {}, "Steps"), steps.node),
    h(
      "div",
      { class: "toolbar" },
      field("Conversion window", windowValue, "From the first step."),
      field("Window unit", windowUnit),
      period.node,
    ),
    filters.node,
    h("div", { class: "toolbar" }, breakdown.node),
    h("div", { class: "toolbar" }, submit),
    problems,
    list,
  );
  const results = h("section", { class: "results", "aria-label": "Funnel" });
  const chart = h("div", { class: "chart" });
  ctx.onLeave(() => dropChart(chart));

  function read() {
    const chosen = steps.read();
    const missing = chosen.findIndex((step) => !step);
    if (missing >= 0) throw new InputError(`Choose the event of step ${missing + 1}.`);
    return {
      steps: chosen,
      window: wholeNumber(windowValue.value, "The conversion window", 1, MAX_WINDOW),
      unit: windowUnit.value,
      period: period.read(),
      filters: filters.read(),
      breakdown: breakdown.read(),
    };
  }

  function draw(_, answer) {
    drawResults(results, chart, answer);
    const last = answer.steps[answer.steps.length - 1];
    announce(`Funnel updated: ${format.percent(last.conversion_from_first)} converted`);
  }

  const show = wireQuery(ctx, { form, problems, results, read, url: urlOf, query: queryOf, draw });

  ctx.main.append(pageHeader("Funnels"), form, results);
  if (state.steps.length) {
    await show(state);
  } else {
    results.append(
      h("p", { class: "notice" }, "Choose two or more steps above and press Show funnel."),
    );
  }
}

function drawResults(results, chart, answer) {
  const first = answer.steps[0];
  const last = answer.steps[answer.steps.length - 1];
  append(clear(results), [
    h(
      "div",
      { class: "cards" },
      card("Entered the funnel", format.number(first.count)),
      card("Completed it", format.number(last.count)),
      card("Overall conversion", format.percent(last.conversion_from_first)),
    ),
    first.count ? null : h("p", { class: "notice" }, "Nobody did the first step in this period."),
    chart,
    stepsTable(answer.steps),
    answer.breakdown ? breakdownTable(answer) : null,
  ]);
  plot(chart, answer);
}

function card(label, value) {
  return h(
    "div",
    { class: "card" },
    h("div", { class: "label" }, label),
    h("div", { class: "value" }, value),
  );
}

function stepsTable(steps) {
  return table({
    caption: "People per step",
    columns: [
      { label: "Step", value: (row) => stepName(row.step, row.index), rowHeader: true },
      { label: "People", value: (row) => format.number(row.step.count), numeric: true },
      {
        label: "From the previous step",
        value: (row) => (row.index ? format.percent(row.step.conversion_from_previous) : "–"),
        numeric: true,
      },
      { label: "Overall", value: (row) => format.percent(row.step.conversion_from_first), numeric: true },
      {
        label: "Median time from the previous step",
        value: (row) => formatSeconds(row.step.median_seconds_from_previous),
        numeric: true,
      },
    ],
    rows: steps.map((step, index) => ({ step, index })),
  });
}

/** One row per breakdown group: people at each step, with the overall conversion. */
function breakdownTable(answer) {
  return table({
    caption: "People per step, by breakdown value",
    columns: [
      { label: "Value", value: (group) => groupName(group), rowHeader: true },
      ...answer.steps.map((step, index) => ({
        label: stepName(step, index),
        value: (group) => format.number(group.steps[index].count),
        numeric: true,
      })),
      {
        label: "Overall",
        value: (group) => format.percent(group.steps[group.steps.length - 1].conversion_from_first),
        numeric: true,
      },
    ],
    rows: answer.breakdown,
    empty: "Nobody entered the funnel.",
  });
}

function plot(chart, answer) {
  const labels = answer.steps.map(stepName);
  const bar = (name, steps) => ({
    type: "bar",
    name,
    x: labels,
    y: steps.map((step) => step.count),
    text: steps.map((step) => format.percent(step.conversion_from_first)),
    textposition: "auto",
    hovertemplate: "%{y} people (%{text})<extra>%{fullData.name}</extra>",
  });
  const traces = answer.breakdown
    ? answer.breakdown.map((group) => bar(String(groupName(group)), group.steps))
    : [bar("People", answer.steps)];
  drawChart(chart, traces, {
    layout: {
      barmode: "group",
      showlegend: Boolean(answer.breakdown),
      hovermode: "closest",
      xaxis: { type: "category" },
    },
    label: "Bar chart of people per funnel step; the numbers are in the table below.",
  }).catch((error) => {
    clear(chart).append(errorBox(error));
  });
}
