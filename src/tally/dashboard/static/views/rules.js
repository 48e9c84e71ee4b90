// Rules: the app's settings (strict mode, name rules, allow/deny lists, traffic filters,
// retention, keys) and how many events each rule discarded. Saving sends only what changed, so
// a colleague's change to another setting is not overwritten.

import { api, appPath } from "../api.js";
import { addDays, today } from "../dates.js";
import { append, clear, errorBox, field, format, h, pageHeader, select, table, uid } from "../dom.js";

const DISCARD_DAYS = 30;

const NAME_RULES = [
  ["protocol", "Each protocol's own rule (default)"],
  ["synerise", "Synerise: 1 to 32 letters, digits, '.', '-' or '_'"],
  ["engagelab", "EngageLab: lowercase letters, digits and '_', starting with a letter"],
  ["countly", "Countly: under 128 characters"],
  ["any", "Any name up to 255 characters"],
];
const CONVENTIONS = [
  ["off", "Off: not checked"],
  ["warn", "Warn: accept and count (default)"],
  ["enforce", "Enforce: reject (invalid_name)"],
];

// How each kind of setting is shown in a control and read back from it.
const KINDS = {
  bool: {
    control: () => h("input", { type: "checkbox" }),
    write: (control, value) => (control.checked = Boolean(value)),
    read: (control) => control.checked,
  },
  choice: {
    control: (spec) => select(spec.options),
    write: (control, value) => (control.value = value),
    read: (control) => control.value,
  },
  lines: {
    control: () => h("textarea", { rows: "4", spellcheck: "false" }),
    write: (control, value) => (control.value = (value || []).join("\n")),
    read: (control) =>
      control.value
        .split("\n")
        .map((line) => line.trim())
        .filter(Boolean),
  },
  days: {
    control: () => h("input", { type: "number", min: "1", step: "1", inputmode: "numeric" }),
    write: (control, value) => (control.value = value ?? ""),
    read: (control) => (control.value.trim() === "" ? null : Number(control.value)),
  },
  text: {
    control: () => h("input", { type: "text", spellcheck: "false" }),
    write: (control, value) => (control.value = value || ""),
    read: (control) => control.value.trim() || null,
  },
  pem: {
    control: () => h("textarea", { rows: "5", spellcheck: "false" }),
    write: (control, value) => (control.value = value || ""),
    read: (control) => control.value.trim() || null,
  },
};

const GROUPS = [
  {
    title: "Definitions and names",
    settings: [
      {
        key: "strict",
        kind: "bool",
        label: "Strict mode: every event needs a definition",
        hint: "Without it only the browser tracker and customer JWTs need one; other paths define new events when they first arrive. Rejected events go to Failed events.",
      },
      {
        key: "name_rule",
        kind: "choice",
        options: NAME_RULES,
        label: "Event name rule",
        hint: "Which names are valid. By default each protocol applies its own.",
      },
      {
        key: "convention",
        kind: "choice",
        options: CONVENTIONS,
        label: "The context.action naming convention",
        hint: "Names like page.visit. Checked where the Synerise rule applies (Synerise endpoints, the browser tracker); Warn counts the misses in tally_name_convention_warnings_total.",
      },
    ],
  },
  {
    title: "Which events are kept",
    settings: [
      {
        key: "allowlist",
        kind: "lines",
        label: "Allow list",
        hint: "One glob pattern per line (checkout.*). When set, only matching events are stored; SDK-internal events are exempt.",
      },
      {
        key: "denylist",
        kind: "lines",
        label: "Deny list",
        hint: "One glob pattern per line (debug.*). Matching events are discarded, even when allowed.",
      },
      {
        key: "filter_bots",
        kind: "bool",
        label: "Discard events from bots and crawlers",
        hint: "Recognised from the user agent.",
      },
      {
        key: "internal_ips",
        kind: "lines",
        label: "Internal addresses",
        hint: "One address or CIDR network per line (10.0.0.0/8, 203.0.113.7). Their events are discarded.",
      },
    ],
  },
  {
    title: "Browsers",
    settings: [
      {
        key: "allowed_origins",
        kind: "lines",
        label: "Allowed origins",
        hint: "One origin per line (https://shop.example.com, https://*.example.com, http://localhost:3000). When set, pages on other sites cannot send events with the app key (403 origin_not_allowed). Empty: any site.",
      },
    ],
  },
  {
    title: "Retention",
    settings: [
      {
        key: "retention_days",
        kind: "days",
        label: "Keep events for (days)",
        hint: "Older events are deleted every hour. Leave empty to keep events forever.",
      },
    ],
  },
  {
    title: "Keys",
    settings: [
      {
        key: "customer_jwt_key",
        kind: "pem",
        label: "Customer JWT public key",
        hint: "PEM public key (RSA or EC) that verifies the JWTs your back end signs for logged-in customers. With neither a key nor a secret, customer JWTs are refused.",
      },
      {
        key: "customer_jwt_audience",
        kind: "text",
        label: "Customer JWT audience",
        hint: "When set, a customer JWT must name it in its aud claim.",
      },
      {
        key: "customer_jwt_issuer",
        kind: "text",
        label: "Customer JWT issuer",
        hint: "When set, a customer JWT's iss claim must be exactly this.",
      },
    ],
  },
];

/** Secrets the API shows only as "set": each can be replaced or removed, in the Keys group. */
const SECRETS = [
  {
    key: "customer_jwt_secret",
    label: "Customer JWT secret (HS256)",
    noun: "secret",
    meaning:
      "A secret of 32 characters or more shared with your back end, which verifies the customer JWTs it signs with HS256.",
  },
  {
    key: "countly_salt",
    label: "Countly checksum salt",
    noun: "salt",
    meaning: "When set, Countly requests must carry a checksum made with it.",
  },
];

const SPECS = GROUPS.flatMap((group) => group.settings);
const same = (a, b) => JSON.stringify(a ?? null) === JSON.stringify(b ?? null);

/** The setting an API error is about (`internal_ips: ...` or msgspec's `$.retention_days`). */
function settingOf(message) {
  const found = /^(\w+):/.exec(message) || /\$\.(\w+)/.exec(message);
  return found ? found[1] : null;
}

function settingControl(spec) {
  const control = KINDS[spec.kind].control(spec);
  control.name = spec.key;
  if (spec.kind !== "bool") return { control, node: field(spec.label, control, spec.hint) };
  control.id = uid("setting");
  const hintId = uid("hint");
  control.setAttribute("aria-describedby", hintId);
  const node = h(
    "div",
    { class: "field check" },
    h("div", {}, control, h("label", { for: control.id }, spec.label)),
    h("p", { class: "hint", id: hintId }, spec.hint),
  );
  return { control, node };
}

/** One of SECRETS: typing replaces it, a checkbox removes it; its value is never shown. */
function secretControl({ label, noun, meaning }) {
  const input = h("input", { type: "password", autocomplete: "new-password", spellcheck: "false" });
  const remove = h("input", { type: "checkbox", id: uid("secret") });
  const node = field(label, input, meaning);
  const hint = node.querySelector(".hint");
  const removeRow = h(
    "div",
    { class: "field check" },
    h("div", {}, remove, h("label", { for: remove.id }, `Remove the ${noun}`)),
  );
  return {
    node: h("div", {}, node, removeRow),
    control: input,
    write(value) {
      input.value = "";
      remove.checked = false;
      removeRow.hidden = !value;
      hint.textContent = `${meaning} ${value ? `A ${noun} is set: type a new one to replace it.` : `No ${noun} is set.`}`;
    },
    /** The change to send, or undefined for none. */
    change() {
      if (remove.checked) return null;
      return input.value ? input.value : undefined;
    },
  };
}

function ruleName(rule) {
  const [kind, ...rest] = rule.split(":");
  const detail = rest.join(":");
  if (kind === "bot") return "Bots and crawlers";
  if (kind === "allowlist") return "Not on the allow list";
  if (kind === "denylist") return ["Deny list ", h("code", {}, detail)];
  if (kind === "internal_ips") return ["Internal address ", h("code", {}, detail)];
  return h("code", {}, rule);
}

function dayLabel(day) {
  return new Date(`${day}T00:00:00Z`).toLocaleDateString(undefined, { timeZone: "UTC", dateStyle: "medium" });
}

/** The discarded counts, loaded after the form so that the form shows at once. */
function discardedSection(ctx) {
  const since = addDays(today("UTC"), -(DISCARD_DAYS - 1));
  const section = h(
    "section",
    { class: "panel discarded", "aria-labelledby": "discarded-title" },
    h("h2", { id: "discarded-title" }, `Discarded in the last ${DISCARD_DAYS} days`),
    h(
      "p",
      { class: "hint" },
      "Events the lists and filters above left out on purpose. Clients got their usual success reply and nothing was kept, so there is nothing to replay.",
    ),
  );
  const body = h("div", {}, h("p", { class: "loading" }, "Loading the counts…"));
  section.append(body);
  (async () => {
    try {
      const path = `${appPath(ctx.app.id, "discarded")}?since=${since}`;
      const counts = await api(path, { signal: ctx.signal });
      const totals = Object.entries(counts.totals).map(([rule, count]) => ({ rule, count }));
      append(clear(body), [
        table({
          caption: "Per rule",
          columns: [
            { label: "Rule", rowHeader: true, value: (row) => ruleName(row.rule) },
            { label: "Discarded", numeric: true, value: (row) => format.number(row.count) },
          ],
          rows: totals,
          empty: "No event was discarded.",
        }),
        counts.days.length
          ? table({
              caption: "Per day (UTC)",
              columns: [
                { label: "Day", rowHeader: true, value: (row) => dayLabel(row.day) },
                { label: "Rule", value: (row) => ruleName(row.rule) },
                { label: "Discarded", numeric: true, value: (row) => format.number(row.count) },
              ],
              rows: counts.days,
            })
          : null,
      ]);
    } catch (error) {
      if (error.name !== "AbortError") clear(body).append(errorBox(error));
    }
  })();
  return section;
}

export async function render(ctx) {
  const controls = new Map(SPECS.map((spec) => [spec.key, settingControl(spec)]));
  const secrets = new Map(SECRETS.map((spec) => [spec.key, secretControl(spec)]));
  const problem = h("div");
  const saved = h("div", { role: "status" });
  const submit = h("button", { type: "submit", class: "primary" }, "Save rules");
  let current = null;

  const form = h(
    "form",
    { class: "rules-form", "aria-label": "Rules", novalidate: true },
    GROUPS.map((group) =>
      h(
        "fieldset",
        {},
        h("legend", {}, group.title),
        group.settings.map((spec) => controls.get(spec.key).node),
        group.title === "Keys" ? [...secrets.values()].map((secret) => secret.node) : null,
      ),
    ),
    problem,
    h("div", { class: "row-actions" }, submit, saved),
  );

  function show(settings) {
    current = settings;
    for (const spec of SPECS) KINDS[spec.kind].write(controls.get(spec.key).control, settings[spec.key]);
    for (const [key, secret] of secrets) secret.write(settings[key]);
  }

  function changes() {
    const changed = {};
    for (const spec of SPECS) {
      const value = KINDS[spec.kind].read(controls.get(spec.key).control);
      if (!same(value, current[spec.key])) changed[spec.key] = value;
    }
    for (const [key, secret] of secrets) {
      const change = secret.change();
      if (change !== undefined) changed[key] = change;
    }
    return changed;
  }

  function clearProblems() {
    clear(problem);
    clear(saved);
    for (const node of form.querySelectorAll(".field-error")) node.remove();
    for (const node of form.querySelectorAll("[aria-invalid]")) {
      node.removeAttribute("aria-invalid");
      const ids = node
        .getAttribute("aria-describedby")
        .split(" ")
        .filter((id) => !id.startsWith("setting-error"));
      node.setAttribute("aria-describedby", ids.join(" "));
    }
  }

  /** The API's message beside the setting it is about, and at the form's foot. */
  function showProblem(error) {
    problem.append(errorBox(error));
    const key = settingOf(error.message || "");
    const target = secrets.get(key) || controls.get(key);
    if (!target) return;
    const id = uid("setting-error");
    target.control.setAttribute("aria-invalid", "true");
    const described = target.control.getAttribute("aria-describedby");
    target.control.setAttribute("aria-describedby", described ? `${described} ${id}` : id);
    target.control.closest(".field").append(h("p", { class: "field-error", id }, error.message));
    target.control.focus();
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearProblems();
    const changed = changes();
    if (!Object.keys(changed).length) {
      saved.textContent = "Nothing changed.";
      return;
    }
    submit.disabled = true;
    try {
      const reply = await api(appPath(ctx.app.id, "settings"), { method: "PATCH", body: changed });
      show(reply.settings);
      saved.textContent = "Saved: the rules apply to new events within a second.";
      ctx.refreshApps().catch(() => {}); // other views read the settings from the app list
    } catch (error) {
      showProblem(error);
    } finally {
      submit.disabled = false;
    }
  });

  ctx.main.append(
    pageHeader("Rules"),
    h(
      "p",
      { class: "hint intro" },
      "What this app accepts and keeps. Changes apply to new events; stored events stay as they are.",
    ),
  );
  const slot = h("div", {}, h("p", { class: "loading" }, "Loading the settings…"));
  ctx.main.append(slot);
  try {
    const reply = await api(appPath(ctx.app.id, "settings"), { signal: ctx.signal });
    show(reply.settings);
  } catch (error) {
    if (error.name === "AbortError") throw error;
    clear(slot).append(errorBox(error));
    return;
  }
  clear(slot).append(form, discardedSection(ctx));
}
