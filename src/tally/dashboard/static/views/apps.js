// Every app, and creating one (its API secret is shown this once).

import { api } from "../api.js";
import { appHref } from "../app.js";
import { clear, codeBlock, errorBox, field, format, h, pageHeader, table } from "../dom.js";

export async function render(ctx) {
  const list = h("div");
  const created = h("div", { class: "created", "aria-live": "polite" });

  function drawList() {
    clear(list).append(
      table({
        caption: "Apps",
        captionHidden: true,
        columns: [
          { label: "Name", value: (app) => h("a", { href: appHref(app.id) }, app.name), rowHeader: true },
          { label: "App id", value: (app) => h("code", {}, app.id) },
          { label: "App key", value: (app) => h("code", {}, app.app_key) },
          { label: "Created", value: (app) => format.time(app.created_at) },
        ],
        rows: ctx.apps,
        empty: "No apps yet: create the first one below.",
      }),
    );
  }

  const name = h("input", { type: "text", name: "name", required: true, maxlength: "200" });
  const problem = h("div");
  const submit = h("button", { type: "submit", class: "primary" }, "Create app");
  const form = h(
    "form",
    { class: "inline-form", "aria-label": "Create an app" },
    field("New app name", name),
    submit,
    problem,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clear(problem);
    submit.disabled = true;
    try {
      const app = await api("/api/v1/apps", { method: "POST", body: { name: name.value.trim() } });
      ctx.apps = await ctx.refreshApps();
      drawList();
      name.value = "";
      clear(created).append(
        h("h2", { tabindex: "-1" }, `Created ${app.name}`),
        h(
          "p",
          { class: "warning" },
          "Copy the API secret now: Tally keeps only a hash of it and will not show it again.",
        ),
        codeBlock(
          `App id:     ${app.id}\nApp key:    ${app.app_key}\nAPI key:    ${app.api_key}\nAPI secret: ${app.api_secret}`,
          "The new app's keys",
        ),
        h("p", {}, h("a", { href: appHref(app.id, "/setup") }, `Install Tally in ${app.name}`)),
      );
      created.querySelector("h2").focus();
    } catch (error) {
      problem.append(errorBox(error));
    } finally {
      submit.disabled = false;
    }
  });

  drawList();
  ctx.main.append(
    pageHeader("Apps"),
    list,
    h("section", { class: "panel" }, h("h2", {}, "Create an app"), form),
    created,
  );
}
