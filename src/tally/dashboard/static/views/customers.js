// Finding customers by user or device id; the list starts with the most recently seen.

import { api, appPath } from "../api.js";
import { appHref } from "../app.js";
import { clear, errorBox, field, format, h, pageHeader, table } from "../dom.js";

export function customerHref(appId, customer) {
  return appHref(appId, `/customers/${encodeURIComponent(customer)}`);
}

export async function render(ctx) {
  const search = h("input", {
    type: "search",
    name: "search",
    value: ctx.query.get("search") || "",
    placeholder: "user id or device id",
    autocomplete: "off",
  });
  const results = h("div", { "aria-live": "polite" });
  const form = h(
    "form",
    { class: "toolbar", role: "search", "aria-label": "Customers" },
    field("Search customers", search, "Any part of a user id or device id; case does not matter."),
    h("button", { type: "submit", class: "primary" }, "Search"),
  );

  async function load() {
    const text = search.value.trim();
    ctx.setQuery({ search: text });
    clear(results).append(h("p", { class: "loading" }, "Searching…"));
    try {
      const query = new URLSearchParams({ limit: "100", ...(text ? { search: text } : {}) });
      const { customers } = await api(`${appPath(ctx.app.id, "customers")}?${query}`, { signal: ctx.signal });
      clear(results).append(
        table({
          caption: text ? `Customers matching “${text}”` : "Most recently seen customers",
          columns: [
            {
              label: "Customer",
              value: (c) => h("a", { href: customerHref(ctx.app.id, c.id) }, c.id),
              rowHeader: true,
            },
            { label: "Kind", value: (c) => h("span", { class: "badge" }, c.kind) },
            { label: "Events", value: (c) => format.number(c.events), numeric: true },
            { label: "First seen", value: (c) => format.time(c.first_seen) },
            { label: "Last seen", value: (c) => format.time(c.last_seen) },
          ],
          rows: customers,
          empty: text ? "No customer id contains that text." : "No customers yet.",
        }),
      );
    } catch (error) {
      if (error.name !== "AbortError") clear(results).append(errorBox(error));
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    load();
  });
  ctx.main.append(pageHeader("Customers"), form, results);
  await load();
}
