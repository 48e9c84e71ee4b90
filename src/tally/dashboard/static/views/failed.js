// Failed events: what Tally refused, why, and the request as it was sent. Once the catalog is
// fixed (Events, Rules) they can be replayed: each goes through the pipeline again with the
// original request's credentials and time. The filter and the open event live in the URL.

import { api, appPath } from "../api.js";
import { appHref } from "../app.js";
import { append, clear, copyButton, errorBox, field, format, h, pageHeader, select, table } from "../dom.js";

const PAGE = 50;
const MAX_LIST = 1000; // the most the API lists at once
const MAX_REPLAY = 10000; // the most it replays at once

const REASONS = {
  invalid_body: "the request body could not be read",
  invalid_event: "an item is not an object, or a field has the wrong type",
  event_too_large: "the event is larger than 32 KB",
  missing_name: "the event has no name",
  invalid_name: "the name breaks the app's name rule",
  invalid_time: "the time cannot be read, or is before 2000",
  invalid_measure: "count, sum or dur is out of range",
  invalid_id: "the client's event id is empty or too long",
  too_many_properties: "more than 300 properties",
  too_many_events: "more events than one request may carry",
  invalid_checksum: "the Countly checksum is missing or wrong",
  missing_identity: "the event names neither a user nor a device",
  undefined_event: "the event has no definition and this path needs one",
  forbidden_event: "the definition does not allow these credentials",
  reserved_event: "only the transactions endpoint may send this name",
  missing_property: "a required property is missing",
  invalid_property: "a property's value does not have its defined type",
};
const STATES = [
  ["waiting", "Waiting for replay"],
  ["replayed", "Replayed"],
  ["all", "All"],
];

/** The payload for people: indented JSON when it is JSON, else the text as it came. */
function payloadText(detail) {
  if (detail.payload_encoding !== "utf-8") return detail.payload;
  try {
    return format.json(JSON.parse(detail.payload));
  } catch {
    return detail.payload;
  }
}

function stateBadge(item) {
  if (item.replayed_at) return h("span", { class: "badge good" }, "replayed");
  if (!item.replayable)
    return h("span", { class: "badge", title: "Resend it from the client" }, "not replayable");
  return h("span", { class: "badge" }, "waiting");
}

export async function render(ctx) {
  const limit = Number(ctx.query.get("limit"));
  const filter = {
    reason: REASONS[ctx.query.get("reason")] ? ctx.query.get("reason") : "",
    name: ctx.query.get("name") || "",
    state: STATES.some(([key]) => key === ctx.query.get("state")) ? ctx.query.get("state") : "waiting",
    limit: Number.isInteger(limit) && limit > PAGE && limit <= MAX_LIST ? limit : PAGE,
  };
  let open = ctx.query.get("open");
  let items = [];
  const selected = new Set();

  const report = h("div", { role: "status" });
  const detailSlot = h("div", { id: "failed-detail" });
  const listSlot = h("div", {}, h("p", { class: "loading" }, "Loading the failed events…"));
  const replaySelected = h("button", { type: "button", class: "primary", disabled: true }, "Replay selected");
  const replayMatching = h("button", { type: "button", class: "secondary" }, "Replay all waiting that match");

  function saveState() {
    ctx.setQuery({
      reason: filter.reason,
      name: filter.name,
      state: filter.state === "waiting" ? null : filter.state,
      limit: filter.limit === PAGE ? null : filter.limit,
      open,
    });
  }

  // --- filters ------------------------------------------------------------------------------

  const reason = select([["", "All reasons"], ...Object.keys(REASONS).map((code) => [code, code])], {
    value: filter.reason,
  });
  const name = h("input", {
    type: "text",
    value: filter.name,
    autocomplete: "off",
    placeholder: "Exact name",
  });
  const stateChoice = select(STATES, { value: filter.state });
  const filters = h(
    "form",
    { class: "toolbar filters", "aria-label": "Filter the failed events" },
    field("Reason", reason),
    field("Event name", name),
    field("Show", stateChoice),
    h("button", { type: "submit", class: "secondary" }, "Filter"),
  );
  const applyFilters = (event) => {
    if (event) event.preventDefault();
    Object.assign(filter, {
      reason: reason.value,
      name: name.value.trim(),
      state: stateChoice.value,
      limit: PAGE,
    });
    saveState();
    loadList();
  };
  filters.addEventListener("submit", applyFilters);
  reason.addEventListener("change", () => applyFilters());
  stateChoice.addEventListener("change", () => applyFilters());

  // --- the list -----------------------------------------------------------------------------

  function listPath() {
    const query = new URLSearchParams({ limit: String(filter.limit) });
    if (filter.reason) query.set("reason", filter.reason);
    if (filter.name) query.set("name", filter.name);
    if (filter.state !== "all") query.set("replayed", String(filter.state === "replayed"));
    return `${appPath(ctx.app.id, "failed-events")}?${query}`;
  }

  const canReplay = (item) => item.replayable && !item.replayed_at;

  function updateSelection() {
    replaySelected.disabled = selected.size === 0;
    replaySelected.textContent = selected.size ? `Replay selected (${selected.size})` : "Replay selected";
    const all = listSlot.querySelector("input.select-all");
    if (!all) return;
    const selectable = items.filter(canReplay);
    all.checked = selectable.length > 0 && selectable.every((item) => selected.has(item.id));
    all.indeterminate = !all.checked && selected.size > 0;
  }

  function describe(item) {
    return `${item.name || "unnamed event"} received ${format.time(item.received_at, ctx.timeZone)}`;
  }

  function checkbox(item) {
    if (!canReplay(item)) return "";
    const box = h("input", { type: "checkbox", "aria-label": `Select ${describe(item)}` });
    box.checked = selected.has(item.id);
    box.addEventListener("change", () => {
      if (box.checked) selected.add(item.id);
      else selected.delete(item.id);
      updateSelection();
    });
    return box;
  }

  function selectAll() {
    const box = h("input", {
      type: "checkbox",
      class: "select-all",
      "aria-label": "Select every event shown that can be replayed",
    });
    box.addEventListener("change", () => {
      for (const item of items.filter(canReplay)) {
        if (box.checked) selected.add(item.id);
        else selected.delete(item.id);
      }
      for (const row of listSlot.querySelectorAll("tbody input[type=checkbox]")) row.checked = box.checked;
      updateSelection();
    });
    return box;
  }

  function drawList() {
    const more = items.length === filter.limit && filter.limit < MAX_LIST;
    const count = `${items.length}${more ? "+" : ""} failed event${items.length === 1 ? "" : "s"}`;
    append(clear(listSlot), [
      table({
        caption: `${count}, newest first`,
        columns: [
          { label: selectAll(), value: checkbox },
          { label: "Received", value: (item) => format.time(item.received_at, ctx.timeZone) },
          { label: "Event", value: (item) => (item.name ? h("code", {}, item.name) : "–") },
          { label: "Reason", value: (item) => h("span", { class: "badge bad" }, item.reason) },
          { label: "Message", value: (item) => h("span", { class: "message" }, item.message) },
          { label: "Protocol", value: (item) => item.protocol },
          { label: "State", value: stateBadge },
          {
            label: "Details",
            value: (item) =>
              h(
                "button",
                {
                  type: "button",
                  class: "secondary small",
                  "aria-label": `Details of ${describe(item)}`,
                  "aria-expanded": String(item.id === open),
                  "aria-controls": "failed-detail",
                  dataset: { failedId: item.id },
                  onclick: () => (item.id === open ? closeDetail() : openDetail(item.id)),
                },
                "Details",
              ),
          },
        ],
        rows: items,
        empty:
          filter.reason || filter.name
            ? "No failed event matches the filter."
            : "No failed events. Everything sent was accepted.",
      }),
      more
        ? h(
            "button",
            {
              type: "button",
              class: "secondary more",
              onclick: () => {
                filter.limit = Math.min(filter.limit + PAGE, MAX_LIST);
                saveState();
                loadList();
              },
            },
            "Show more",
          )
        : null,
    ]);
    listSlot.querySelector(".table-wrap").classList.add("names");
    updateSelection();
  }

  async function loadList() {
    try {
      items = (await api(listPath(), { signal: ctx.signal })).failed_events;
      const shown = new Set(items.map((item) => item.id));
      for (const id of [...selected]) if (!shown.has(id)) selected.delete(id);
      drawList();
    } catch (error) {
      if (error.name !== "AbortError") clear(listSlot).append(errorBox(error));
    }
  }

  // --- one failed event ---------------------------------------------------------------------

  function facts(detail) {
    const rows = [
      ["Reason", [h("span", { class: "badge bad" }, detail.reason), " ", REASONS[detail.reason] || ""]],
      ["Message", detail.message],
      ["Event", detail.name ? h("code", {}, detail.name) : "–"],
      ["Protocol", detail.protocol],
      ["Received", format.time(detail.received_at, ctx.timeZone)],
      detail.event_index !== null ? ["Position in the request", `event ${detail.event_index + 1}`] : null,
      ["State", stateBadge(detail)],
      detail.replayed_at
        ? [
            "Replayed",
            [format.time(detail.replayed_at, ctx.timeZone), " as ", h("code", {}, detail.replayed_as)],
          ]
        : null,
      ["Id", h("code", {}, detail.id)],
    ];
    return h(
      "dl",
      { class: "facts" },
      rows.filter(Boolean).map(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]),
    );
  }

  function closeDetail() {
    const id = open;
    open = null;
    clear(detailSlot);
    saveState();
    drawList();
    const button = [...listSlot.querySelectorAll("button[data-failed-id]")].find(
      (b) => b.dataset.failedId === id,
    );
    (button || replayMatching).focus();
  }

  async function openDetail(id, { focus = true } = {}) {
    open = id;
    saveState();
    drawList();
    clear(detailSlot).append(h("p", { class: "loading" }, "Loading the failed event…"));
    let detail;
    try {
      detail = await api(appPath(ctx.app.id, "failed-events", id), { signal: ctx.signal });
    } catch (error) {
      if (error.name === "AbortError") return;
      clear(detailSlot).append(errorBox(error));
      return;
    }
    const text = payloadText(detail);
    const heading = h(
      "h2",
      { id: "failed-detail-title", tabindex: "-1" },
      `Failed event ${detail.name || "without a name"}`,
    );
    clear(detailSlot).append(
      h(
        "section",
        { class: "panel", "aria-labelledby": "failed-detail-title" },
        heading,
        facts(detail),
        h("h3", {}, "Original payload"),
        h(
          "p",
          { class: "hint" },
          detail.payload_encoding === "base64"
            ? "As it arrived; it is not text, so it is shown in base64."
            : "As it arrived.",
        ),
        h("pre", { class: "payload", tabindex: "0", "aria-label": "Original payload" }, text),
        h(
          "div",
          { class: "row-actions" },
          canReplay(detail)
            ? h(
                "button",
                {
                  type: "button",
                  class: "primary",
                  onclick: () => replay({ ids: [detail.id] }, "this event"),
                },
                "Replay this event",
              )
            : null,
          copyButton(detail.payload, "Copy the payload"),
          h("button", { type: "button", class: "secondary", onclick: closeDetail }, "Close details"),
        ),
      ),
    );
    if (focus) heading.focus();
  }

  // --- replay -------------------------------------------------------------------------------

  function showReport(result, what, names) {
    const parts = [
      h(
        "p",
        {},
        h("strong", {}, `Replayed ${what}:`),
        ` ${result.replayed} passed (${result.stored} stored, ${result.duplicates} already stored,`,
        ` ${result.discarded} discarded by the rules), ${result.still_failing.length} still failing.`,
      ),
    ];
    if (result.still_failing.length) {
      parts.push(
        table({
          caption: `Still failing: ${result.still_failing.length}`,
          columns: [
            {
              label: "Event",
              rowHeader: true,
              value: (row) => h("code", {}, names.get(row.id) || row.id),
            },
            { label: "Reason", value: (row) => h("span", { class: "badge bad" }, row.reason) },
            { label: "Message", value: (row) => row.message },
          ],
          rows: result.still_failing,
        }),
      );
    }
    if (result.not_replayable.length) {
      parts.push(
        h(
          "p",
          { class: "hint" },
          `${result.not_replayable.length} could not be decoded into events at all: resend them from the client.`,
        ),
      );
    }
    const ok = !result.still_failing.length && !result.not_replayable.length;
    clear(report).append(h("div", { class: ok ? "notice" : "warning" }, parts));
  }

  async function replay(body, what) {
    clear(report).append(h("p", { class: "loading" }, "Replaying…"));
    replaySelected.disabled = replayMatching.disabled = true;
    try {
      const result = await api(appPath(ctx.app.id, "failed-events", "replay"), { method: "POST", body });
      selected.clear();
      showReport(result, what, new Map(items.map((item) => [item.id, item.name || "unnamed event"])));
      await loadList();
      if (open) await openDetail(open, { focus: false });
    } catch (error) {
      clear(report).append(errorBox(error));
    } finally {
      replayMatching.disabled = false;
      updateSelection();
    }
  }

  replaySelected.addEventListener("click", () => {
    const count = selected.size;
    replay({ ids: [...selected] }, count === 1 ? "1 selected event" : `${count} selected events`);
  });
  replayMatching.addEventListener("click", () => {
    const body = { limit: MAX_REPLAY };
    if (filter.reason) body.reason = filter.reason;
    if (filter.name) body.name = filter.name;
    replay(body, "the waiting events that match the filter");
  });

  ctx.main.append(
    pageHeader("Failed events"),
    h(
      "p",
      { class: "hint intro" },
      "Events Tally refused, with the reason and the request as it was sent. Fix the cause (define the event on ",
      h("a", { href: appHref(ctx.app.id, "/events") }, "Events"),
      ", relax the ",
      h("a", { href: appHref(ctx.app.id, "/rules") }, "Rules"),
      "), then replay them.",
    ),
    filters,
    report,
    detailSlot,
    h(
      "section",
      { "aria-label": "Failed events" },
      h("div", { class: "toolbar list-actions" }, replaySelected, replayMatching),
      listSlot,
    ),
  );
  await loadList();
  if (open) await openDetail(open, { focus: false });
}
