// Events: the app's event definitions (which events Tally accepts, from whom, with which
// property types) and its aliases (events stored under another name). A change applies to the
// pipeline at once, so deleting a definition asks first.

import { api, appPath } from "../api.js";
import { announce, clear, errorBox, field, h, pageHeader, select, table, uid } from "../dom.js";

const PERMISSIONS = [
  ["anonymous", "Anonymous", "the app key is enough (browser tracker, mobile SDKs)"],
  ["customer", "Customer", "needs a customer JWT, or the API key and secret"],
  ["server", "Server", "only the API key and secret (server-side code)"],
];
const TYPES = ["string", "number", "boolean", "datetime", "list", "object"];
const STATUSES = [
  ["active", "Active"],
  ["hidden", "Hidden: stored, left out of the dashboard's lists"],
  ["deprecated", "Deprecated: stored, flagged so nobody builds on it"],
];
// Deleting an app's own definition of one of these brings Tally's built-in one back.
const BUILT_IN_NAMES = ["button.click", "form.submit", "page.visit", "session.end", "session.start"];

const permissionLabel = (value) => (PERMISSIONS.find(([key]) => key === value) || [value, value])[1];

export async function render(ctx) {
  const state = { definitions: [], aliases: [], search: ctx.query.get("q") || "", confirming: null };
  let editing = null; // {name}: the event in the editor, null for a new one

  const notice = h("div", { class: "notice", hidden: true }); // said aloud by announce()
  const editorSlot = h("div");
  const listSlot = h("div", {}, h("p", { class: "loading" }, "Loading the event definitions…"));
  const aliasSlot = h("div", {}, h("p", { class: "loading" }, "Loading the aliases…"));
  const aliasNames = h("datalist", { id: uid("event-names") });
  const search = h("input", {
    type: "search",
    value: state.search,
    placeholder: "Name, label or description",
    oninput: () => {
      state.search = search.value;
      saveState();
      drawList();
    },
  });
  const newButton = h(
    "button",
    { type: "button", class: "primary", onclick: () => openEditor(null) },
    "Define an event",
  );

  function saveState() {
    ctx.setQuery({
      q: state.search,
      edit: editing && editing.name,
      new: editing && !editing.name ? "1" : null,
    });
  }

  function say(message) {
    notice.hidden = false;
    notice.textContent = message;
    announce(message);
  }

  async function load() {
    const [definitions, aliases] = await Promise.all([
      api(appPath(ctx.app.id, "definitions"), { signal: ctx.signal }),
      api(appPath(ctx.app.id, "aliases"), { signal: ctx.signal }),
    ]);
    state.definitions = definitions.events;
    state.aliases = aliases.aliases;
    clear(aliasNames).append(state.definitions.map((d) => h("option", { value: d.name })));
  }

  function matches(definition) {
    const needle = state.search.trim().toLowerCase();
    if (!needle) return true;
    const { name, display_name: display, description, label_template: label } = definition;
    return [name, display, description, label].some((text) => text.toLowerCase().includes(needle));
  }

  function markers(definition) {
    const marks = [];
    if (definition.built_in) marks.push(h("span", { class: "badge" }, "built-in"));
    if (definition.source === "first_seen") {
      marks.push(
        h("span", { class: "badge", title: "Tally defined it when it first arrived" }, "first seen"),
      );
    }
    if (definition.status === "hidden") marks.push(h("span", { class: "badge" }, "hidden"));
    if (definition.status === "deprecated") marks.push(h("span", { class: "badge bad" }, "deprecated"));
    if (!definition.follows_convention) {
      marks.push(
        h("span", { class: "badge bad", title: "Not in the context.action form" }, "off convention"),
      );
    }
    return marks.length ? h("span", { class: "badges" }, marks) : "–";
  }

  function actions(definition) {
    const edit = h(
      "button",
      {
        type: "button",
        class: "secondary small",
        "aria-label": `Edit ${definition.name}`,
        onclick: () => openEditor(definition),
      },
      "Edit",
    );
    if (definition.built_in) return h("span", { class: "row-actions" }, edit);
    const remove = h(
      "button",
      {
        type: "button",
        class: "danger small",
        "aria-label": `Delete ${definition.name}`,
        onclick: () => {
          state.confirming = definition.name;
          drawList();
          listSlot.querySelector(".confirm-row button.danger").focus();
        },
      },
      "Delete",
    );
    return h("span", { class: "row-actions" }, edit, remove);
  }

  const COLUMNS = [
    {
      label: "Event",
      rowHeader: true,
      value: (d) => [
        h("code", {}, d.name),
        d.display_name ? h("div", { class: "hint" }, d.display_name) : null,
      ],
    },
    { label: "Label template", value: (d) => (d.label_template ? h("code", {}, d.label_template) : "–") },
    { label: "Who may send it", value: (d) => permissionLabel(d.permission) },
    { label: "Properties", numeric: true, value: (d) => String(d.properties.length) },
    { label: "Notes", value: markers },
    { label: "Actions", value: actions },
  ];

  function confirmRow(name) {
    const builtIn = BUILT_IN_NAMES.includes(name);
    const problem = h("div");
    const cancel = () => {
      state.confirming = null;
      drawList();
      focusRowButton(`Delete ${name}`);
    };
    const confirm = h(
      "button",
      {
        type: "button",
        class: "danger",
        onclick: async () => {
          confirm.disabled = true;
          clear(problem);
          try {
            await api(appPath(ctx.app.id, "definitions", name), { method: "DELETE" });
            state.confirming = null;
            if (editing && editing.name === name) closeEditor();
            await load();
            drawList();
            say(`Deleted the definition of ${name}.`);
            search.focus();
          } catch (error) {
            confirm.disabled = false;
            problem.append(errorBox(error));
          }
        },
      },
      `Yes, delete ${name}`,
    );
    return h(
      "tr",
      { class: "confirm-row" },
      h(
        "td",
        { colspan: COLUMNS.length },
        h(
          "p",
          {},
          h("strong", {}, `Delete the definition of ${name}?`),
          " ",
          builtIn
            ? "Tally's built-in definition applies again."
            : "Events already stored are kept. From now on the name is undefined: the browser tracker (and every path of a strict app) rejects it, other paths define it again when it next arrives.",
        ),
        h(
          "div",
          { class: "row-actions" },
          confirm,
          h("button", { type: "button", class: "secondary", onclick: cancel }, "Cancel"),
        ),
        problem,
      ),
    );
  }

  function focusRowButton(label) {
    const button = [...listSlot.querySelectorAll("button")].find(
      (b) => b.getAttribute("aria-label") === label,
    );
    (button || search).focus();
  }

  function drawList() {
    const rows = state.definitions.filter(matches);
    const wrap = table({
      caption: `Event definitions: ${rows.length} of ${state.definitions.length}`,
      columns: COLUMNS,
      rows,
      empty: state.definitions.length ? "No event matches the search." : "No events are defined yet.",
    });
    const index = rows.findIndex((d) => d.name === state.confirming);
    if (index >= 0) wrap.querySelectorAll("tbody tr")[index].after(confirmRow(state.confirming));
    wrap.classList.add("names");
    clear(listSlot).append(wrap);
  }

  function drawAliases() {
    clear(aliasSlot).append(
      table({
        caption: "Aliases",
        captionHidden: true,
        columns: [
          { label: "Sent as", rowHeader: true, value: (a) => h("code", {}, a.alias) },
          { label: "Stored as", value: (a) => h("code", {}, a.name) },
          {
            label: "Actions",
            value: (a) =>
              h(
                "button",
                {
                  type: "button",
                  class: "danger small",
                  "aria-label": `Remove alias ${a.alias}`,
                  onclick: () => removeAlias(a.alias),
                },
                "Remove",
              ),
          },
        ],
        rows: state.aliases,
        empty: "No aliases.",
      }),
    );
    aliasSlot.querySelector(".table-wrap").classList.add("names");
  }

  async function removeAlias(alias) {
    try {
      await api(appPath(ctx.app.id, "aliases", alias), { method: "DELETE" });
      await load();
      drawAliases();
      say(`Removed the alias ${alias}.`);
      aliasInput.focus();
    } catch (error) {
      clear(aliasProblem).append(errorBox(error));
    }
  }

  const aliasInput = h("input", { type: "text", required: true, maxlength: "255", autocomplete: "off" });
  const aliasTarget = h("input", {
    type: "text",
    required: true,
    maxlength: "255",
    list: aliasNames.id,
    autocomplete: "off",
  });
  const aliasProblem = h("div");
  const aliasForm = h(
    "form",
    { class: "inline-form", "aria-label": "Add an alias" },
    field("Alias (the name clients send)", aliasInput),
    field("Store it as", aliasTarget),
    h("button", { type: "submit", class: "primary" }, "Add alias"),
  );
  aliasForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    clear(aliasProblem);
    const alias = aliasInput.value.trim();
    const target = aliasTarget.value.trim();
    try {
      await api(appPath(ctx.app.id, "aliases", alias), { method: "PUT", body: { name: target } });
      await load();
      drawAliases();
      aliasInput.value = "";
      aliasTarget.value = "";
      say(`Events sent as ${alias} are now stored as ${target}.`);
      aliasInput.focus();
    } catch (error) {
      aliasProblem.append(errorBox(error));
    }
  });

  // --- the editor -------------------------------------------------------------------------

  function propertyRow(prop, rows) {
    const name = h("input", {
      type: "text",
      required: true,
      maxlength: "255",
      value: prop.name || "",
      autocomplete: "off",
    });
    const type = select(TYPES, { value: prop.type || "string" });
    const required = h("input", { type: "checkbox" });
    required.checked = Boolean(prop.required);
    const mismatch = select(
      [
        ["coerce", "Convert if lossless"],
        ["reject", "Reject the event"],
      ],
      { value: prop.on_mismatch || "coerce" },
    );
    const description = h("input", { type: "text", value: prop.description || "", autocomplete: "off" });
    const remove = h("button", { type: "button", class: "secondary small" }, "Remove");
    const row = h(
      "tr",
      {},
      [name, type, required, mismatch, description, remove].map((control) => h("td", {}, control)),
    );
    row.read = () => ({
      name: name.value.trim(),
      type: type.value,
      required: required.checked,
      on_mismatch: mismatch.value,
      description: description.value.trim(),
    });
    row.label = (n) => {
      name.setAttribute("aria-label", `Property ${n} name`);
      type.setAttribute("aria-label", `Property ${n} type`);
      required.setAttribute("aria-label", `Property ${n} required`);
      mismatch.setAttribute("aria-label", `Property ${n}: a value of another type`);
      description.setAttribute("aria-label", `Property ${n} description`);
      remove.setAttribute("aria-label", `Remove property ${n}`);
    };
    remove.addEventListener("click", () => {
      const next = row.nextElementSibling || row.previousElementSibling;
      row.remove();
      rows.relabel();
      if (next) next.querySelector("input").focus();
      else rows.addButton.focus();
    });
    row.focusName = () => name.focus();
    return row;
  }

  function propertiesEditor(properties) {
    const body = h("tbody");
    const empty = h(
      "p",
      { class: "hint" },
      "No properties: events may carry any, kept as undefined properties.",
    );
    const rows = {
      relabel() {
        [...body.children].forEach((row, i) => row.label(i + 1));
        empty.hidden = body.children.length > 0;
        wrap.hidden = body.children.length === 0;
      },
      read: () => [...body.children].map((row) => row.read()),
      addButton: h("button", { type: "button", class: "secondary small" }, "Add a property"),
    };
    const wrap = h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        { class: "props-table" },
        h("caption", { class: "visually-hidden" }, "Properties"),
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            ["Name", "Type", "Required", "Value of another type", "Description", ""].map((label) =>
              h("th", { scope: "col" }, label),
            ),
          ),
        ),
        body,
      ),
    );
    rows.addButton.addEventListener("click", () => {
      const row = propertyRow({}, rows);
      body.append(row);
      rows.relabel();
      row.focusName();
    });
    for (const prop of properties) body.append(propertyRow(prop, rows));
    rows.relabel();
    rows.node = h("fieldset", {}, h("legend", {}, "Properties"), empty, wrap, rows.addButton);
    return rows;
  }

  function permissionChoice(value) {
    const group = uid("permission");
    const radios = PERMISSIONS.map(([key, label, meaning]) => {
      const input = h("input", { type: "radio", name: group, value: key, id: uid("permission") });
      input.checked = key === value;
      return h(
        "div",
        { class: "choice" },
        input,
        h("label", { for: input.id }, h("strong", {}, label), ` — ${meaning}`),
      );
    });
    const node = h(
      "fieldset",
      {},
      h("legend", {}, "Who may send it"),
      h("p", { class: "hint" }, "Checked on the browser tracker, for customer JWTs and in strict mode."),
      radios,
    );
    return { node, read: () => node.querySelector("input:checked").value };
  }

  function openEditor(definition) {
    const isNew = !definition;
    const current = definition || {
      name: "",
      display_name: "",
      description: "",
      label_template: "",
      status: "active",
      permission: "server",
      properties: [],
    };
    editing = { name: isNew ? null : current.name };
    state.confirming = null;
    saveState();
    drawList();

    const title = isNew ? "Define an event" : `Edit ${current.name}`;
    const problem = h("div");
    const name = h("input", {
      type: "text",
      required: true,
      maxlength: "255",
      value: current.name,
      autocomplete: "off",
      readonly: !isNew,
    });
    name.addEventListener("input", () => clear(problem)); // an error about the old name is stale
    const display = h("input", { type: "text", value: current.display_name, autocomplete: "off" });
    const description = h("input", { type: "text", value: current.description, autocomplete: "off" });
    const label = h("input", { type: "text", value: current.label_template, autocomplete: "off" });
    const status = select(STATUSES, { value: current.status });
    const permission = permissionChoice(current.permission);
    const properties = propertiesEditor(current.properties);
    const submit = h("button", { type: "submit", class: "primary" }, isNew ? "Define event" : "Save changes");
    const headingId = uid("editor");
    const notes = [];
    if (current.built_in)
      notes.push("This is Tally's built-in definition: saving gives the app its own, which replaces it.");
    if (current.source === "first_seen")
      notes.push("Tally defined this event when it first arrived; saving makes the definition your own.");

    const form = h(
      "form",
      { class: "panel editor", "aria-labelledby": headingId },
      h("h2", { id: headingId, tabindex: "-1" }, title),
      notes.map((text) => h("p", { class: "notice" }, text)),
      h(
        "div",
        { class: "form-grid" },
        field(
          "Name",
          name,
          isNew
            ? "As clients send it, in the context.action form: checkout.start."
            : "To rename an event, define the new name and add an alias from the old one.",
        ),
        field("Display name", display, "Shown in the dashboard instead of the name."),
      ),
      field("Description", description),
      field(
        "Label template",
        label,
        "The label of events sent without one; {{property}} is replaced by that property: Checkout of {{items}} items.",
      ),
      h("div", { class: "form-grid" }, permission.node, field("Status", status)),
      properties.node,
      problem,
      h(
        "div",
        { class: "row-actions" },
        submit,
        h("button", { type: "button", class: "secondary", onclick: () => closeEditor(true) }, "Cancel"),
      ),
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clear(problem);
      const eventName = name.value.trim();
      const existing = state.definitions.find((d) => d.name === eventName && !d.built_in);
      if (isNew && existing) {
        problem.append(
          errorBox({ message: `${eventName} is already defined: edit it in the list instead.` }),
        );
        return;
      }
      submit.disabled = true;
      try {
        await api(appPath(ctx.app.id, "definitions", eventName), {
          method: "PUT",
          body: {
            display_name: display.value.trim(),
            description: description.value.trim(),
            label_template: label.value.trim(),
            status: status.value,
            permission: permission.read(),
            properties: properties.read(),
          },
        });
        await load();
        closeEditor();
        const saved = state.definitions.find((d) => d.name === eventName);
        if (saved && !matches(saved)) state.search = search.value = ""; // show what was saved
        saveState();
        drawList();
        say(isNew ? `Defined ${eventName}.` : `Saved ${eventName}.`);
        focusRowButton(`Edit ${eventName}`);
      } catch (error) {
        problem.append(errorBox(error));
      } finally {
        submit.disabled = false;
      }
    });
    clear(editorSlot).append(form);
    form.querySelector("h2").focus();
  }

  function closeEditor(restoreFocus = false) {
    const name = editing && editing.name;
    editing = null;
    clear(editorSlot);
    saveState();
    if (restoreFocus) {
      if (name) focusRowButton(`Edit ${name}`);
      else newButton.focus();
    }
  }

  ctx.main.append(
    pageHeader("Events", newButton),
    h(
      "p",
      { class: "hint intro" },
      "The events this app knows: who may send them and the type of each property. The browser tracker, customer JWTs and strict apps accept only defined events; ",
      h("code", {}, "transaction.charge"),
      " and ",
      h("code", {}, "product.buy"),
      " are reserved for the transactions endpoint and cannot be defined.",
    ),
    notice,
    editorSlot,
    h(
      "section",
      { "aria-labelledby": "definitions-title" },
      h("h2", { id: "definitions-title" }, "Definitions"),
      h("div", { class: "toolbar" }, field("Search events", search)),
      listSlot,
    ),
    h(
      "section",
      { class: "panel", "aria-labelledby": "aliases-title" },
      h("h2", { id: "aliases-title" }, "Aliases"),
      h(
        "p",
        { class: "hint" },
        "Events sent under an alias are stored under the event's name from then on; queries for either name see both.",
      ),
      aliasSlot,
      aliasForm,
      aliasProblem,
      aliasNames,
    ),
  );

  try {
    await load();
  } catch (error) {
    if (error.name === "AbortError") throw error;
    clear(listSlot).append(errorBox(error));
    clear(aliasSlot);
    return;
  }
  drawList();
  drawAliases();
  const wanted = ctx.query.get("edit");
  if (ctx.query.get("new")) openEditor(null);
  else if (wanted) {
    const definition = state.definitions.find((d) => d.name === wanted);
    if (definition) openEditor(definition);
    else say(`${wanted} is not defined.`);
  }
}
