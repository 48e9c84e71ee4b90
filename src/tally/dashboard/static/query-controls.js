// Controls shared by the analysis screens (trends, funnels, retention): the app's events and
// properties, event pickers, editable rows (series, steps, filters), the period and time zone,
// breakdowns, and the wiring of a query form to its results.

import { api, appPath, runQuery } from "./api.js";
import { RANGES, addDays, isDate, resolveRange, timeZones, today } from "./dates.js";
import { append, clear, errorBox, field, format, h, select, uid } from "./dom.js";

/** Stored fields a filter or breakdown may name besides properties.<name> (docs/queries.md). */
export const COLUMN_FIELDS = [
  "event",
  "user",
  "device",
  "session",
  "label",
  "protocol",
  "sdk_name",
  "sdk_version",
  "browser",
  "os",
  "device_type",
  "url",
  "referrer",
  "locale",
  "timezone",
  "country_code",
  "city",
];

const OPS = [
  ["eq", "equals"],
  ["neq", "does not equal"],
  ["in", "is one of"],
  ["contains", "contains"],
  ["gt", "greater than"],
  ["gte", "at least"],
  ["lt", "less than"],
  ["lte", "at most"],
  ["is_set", "is set"],
  ["is_not_set", "is not set"],
];
const NO_VALUE = new Set(["is_set", "is_not_set"]);
const NUMERIC = new Set(["gt", "gte", "lt", "lte"]);

/** A mistake in the form, shown like an API error (errorBox takes any {message}). */
export class InputError extends Error {}

/**
 * The app's visible event definitions and the names of every property they define. A failure
 * leaves the lists empty (event names can still be typed) and is returned as `error`.
 */
export async function loadCatalog(ctx) {
  try {
    const { events } = await api(appPath(ctx.app.id, "definitions"), { signal: ctx.signal });
    const visible = events.filter((event) => event.status !== "hidden");
    const properties = new Set(visible.flatMap((event) => event.properties.map((p) => p.name)));
    return { events: visible, properties: [...properties].sort(), error: null };
  } catch (error) {
    if (error.name === "AbortError") throw error;
    return { events: [], properties: [], error };
  }
}

/** An error box when the app's events could not be loaded, else null. */
export function catalogProblem(catalog) {
  if (!catalog.error) return null;
  return errorBox({ message: `The app's events could not be loaded: ${catalog.error.message}` });
}

/** A <datalist> of the app's event names, for the event pickers' `list`. */
export function eventList(events) {
  return h(
    "datalist",
    { id: uid("events") },
    events.map((event) =>
      h("option", {
        value: event.name,
        label: event.display_name && event.display_name !== event.name ? event.display_name : null,
      }),
    ),
  );
}

/** A text input for an event name: choose from the list or type any name. */
export function eventInput(value, list, accessibleName) {
  return h("input", {
    type: "text",
    value: value || "",
    list: list.id,
    autocomplete: "off",
    spellcheck: "false",
    "aria-label": accessibleName,
  });
}

/**
 * An editable list of rows (series, steps, filters). `row(item, index)` builds one row as
 * {node, read()} where read() gives the row's raw item back; rows can be removed down to `min`.
 */
export function rowsEditor({ items, row, blank, min = 0, max = 20, addLabel, removeLabel }) {
  let rows = [];
  const list = h("div", { class: "rows" });
  const add = h("button", { type: "button", class: "secondary small" }, addLabel);

  function draw(values, focus) {
    rows = values.map((item, index) => row(item, index));
    append(
      clear(list),
      rows.map((built, index) =>
        h(
          "div",
          { class: "row" },
          built.node,
          values.length > min
            ? h(
                "button",
                {
                  type: "button",
                  class: "secondary small",
                  "aria-label": removeLabel(index),
                  onclick: () => remove(index),
                },
                "Remove",
              )
            : null,
        ),
      ),
    );
    add.disabled = values.length >= max;
    if (focus !== undefined) {
      const target = list.children[focus];
      (target ? target.querySelector("input, select") : add).focus();
    }
  }

  function remove(index) {
    const values = read();
    values.splice(index, 1);
    draw(values, Math.min(index, values.length - 1));
  }

  function read() {
    return rows.map((built) => built.read());
  }

  add.addEventListener("click", () => {
    const values = read();
    values.push(blank());
    draw(values, values.length - 1);
  });
  draw(items);
  return { node: h("div", {}, list, add), read };
}

/** Options for a field <select>: the stored fields and the defined properties. */
function fieldSelect(value, properties, accessibleName, { none } = {}) {
  const fields = properties.map((name) => `properties.${name}`);
  if (value && !fields.includes(value) && !COLUMN_FIELDS.includes(value)) fields.push(value);
  const node = h(
    "select",
    { "aria-label": accessibleName },
    none ? h("option", { value: "" }, none) : null,
    fields.length
      ? h("optgroup", { label: "Properties" }, fields.map((name) => h("option", { value: name }, name)))
      : null,
    h(
      "optgroup",
      { label: "Event fields" },
      COLUMN_FIELDS.map((name) => h("option", { value: name }, name)),
    ),
  );
  node.value = value || (none ? "" : node.options[0].value);
  return node;
}

function filterRow(item, index, properties) {
  const n = index + 1;
  const fieldControl = fieldSelect(item.field, properties, `Filter ${n} field`);
  const op = select(OPS, { value: item.op || "eq", label: `Filter ${n} condition` });
  const value = h("input", {
    type: "text",
    value: item.value,
    "aria-label": `Filter ${n} value`,
    placeholder: "value",
  });
  const sync = () => {
    value.hidden = NO_VALUE.has(op.value);
    value.placeholder = op.value === "in" ? "a, b, c" : "value";
  };
  op.addEventListener("change", sync);
  sync();
  return {
    node: h("div", { class: "filter" }, fieldControl, op, value),
    read: () => ({ field: fieldControl.value, op: op.value, value: value.value }),
  };
}

/** Rows of field + condition + value; read() checks them and gives the API's filters. */
export function filtersEditor(filters, properties) {
  const editor = rowsEditor({
    items: filters.map(filterText),
    row: (item, index) => filterRow(item, index, properties),
    blank: () => ({ field: "", op: "eq", value: "" }),
    addLabel: "Add filter",
    removeLabel: (index) => `Remove filter ${index + 1}`,
  });
  return {
    node: h("fieldset", { class: "filters" }, h("legend", {}, "Filters"), editor.node),
    read: () => editor.read().map(toFilter),
  };
}

/** A filter as the API takes it, from a row's texts. */
function toFilter(row, index) {
  const where = `Filter ${index + 1}`;
  if (NO_VALUE.has(row.op)) return { field: row.field, op: row.op };
  const text = row.value.trim();
  if (!text) throw new InputError(`${where} needs a value.`);
  if (row.op === "in") {
    const values = text.split(",").map((part) => part.trim());
    return { field: row.field, op: row.op, value: values.filter(Boolean) };
  }
  if (NUMERIC.has(row.op)) {
    const number = Number(text);
    if (!Number.isFinite(number)) {
      throw new InputError(`${where} compares numbers: ${text} is not one.`);
    }
    return { field: row.field, op: row.op, value: number };
  }
  return { field: row.field, op: row.op, value: text };
}

/** A filter's row texts, from the API's form. */
function filterText(filter) {
  const value = Array.isArray(filter.value) ? filter.value.join(", ") : filter.value;
  return { field: filter.field, op: filter.op, value: value === undefined ? "" : String(value) };
}

/** The filters kept in the URL (a JSON list); anything malformed is left out. */
export function parseFilters(text) {
  let parsed;
  try {
    parsed = JSON.parse(text || "[]");
  } catch {
    return [];
  }
  if (!Array.isArray(parsed)) return [];
  const ops = new Set(OPS.map(([op]) => op));
  const scalar = (value) => ["string", "number", "boolean"].includes(typeof value);
  return parsed.filter(
    (item) =>
      item &&
      typeof item.field === "string" &&
      item.field &&
      ops.has(item.op) &&
      (NO_VALUE.has(item.op) || scalar(item.value) || Array.isArray(item.value)),
  );
}

/** Breakdown field + how many values; read() gives {field, limit} or null. */
export function breakdownControls(breakdown, properties) {
  const current = breakdown ? breakdown.field : "";
  const fieldControl = fieldSelect(current, properties, null, { none: "None" });
  const limit = h("input", {
    type: "number",
    min: "1",
    max: "100",
    step: "1",
    value: String(breakdown ? breakdown.limit : 10),
    inputmode: "numeric",
  });
  const sync = () => {
    limit.disabled = !fieldControl.value;
  };
  fieldControl.addEventListener("change", sync);
  sync();
  return {
    node: [
      field("Break down by", fieldControl),
      field("Top values", limit, "The rest are summed up as other."),
    ],
    read() {
      if (!fieldControl.value) return null;
      return { field: fieldControl.value, limit: wholeNumber(limit.value, "Top values", 1, 100) };
    },
  };
}

/** The breakdown kept in the URL (breakdown=FIELD&limit=N), or null. */
export function parseBreakdown(query) {
  const fieldName = query.get("breakdown") || "";
  if (!COLUMN_FIELDS.includes(fieldName) && !/^properties\..+/.test(fieldName)) return null;
  return { field: fieldName, limit: clampInt(query.get("limit"), 1, 100, 10) };
}

/** A whole number from a form input, within bounds, or an InputError naming the field. */
export function wholeNumber(text, name, min, max) {
  const number = Number(text);
  if (!Number.isInteger(number) || number < min || number > max) {
    throw new InputError(`${name} must be a whole number from ${min} to ${max}.`);
  }
  return number;
}

/** An integer from the URL within bounds, else `fallback`. */
export function clampInt(text, min, max, fallback) {
  const number = Number(text);
  return text && Number.isInteger(number) && number >= min && number <= max ? number : fallback;
}

/** `value` when it is one of `allowed`, else `fallback` (for enumerations kept in the URL). */
export function oneOf(value, allowed, fallback) {
  return allowed.includes(value) ? value : fallback;
}

function isTimeZone(name) {
  if (!name) return false;
  try {
    new Intl.DateTimeFormat("en", { timeZone: name });
    return true;
  } catch {
    return false;
  }
}

/**
 * The period kept in the URL: range (a named one or "custom" with from/to dates, `to`
 * inclusive) and tz; anything invalid falls back to `defaultRange` and the browser's zone.
 */
export function parsePeriod(query, ctx, defaultRange) {
  const range = query.get("range");
  const from = query.get("from");
  const to = query.get("to");
  const tz = isTimeZone(query.get("tz")) ? query.get("tz") : ctx.timeZone;
  if (RANGES.some(([key]) => key === range)) return { range, tz };
  if (range === "custom" && isDate(from) && isDate(to) && from <= to) return { range, from, to, tz };
  return { range: defaultRange, tz };
}

/** The period as URL values. */
export function periodQuery(period) {
  return { range: period.range, from: period.from, to: period.to, tz: period.tz };
}

/** The period as the API's from/to/tz (`to` exclusive). */
export function periodBody(period) {
  const { from, to } = resolveRange(period.range, period.from, period.to, period.tz);
  return { from, to, tz: period.tz };
}

/** Date range (named or custom from/to dates) and time zone controls. */
export function periodControls(period) {
  const range = select([...RANGES, ["custom", "Custom dates"]], { value: period.range });
  const end = today(period.tz);
  const from = h("input", { type: "date", value: period.from || addDays(end, -29) });
  const to = h("input", { type: "date", value: period.to || end });
  const dates = [field("From", from), field("To", to, "Included.")];
  const sync = () => {
    for (const node of dates) node.hidden = range.value !== "custom";
  };
  range.addEventListener("change", sync);
  sync();

  const zones = h(
    "datalist",
    { id: uid("zones") },
    timeZones().map((zone) => h("option", { value: zone })),
  );
  const tz = h("input", {
    type: "text",
    value: period.tz,
    list: zones.id,
    autocomplete: "off",
    spellcheck: "false",
    class: "zone",
  });
  return {
    node: [field("Date range", range), ...dates, field("Time zone", tz), zones],
    read() {
      const zone = tz.value.trim();
      if (!isTimeZone(zone)) throw new InputError(`${zone || "An empty name"} is not a time zone.`);
      if (range.value !== "custom") return { range: range.value, tz: zone };
      if (!isDate(from.value) || !isDate(to.value)) {
        throw new InputError("Choose both dates of the range.");
      }
      if (from.value > to.value) throw new InputError("The range's start is after its end.");
      return { range: "custom", from: from.value, to: to.value, tz: zone };
    },
  };
}

/**
 * Runs queries for one view: a new run aborts the one still running, leaving the view aborts
 * both. Resolves to the answer, or to null when this run was replaced or the view left.
 */
function queryRunner(ctx) {
  let running = null;
  ctx.onLeave(() => running && running.abort());
  return async (body) => {
    if (running) running.abort();
    const controller = new AbortController();
    running = controller;
    try {
      return await runQuery(ctx.app.id, body, controller.signal);
    } catch (error) {
      if (error.name === "AbortError") return null;
      throw error;
    } finally {
      if (running === controller) running = null;
    }
  };
}

/**
 * Wires a query form to its results. On submit the form is read with `read()` (a mistake is
 * shown in `problems`, next to the controls), the state goes to the URL (`url(state)`) and
 * `query(state)` runs; `draw(state, answer)` fills `results`, an API error goes to `problems`.
 * Returns show(state), which runs a state without the form (the one from the URL).
 */
export function wireQuery(ctx, { form, problems, results, read, url, query, draw }) {
  const run = queryRunner(ctx);

  async function show(state) {
    clear(problems);
    clear(results).append(h("p", { class: "loading", role: "status" }, "Loading…"));
    results.setAttribute("aria-busy", "true");
    let answer;
    try {
      answer = await run(query(state));
    } catch (error) {
      clear(results).removeAttribute("aria-busy");
      problems.append(errorBox(error));
      return;
    }
    if (!answer) return; // a newer run took over, or the view is gone
    results.removeAttribute("aria-busy");
    draw(state, answer);
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    clear(problems);
    let state;
    try {
      state = read();
    } catch (error) {
      problems.append(errorBox(error));
      return;
    }
    ctx.setQuery(url(state));
    show(state);
  });
  return show;
}

/** Seconds as a short duration ("45 s", "2.5 h"). */
export function formatSeconds(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  if (seconds < 60) return `${format.number(seconds)} s`;
  if (seconds < 3600) return `${format.number(seconds / 60)} min`;
  if (seconds < 86400) return `${format.number(seconds / 3600)} h`;
  return `${format.number(seconds / 86400)} d`;
}
