// Live: the app's events as they are stored, from the Server-Sent Events stream
// GET /api/v1/apps/ID/live (docs/queries.md). The stream can only filter by exact names, so the
// "contains" filter runs here, on the events kept in the page; it lives in the URL. Pausing holds
// the list still while the counters keep counting.

import { api, appPath } from "../api.js";
import { appHref } from "../app.js";
import { announce, clear, errorBox, field, format, h, pageHeader } from "../dom.js";

const MAX_ROWS = 200; // rows in the list
const KEPT = 1000; // events kept so that a new filter can show earlier matches
const FLUSH_MS = 150; // events arriving together are drawn together
const SUMMARY_SECONDS = 20; // how often screen readers hear the counts (only when they changed)
const KEY_PROPERTIES = 3;
const COLUMNS = ["Time", "Event", "User / device", "Protocol", "Key properties"];

export async function render(ctx) {
  const state = {
    kept: [], // newest first
    pending: [], // arrived since the last draw, oldest first
    paused: false,
    held: 0,
    total: 0,
    seconds: [], // [epoch second, events] over the last minute
    announced: 0,
    flushTimer: null,
    filter: { name: ctx.query.get("name") || "", who: ctx.query.get("who") || "" },
  };

  const connection = h("span", { class: "badge" }, "Connecting…");
  const heldNote = h("span", { class: "hint" });
  const pause = h("button", { type: "button", class: "secondary" }, "Pause");
  const lastMinute = h("div", { class: "value" }, "0");
  const sinceOpened = h("div", { class: "value" }, "0");
  const summary = h("p", { class: "visually-hidden", role: "status", "aria-live": "polite" });
  const problem = h("div");
  const missed = h("p", { class: "notice", hidden: true });
  const body = h("tbody");
  const opened = new Date();

  const nameInput = h("input", { type: "search", value: state.filter.name, autocomplete: "off" });
  const whoInput = h("input", { type: "search", value: state.filter.who, autocomplete: "off" });
  const filterForm = h(
    "form",
    { class: "toolbar", role: "search", "aria-label": "Filter the live events" },
    field("Event name contains", nameInput),
    field("User or device contains", whoInput),
  );

  function matches(event) {
    const name = state.filter.name.toLowerCase();
    const who = state.filter.who.toLowerCase();
    if (name && !String(event.name).toLowerCase().includes(name)) return false;
    if (!who) return true;
    return [event.user, event.device].some((id) => id && String(id).toLowerCase().includes(who));
  }

  function emptyRow() {
    const setup = h("a", { href: appHref(ctx.app.id, "/setup") }, "Keys & install");
    const text =
      state.filter.name || state.filter.who
        ? "No event matches the filter yet."
        : ["Waiting for events… Send one (see ", setup, ") and it shows up here."];
    const cell = h("td", { colspan: COLUMNS.length, class: "empty" }, text);
    return h("tr", { class: "empty-row" }, cell);
  }

  /** Draws the whole list again from the kept events (a new filter, or the end of a pause). */
  function redraw() {
    state.pending = [];
    const rows = state.kept.filter(matches).slice(0, MAX_ROWS);
    clear(body).append(...(rows.length ? rows.map((event) => eventRow(event, ctx)) : [emptyRow()]));
    return rows.length;
  }

  /** Adds what arrived since the last draw on top of the list, without touching the rest. */
  function flush() {
    state.flushTimer = null;
    drawCounters();
    const arrived = state.pending.filter(matches);
    state.pending = [];
    if (state.paused) {
      state.held += arrived.length;
      heldNote.textContent = state.held
        ? `${countOf(state.held, "new event")} held while paused`
        : "Paused";
      return;
    }
    if (!arrived.length) return;
    body.querySelector(".empty-row")?.remove();
    for (const event of arrived) body.prepend(eventRow(event, ctx));
    while (body.rows.length > MAX_ROWS) body.lastElementChild.remove();
  }

  function receive(event) {
    state.kept.unshift(event);
    if (state.kept.length > KEPT) state.kept.length = KEPT;
    state.pending.push(event);
    state.total += 1;
    const second = Math.floor(Date.now() / 1000);
    const last = state.seconds[state.seconds.length - 1];
    if (last && last[0] === second) last[1] += 1;
    else state.seconds.push([second, 1]);
    if (!state.flushTimer) state.flushTimer = setTimeout(flush, FLUSH_MS);
  }

  function drawCounters() {
    const since = Math.floor(Date.now() / 1000) - 59;
    while (state.seconds.length && state.seconds[0][0] < since) state.seconds.shift();
    lastMinute.textContent = format.number(state.seconds.reduce((sum, [, n]) => sum + n, 0));
    sinceOpened.textContent = format.number(state.total);
  }

  /** Tells screen readers the counts now and then, never each event. */
  function summarize() {
    const fresh = state.total - state.announced;
    if (!fresh) return;
    state.announced = state.total;
    const total = format.number(state.total);
    summary.textContent = `${countOf(fresh, "new event")}; ${total} since the page opened.`;
  }

  pause.addEventListener("click", () => {
    state.paused = !state.paused;
    pause.textContent = state.paused ? "Resume" : "Pause";
    if (state.paused) {
      state.held = 0;
      heldNote.textContent = "Paused";
      announce("Paused: new events are held until you resume.");
    } else {
      heldNote.textContent = "";
      redraw();
      announce("Resumed.");
    }
  });

  let filterAnnouncement = null;
  function applyFilter() {
    state.filter = { name: nameInput.value.trim(), who: whoInput.value.trim() };
    ctx.setQuery(state.filter);
    if (state.paused) return;
    const shown = redraw();
    clearTimeout(filterAnnouncement);
    filterAnnouncement = setTimeout(() => announce(`${format.number(shown)} events shown.`), 600);
  }
  nameInput.addEventListener("input", applyFilter);
  whoInput.addEventListener("input", applyFilter);
  filterForm.addEventListener("submit", (event) => event.preventDefault());

  const stream = { source: null };
  function setConnection(text, kind) {
    connection.textContent = text;
    connection.className = kind ? `badge ${kind}` : "badge";
  }

  function connect() {
    clear(problem);
    setConnection("Connecting…");
    const source = new EventSource(appPath(ctx.app.id, "live"));
    source.addEventListener("open", () => setConnection("Live", "good"));
    source.addEventListener("event", (message) => receive(JSON.parse(message.data)));
    source.addEventListener("missed", (message) => {
      const count = JSON.parse(message.data).missed;
      missed.hidden = false;
      missed.textContent =
        `${countOf(count, "event")} went by while this page fell behind: ` +
        "they are stored, only not shown here.";
    });
    source.addEventListener("error", () => {
      if (source.readyState === EventSource.CLOSED) stopped();
      else setConnection("Reconnecting…", "bad");
    });
    stream.source = source;
  }

  /** The browser gave up (an HTTP error, such as an ended session): find out why, offer a retry. */
  async function stopped() {
    setConnection("Disconnected", "bad");
    try {
      await api(appPath(ctx.app.id, "settings"), { signal: ctx.signal });
    } catch (error) {
      if (error.name === "AbortError" || error.status === 401) return; // the router logs in again
      problem.append(errorBox(error));
      return;
    }
    const retry = h("button", { type: "button", onclick: connect }, "Reconnect");
    problem.append(errorBox(new Error("The live stream stopped.")), retry);
  }

  let ticks = 0;
  const tick = setInterval(() => {
    drawCounters();
    ticks += 1;
    if (ticks % SUMMARY_SECONDS === 0) summarize();
  }, 1000);
  ctx.onLeave(() => {
    stream.source?.close();
    clearInterval(tick);
    clearTimeout(state.flushTimer);
    clearTimeout(filterAnnouncement);
  });

  redraw();
  ctx.main.append(
    pageHeader("Live events", pause),
    h("p", { class: "live-status" }, [connection, heldNote]),
    h("div", { class: "cards" }, [
      h("div", { class: "card" }, h("div", { class: "label" }, "Last minute"), lastMinute),
      h(
        "div",
        { class: "card" },
        h("div", { class: "label" }, `Since opened (${clock(opened.toISOString(), ctx.timeZone)})`),
        sinceOpened,
      ),
    ]),
    filterForm,
    summary,
    missed,
    problem,
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        { class: "live-events" },
        h("caption", { class: "visually-hidden" }, `The latest ${MAX_ROWS} events, newest first`),
        h("thead", {}, h("tr", {}, COLUMNS.map((label) => h("th", { scope: "col" }, label)))),
        body,
      ),
    ),
  );
  connect();
}

function eventRow(event, ctx) {
  return h("tr", {}, [
    h("td", {}, h("time", { datetime: event.time }, clock(event.time, ctx.timeZone))),
    h("th", { scope: "row" }, [
      event.name,
      event.internal ? [" ", h("span", { class: "badge" }, "internal")] : null,
      event.label ? h("div", { class: "hint" }, event.label) : null,
    ]),
    h("td", {}, who(event, ctx)),
    h("td", {}, event.protocol),
    h("td", {}, keyProperties(event)),
  ]);
}

/** The time of day, with the date too when it is not today (an event sent late, an import). */
function clock(iso, timeZone) {
  const date = new Date(iso);
  const day = (value) => value.toLocaleDateString(undefined, { timeZone });
  if (day(date) !== day(new Date())) return format.time(iso, timeZone);
  return date.toLocaleTimeString(undefined, { timeZone, timeStyle: "medium" });
}

function who(event, ctx) {
  const parts = [];
  if (event.user) {
    const href = appHref(ctx.app.id, "/customers/" + encodeURIComponent(event.user));
    parts.push(h("a", { href }, event.user));
  }
  if (event.device) parts.push(h("div", { class: "hint" }, `device ${event.device}`));
  return parts.length ? parts : h("span", { class: "hint" }, "–");
}

/** The measures that are set, then the first few properties, each value cut short. */
function keyProperties(event) {
  const pairs = [];
  if (event.count > 1) pairs.push(["count", event.count]);
  if (event.sum !== null && event.sum !== undefined) pairs.push(["sum", event.sum]);
  if (event.dur !== null && event.dur !== undefined) pairs.push(["dur", event.dur]);
  const properties = Object.entries(event.properties || {});
  pairs.push(...properties.slice(0, KEY_PROPERTIES));
  const more = properties.length - KEY_PROPERTIES;
  if (!pairs.length) return h("span", { class: "hint" }, "–");
  return h("ul", { class: "live-props" }, [
    pairs.map(([key, value]) => h("li", {}, h("span", { class: "key" }, `${key}: `), short(value))),
    more > 0 ? h("li", { class: "hint" }, `+${more} more`) : null,
  ]);
}

/** "1 new event", "3 new events". */
function countOf(count, noun) {
  return `${format.number(count)} ${noun}${count === 1 ? "" : "s"}`;
}

function short(value) {
  const text = typeof value === "string" ? value : JSON.stringify(value);
  return text.length > 60 ? `${text.slice(0, 59)}…` : text;
}
