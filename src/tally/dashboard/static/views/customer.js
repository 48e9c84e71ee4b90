// One customer: their linked ids, devices and properties, and their activity feed (newest
// first, labelled, a page at a time) across every linked device.

import { ApiError, api, appPath } from "../api.js";
import { appHref } from "../app.js";
import { clear, errorBox, format, h, pageHeader, table } from "../dom.js";

const PAGE = 50;

function describeDevice(device) {
  const parts = [device.os, device.browser, device.device_type].filter(Boolean);
  return parts.length ? parts.join(" · ") : "unknown device";
}

function propertiesTable(properties) {
  const rows = Object.entries(properties).sort(([a], [b]) => a.localeCompare(b));
  return table({
    caption: "Properties",
    captionHidden: true,
    columns: [
      { label: "Property", value: ([key]) => key, rowHeader: true },
      {
        label: "Value",
        value: ([, value]) => (typeof value === "object" && value !== null ? h("code", {}, JSON.stringify(value)) : String(value)),
      },
    ],
    rows,
    empty: "No properties reported (identify traits, Countly user details, EngageLab user properties).",
  });
}

function devicesTable(devices) {
  return table({
    caption: "Devices",
    captionHidden: true,
    columns: [
      { label: "Device", value: (d) => h("code", {}, d.device), rowHeader: true },
      { label: "What", value: describeDevice },
      { label: "Where", value: (d) => [d.city, d.country_code].filter(Boolean).join(", ") || "–" },
      { label: "SDK", value: (d) => d.sdk_name || "–" },
      { label: "Events", value: (d) => format.number(d.events), numeric: true },
      { label: "Last seen", value: (d) => format.time(d.last_seen) },
    ],
    rows: devices,
    empty: "No device ids in this customer's events.",
  });
}

function eventSummary(event) {
  const keys = Object.keys(event.properties || {}).slice(0, 4);
  return keys.map((key) => `${key}: ${JSON.stringify(event.properties[key])}`).join(", ");
}

function activityRow(event) {
  return h(
    "li",
    { class: "activity-item" },
    h("time", { datetime: event.time }, format.time(event.time)),
    h(
      "div",
      {},
      h("strong", {}, event.label || event.name),
      event.label ? h("span", { class: "hint" }, ` ${event.name}`) : null,
      h("div", { class: "hint" }, [event.device ? `device ${event.device}` : null, event.protocol, eventSummary(event)].filter(Boolean).join(" · ")),
    ),
  );
}

export async function render(ctx) {
  const customer = ctx.params.user;
  const back = h("a", { href: appHref(ctx.app.id, "/customers") }, "All customers");
  ctx.main.append(pageHeader(`Customer ${customer}`, back));
  let profile;
  try {
    profile = await api(appPath(ctx.app.id, "customers", customer), { signal: ctx.signal });
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) {
      ctx.main.append(h("p", { class: "notice" }, "This id has no events in this app."));
      return;
    }
    throw error;
  }

  const facts = h(
    "dl",
    { class: "facts" },
    h("dt", {}, "Events"),
    h("dd", {}, format.number(profile.events)),
    h("dt", {}, "First seen"),
    h("dd", {}, format.time(profile.first_seen)),
    h("dt", {}, "Last seen"),
    h("dd", {}, format.time(profile.last_seen)),
    h("dt", {}, "Linked ids"),
    h(
      "dd",
      {},
      profile.linked_ids.length
        ? profile.linked_ids.map((id, index) => [index ? ", " : "", h("code", {}, id)])
        : "none",
    ),
  );
  const feed = h("ol", { class: "activity", "aria-label": "Activity, newest first" });
  const more = h("button", { type: "button", class: "secondary" }, "Show older events");
  const feedStatus = h("div", { "aria-live": "polite" });
  let cursor = null;

  async function loadPage() {
    more.disabled = true;
    try {
      const query = new URLSearchParams({ limit: String(PAGE), ...(cursor ? { cursor } : {}) });
      const page = await api(`${appPath(ctx.app.id, "users", customer, "activity")}?${query}`, { signal: ctx.signal });
      feed.append(...page.events.map(activityRow));
      cursor = page.next_cursor;
      more.hidden = !cursor;
      clear(feedStatus).append(`${feed.children.length} events shown${cursor ? "" : ", the oldest included"}.`);
    } catch (error) {
      if (error.name !== "AbortError") clear(feedStatus).append(errorBox(error));
    } finally {
      more.disabled = false;
    }
  }
  more.addEventListener("click", loadPage);

  ctx.main.append(
    h(
      "div",
      { class: "customer-grid" },
      h(
        "div",
        {},
        h("section", { class: "panel" }, h("h2", {}, "Summary"), facts),
        h("section", {}, h("h2", {}, "Properties"), propertiesTable(profile.properties)),
        h("section", {}, h("h2", {}, "Devices"), devicesTable(profile.devices)),
        h(
          "section",
          {},
          h("h2", {}, "Most frequent events"),
          table({
            caption: "Most frequent events",
            captionHidden: true,
            columns: [
              { label: "Event", value: (e) => e.name, rowHeader: true },
              { label: "Events", value: (e) => format.number(e.events), numeric: true },
              { label: "Last", value: (e) => format.time(e.last_seen) },
            ],
            rows: profile.top_events,
          }),
        ),
      ),
      h("section", { class: "panel" }, h("h2", {}, "Activity"), feed, feedStatus, more),
    ),
  );
  await loadPage();
}
