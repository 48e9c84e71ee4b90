// An app at a glance: events, people and sessions for today, 7 and 30 days against the period
// before, events per day, the top events and a live counter.

import { appPath, runQuery } from "../api.js";
import { appHref } from "../app.js";
import { drawChart, dropChart } from "../chart.js";
import { addDays, bucketLabel, lastDays } from "../dates.js";
import { clear, errorBox, format, h, pageHeader, table } from "../dom.js";

const WINDOWS = [
  { days: 1, label: "Today" },
  { days: 7, label: "Last 7 days" },
  { days: 30, label: "Last 30 days" },
];
const METRICS = [
  { key: "events", label: "Events" },
  { key: "users", label: "Users" },
  { key: "sessions", label: "Sessions" },
];
const ANY_EVENT = [{ event: "*", measure: "count" }, { event: "*", measure: "users" }];

/** Events and people (with the period before) and sessions (both periods) for one window. */
async function windowFigures(appId, days, timeZone, signal) {
  const { from, to } = lastDays(days, timeZone);
  const before = { from: addDays(from, -days), to: from };
  const common = { tz: timeZone, interval: "day" };
  const [trends, sessions, previousSessions] = await Promise.all([
    runQuery(appId, { kind: "trends", events: ANY_EVENT, from, to, compare: true, ...common }, signal),
    runQuery(appId, { kind: "sessions", from, to, ...common }, signal),
    runQuery(appId, { kind: "sessions", ...before, ...common }, signal),
  ]);
  return {
    current: {
      events: trends.series[0].total,
      users: trends.series[1].total,
      sessions: sessions.total.sessions,
    },
    previous: {
      events: trends.previous[0].total,
      users: trends.previous[1].total,
      sessions: previousSessions.total.sessions,
    },
    trends,
  };
}

function changeBadge(current, previous, windowLabel) {
  const change = format.change(current, previous);
  return h(
    "span",
    { class: `change ${change.direction}`, title: `Previous period: ${format.number(previous)}` },
    change.text,
    h("span", { class: "visually-hidden" }, ` compared with the ${windowLabel.toLowerCase()} before`),
  );
}

function summaryCards(figures) {
  return h(
    "div",
    { class: "cards overview-cards" },
    METRICS.map((metric) =>
      h(
        "section",
        { class: "card", "aria-label": metric.label },
        h("h2", { class: "label" }, metric.label),
        h(
          "dl",
          { class: "windows" },
          WINDOWS.map((window, index) => {
            const { current, previous } = figures[index];
            return [
              h("dt", {}, window.label),
              h(
                "dd",
                {},
                h("span", { class: "value" }, format.number(current[metric.key])),
                " ",
                changeBadge(current[metric.key], previous[metric.key], window.label),
              ),
            ];
          }),
        ),
      ),
    ),
  );
}

/** Whole-number ticks for a count axis whose largest value is `max`. */
function countAxis(max, extra) {
  return { ...extra, rangemode: "tozero", tickformat: ",d", dtick: Math.max(1, Math.ceil(max / 5)) };
}

function dailyChart(container, trends) {
  const [events, users] = trends.series;
  const top = (series) => Math.max(0, ...series.points.map((p) => p.value));
  const x = events.points.map((point) => bucketLabel(point.t, "day"));
  drawChart(
    container,
    [
      { type: "bar", name: "Events", x, y: events.points.map((p) => p.value), marker: { color: "#2b59c3" } },
      {
        type: "scatter",
        mode: "lines+markers",
        name: "Users",
        x,
        y: users.points.map((p) => p.value),
        yaxis: "y2",
        line: { color: "#d97706" },
      },
    ],
    {
      label: "Events and users per day over the last 30 days; the numbers are in the table below.",
      layout: {
        yaxis: countAxis(top(events), { title: { text: "Events" } }),
        yaxis2: countAxis(top(users), { title: { text: "Users" }, overlaying: "y", side: "right" }),
        margin: { l: 56, r: 56, t: 16, b: 48 },
      },
    },
  );
}

function dailyTable(trends) {
  const [events, users] = trends.series;
  return h(
    "details",
    { class: "data-table" },
    h("summary", {}, "Events and users per day as a table"),
    table({
      caption: "Events and users per day, last 30 days",
      columns: [
        { label: "Day", value: (row) => bucketLabel(row.t, "day"), rowHeader: true },
        { label: "Events", value: (row) => format.number(row.events), numeric: true },
        { label: "Users", value: (row) => format.number(row.users), numeric: true },
      ],
      rows: events.points.map((point, index) => ({
        t: point.t,
        events: point.value,
        users: users.points[index].value,
      })),
    }),
  );
}

async function topEvents(ctx, holder) {
  const { from, to } = lastDays(30, ctx.timeZone);
  const answer = await runQuery(
    ctx.app.id,
    {
      kind: "trends",
      events: ANY_EVENT,
      from,
      to,
      tz: ctx.timeZone,
      interval: "month",
      breakdown: { field: "event", limit: 10 },
    },
    ctx.signal,
  );
  const people = new Map(
    answer.series.filter((s) => s.measure === "users").map((s) => [`${s.other}:${s.breakdown}`, s.total]),
  );
  const rows = answer.series
    .filter((s) => s.measure === "count" && !s.other)
    .map((s) => ({ name: s.breakdown, events: s.total, users: people.get(`false:${s.breakdown}`) }));
  const trendsLink = (name) =>
    h(
      "a",
      { href: `${appHref(ctx.app.id, "/trends")}?${new URLSearchParams({ event: name, range: "30d" })}` },
      name,
    );
  clear(holder).append(
    table({
      caption: "Top events, last 30 days",
      columns: [
        { label: "Event", value: (row) => trendsLink(row.name), rowHeader: true },
        { label: "Events", value: (row) => format.number(row.events), numeric: true },
        { label: "Users", value: (row) => format.number(row.users), numeric: true },
      ],
      rows,
      empty: "No events in the last 30 days. Keys & install shows how to send some.",
    }),
  );
}

/** Counts events as the live stream delivers them: the last minute and since the page opened. */
function liveCounter(ctx) {
  const minute = h("span", { class: "value" }, "0");
  const minuteUnit = h("span", {}, " events in the last minute");
  const total = h("span", {}, "0");
  const state = h("span", { class: "badge" }, "connecting");
  const arrivals = [];
  let count = 0;
  const source = new EventSource(appPath(ctx.app.id, "live"));
  const refresh = () => {
    const cutoff = Date.now() - 60_000;
    while (arrivals.length && arrivals[0] < cutoff) arrivals.shift();
    minute.textContent = format.number(arrivals.length);
    minuteUnit.textContent = arrivals.length === 1 ? " event in the last minute" : " events in the last minute";
    total.textContent = format.number(count);
  };
  source.addEventListener("open", () => {
    state.textContent = "live";
    state.className = "badge good";
  });
  source.addEventListener("error", () => {
    state.textContent = "reconnecting";
    state.className = "badge bad";
  });
  source.addEventListener("event", () => {
    count += 1;
    arrivals.push(Date.now());
    refresh();
  });
  const timer = setInterval(refresh, 5000);
  ctx.onLeave(() => {
    source.close();
    clearInterval(timer);
  });
  return h(
    "section",
    { class: "card live-card", "aria-labelledby": "live-title" },
    h("h2", { class: "label", id: "live-title" }, "Live ", state),
    h("p", {}, minute, minuteUnit),
    h("p", { class: "hint" }, total, " since this page opened · ", h("a", { href: appHref(ctx.app.id, "/live") }, "Watch them arrive")),
  );
}

export async function render(ctx) {
  const cards = h("div", { "aria-busy": "true" }, h("p", { class: "loading" }, "Counting…"));
  const chart = h("div", { class: "chart" });
  const chartTable = h("div");
  const top = h("div", {}, h("p", { class: "loading" }, "Loading top events…"));
  ctx.onLeave(() => dropChart(chart));
  ctx.main.append(
    pageHeader(`${ctx.app.name}: overview`),
    h("div", { class: "overview-top" }, cards, liveCounter(ctx)),
    h("section", { class: "panel" }, h("h2", {}, "Events per day, last 30 days"), chart, chartTable),
    h("section", {}, h("h2", {}, "Top events"), top),
  );
  const figures = Promise.all(WINDOWS.map((w) => windowFigures(ctx.app.id, w.days, ctx.timeZone, ctx.signal)));
  const topDone = topEvents(ctx, top).catch((error) => {
    if (error.name !== "AbortError") clear(top).append(errorBox(error));
  });
  try {
    const found = await figures;
    clear(cards).append(summaryCards(found));
    cards.removeAttribute("aria-busy");
    dailyChart(chart, found[2].trends);
    chartTable.append(dailyTable(found[2].trends));
  } catch (error) {
    if (error.name === "AbortError") return;
    clear(cards).append(errorBox(error));
  }
  await topDone;
}
