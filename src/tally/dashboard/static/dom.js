// Building the page safely: every text goes in as text (never as HTML), so event names,
// properties and ids sent by anyone cannot inject markup.

let idCounter = 0;

/** A fresh id for label/aria wiring. */
export function uid(prefix = "id") {
  idCounter += 1;
  return `${prefix}-${idCounter}`;
}

/**
 * h("button", {class: "primary", onclick: fn, "aria-label": "Close"}, "Text", child, [more])
 * Attributes: `class`, `text`, `on<event>` (a function), booleans (set when true), `dataset`
 * (an object), anything else as an attribute. Children: strings, numbers, nodes, arrays, null.
 */
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") {
      node.addEventListener(key.slice(2), value);
    } else if (key === "value" && "value" in node) node.value = value;
    else if (value === true) node.setAttribute(key, "");
    else node.setAttribute(key, String(value));
  }
  append(node, children);
  return node;
}

export function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function clear(node) {
  node.replaceChildren();
  return node;
}

/** Says `message` to screen readers (the page's polite live region). */
export function announce(message) {
  const region = document.getElementById("announcer");
  if (!region) return;
  region.textContent = "";
  setTimeout(() => {
    region.textContent = message;
  }, 50);
}

/** A labelled form control: h("label") + control (+ a hint wired with aria-describedby). */
export function field(label, control, hint) {
  if (!control.id) control.id = uid("field");
  const parts = [h("label", { for: control.id }, label), control];
  if (hint) {
    const hintId = uid("hint");
    control.setAttribute("aria-describedby", hintId);
    parts.push(h("p", { class: "hint", id: hintId }, hint));
  }
  return h("div", { class: "field" }, parts);
}

/** <select> from [[value, label], ...] or [value, ...]. */
export function select(options, { value, name, id, onchange, label } = {}) {
  const node = h("select", { name, id, onchange, "aria-label": label });
  for (const option of options) {
    const [optionValue, optionLabel] = Array.isArray(option) ? option : [option, option];
    node.append(h("option", { value: optionValue }, optionLabel));
  }
  if (value !== undefined && value !== null) node.value = value;
  return node;
}

/**
 * A data table. columns: [{label, value: row => text|node, numeric?}]. `caption` names it for
 * screen readers; `empty` is shown as one row when there are no rows.
 */
export function table({ caption, columns, rows, empty = "Nothing yet.", captionHidden = false }) {
  const head = h(
    "thead",
    {},
    h(
      "tr",
      {},
      columns.map((column) =>
        h("th", { scope: "col", class: column.numeric ? "num" : null }, column.label),
      ),
    ),
  );
  const body = h("tbody");
  if (!rows.length) {
    body.append(h("tr", {}, h("td", { colspan: columns.length, class: "empty" }, empty)));
  }
  for (const row of rows) {
    body.append(
      h(
        "tr",
        {},
        columns.map((column, index) => {
          const cell = column.value(row);
          const tag = index === 0 && column.rowHeader ? "th" : "td";
          return h(tag, { class: column.numeric ? "num" : null, scope: tag === "th" ? "row" : null }, cell);
        }),
      ),
    );
  }
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      {},
      caption ? h("caption", { class: captionHidden ? "visually-hidden" : null }, caption) : null,
      head,
      body,
    ),
  );
}

/** An error message block (role=alert) for a failed API call or a bad input. */
export function errorBox(error) {
  const message = error && error.message ? error.message : String(error);
  const code = error && error.code ? ` (${error.code})` : "";
  return h("div", { class: "error", role: "alert" }, message + code);
}

/** A button that copies `text()` to the clipboard and says so. */
export function copyButton(text, label = "Copy") {
  const button = h("button", { type: "button", class: "secondary small" }, label);
  button.addEventListener("click", async () => {
    const value = typeof text === "function" ? text() : text;
    try {
      await navigator.clipboard.writeText(value);
      button.textContent = "Copied";
      announce("Copied to the clipboard");
    } catch {
      button.textContent = "Select and copy";
    }
    setTimeout(() => {
      button.textContent = label;
    }, 1500);
  });
  return button;
}

/** A <pre><code> block with a copy button. */
export function codeBlock(code, label) {
  return h(
    "div",
    { class: "code-block" },
    h("pre", { tabindex: "0", "aria-label": label }, h("code", {}, code)),
    copyButton(code, "Copy"),
  );
}

const numberFormat = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 });
const percentFormat = new Intl.NumberFormat(undefined, {
  style: "percent",
  maximumFractionDigits: 1,
});

export const format = {
  number(value) {
    if (value === null || value === undefined) return "–";
    return numberFormat.format(value);
  },
  percent(value) {
    if (value === null || value === undefined || Number.isNaN(value)) return "–";
    return percentFormat.format(value);
  },
  /** A local date and time for an ISO instant. */
  time(iso, timeZone) {
    if (!iso) return "–";
    return new Date(iso).toLocaleString(undefined, {
      timeZone,
      dateStyle: "medium",
      timeStyle: "medium",
    });
  },
  /** Change of `current` against `previous`: {text, direction: "up"|"down"|"flat"|"new"}. */
  change(current, previous) {
    if (!previous) {
      return current ? { text: "new", direction: "new" } : { text: "no change", direction: "flat" };
    }
    const ratio = (current - previous) / previous;
    if (Math.abs(ratio) < 0.0005) return { text: "no change", direction: "flat" };
    const sign = ratio > 0 ? "+" : "−";
    return {
      text: `${sign}${percentFormat.format(Math.abs(ratio))}`,
      direction: ratio > 0 ? "up" : "down",
    };
  },
  json(value) {
    return JSON.stringify(value, null, 2);
  },
};

/** A page heading with optional actions beside it. */
export function pageHeader(title, ...actions) {
  return h(
    "div",
    { class: "page-header" },
    h("h1", { tabindex: "-1" }, title),
    actions.length ? h("div", { class: "actions" }, actions) : null,
  );
}
