// Keys & install: the app's credentials and how to send events to it. The API secret is never
// readable (the catalog keeps only its hash), so the page offers a rotation instead, and the
// install snippets carry this server's address and this app's keys, ready to paste.

import { api, appPath } from "../api.js";
import { appHref } from "../app.js";
import {
  append,
  clear,
  codeBlock,
  copyButton,
  errorBox,
  h,
  pageHeader,
  select,
  uid,
} from "../dom.js";

/** Stands in for the secret wherever a snippet needs it: Tally cannot show the real one. */
const SECRET = "API_SECRET";

export async function render(ctx) {
  let app = ctx.app;
  let selected = ctx.query.get("tab");
  const keys = h("div");
  const install = h("div");

  function draw() {
    clear(keys).append(keyList(app));
    append(
      clear(install),
      tabs(TABS, snippetsFor(app), selected, (id) => {
        selected = id;
        ctx.setQuery({ tab: id });
      }),
    );
  }

  const rotation = rotationPanel(app, async (rotated) => {
    const { api_secret: _secret, ...fresh } = rotated;
    app = fresh;
    draw();
    await ctx.refreshApps();
  });

  draw();
  ctx.main.append(
    pageHeader("Keys & install"),
    h("section", { class: "panel", "aria-labelledby": "keys-heading" }, [
      h("h2", { id: "keys-heading" }, "Keys"),
      keys,
      rotation,
    ]),
    h("section", { "aria-labelledby": "install-heading" }, [
      h("h2", { id: "install-heading" }, "Install"),
      h(
        "p",
        {},
        "Pick the SDK or protocol your app already speaks: Tally takes them all into the same ",
        "events. New event names are defined on first sight, except from browsers (tally.js): ",
        "see ",
        h("a", { href: appHref(app.id, "/events") }, "Events"),
        ".",
      ),
      install,
    ]),
  );
}

function keyList(app) {
  const row = (label, copy, value, hint) => [
    h("dt", {}, label),
    h("dd", {}, [
      h("code", {}, value),
      copyButton(value, copy),
      hint ? h("span", { class: "hint" }, hint) : null,
    ]),
  ];
  return h("dl", { class: "key-list" }, [
    row("App id", "Copy app id", app.id),
    row(
      "App key",
      "Copy app key",
      app.app_key,
      "Public: safe to put in web pages and apps, as it can only send events.",
    ),
    row(
      "API key",
      "Copy API key",
      app.api_key,
      "With the API secret: sends and reads from your servers (HTTP Basic).",
    ),
    h("dt", {}, "API secret"),
    h(
      "dd",
      {},
      h(
        "span",
        {},
        "Not readable: Tally keeps only a hash of it, and showed it once, when the app was ",
        "created or the secret was last rotated. Lost it? Rotate it to get a new one.",
      ),
    ),
  ]);
}

/** How long the old credentials keep working after a rotation: [seconds, label]. */
const OVERLAPS = [
  ["0", "no time: they stop at once"],
  ["3600", "1 hour"],
  ["86400", "24 hours"],
  ["604800", "7 days"],
];
const DEFAULT_OVERLAP = "86400";

/** "Rotate API secret", then a confirm step in the page, then the new secret, shown once. */
function rotationPanel(app, onRotated) {
  const start = h("button", { type: "button", class: "danger" }, "Rotate API secret…");
  const withAppKey = h("input", { type: "checkbox", id: uid("app-key") });
  const overlap = select(OVERLAPS, { value: DEFAULT_OVERLAP, id: uid("overlap") });
  const confirm = h("button", { type: "button", class: "danger" }, "Rotate now");
  const cancel = h("button", { type: "button", class: "secondary" }, "Cancel");
  const question = h("h3", { tabindex: "-1", id: uid("confirm") }, "Rotate the API secret?");
  const problem = h("div");
  const step = h("div", {
    class: "warning confirm-step",
    role: "group",
    "aria-labelledby": question.id,
    hidden: true,
  }, [
    question,
    h(
      "p",
      {},
      "Tally makes a new secret. The current one keeps working for the time chosen below, so ",
      "back ends can switch over; after it, every request with the old secret gets 401.",
    ),
    h("div", { class: "field" }, [
      h("label", { for: overlap.id }, "The old credentials keep working for"),
      overlap,
    ]),
    h("div", { class: "check" }, [
      withAppKey,
      h("label", { for: withAppKey.id }, "Also replace the app key"),
    ]),
    h(
      "p",
      { class: "hint" },
      "Only if the app key is abused: every web page, tracker and SDK then needs the new key.",
    ),
    h("div", { class: "buttons" }, [confirm, cancel]),
  ]);
  const result = h("div");

  start.addEventListener("click", () => {
    step.hidden = false;
    start.hidden = true;
    clear(problem);
    question.focus();
  });
  cancel.addEventListener("click", () => {
    step.hidden = true;
    start.hidden = false;
    withAppKey.checked = false;
    start.focus();
  });
  confirm.addEventListener("click", async () => {
    confirm.disabled = cancel.disabled = true;
    clear(problem);
    try {
      const body = { overlap_seconds: Number(overlap.value) };
      if (withAppKey.checked) body.app_key = true;
      const rotated = await api(appPath(app.id, "rotate"), { method: "POST", body });
      append(clear(result), newSecret(rotated, withAppKey.checked));
      step.hidden = true;
      start.hidden = false;
      withAppKey.checked = false;
      overlap.value = DEFAULT_OVERLAP;
      result.querySelector("h3").focus();
      await onRotated(rotated);
    } catch (error) {
      problem.append(errorBox(error));
    } finally {
      confirm.disabled = cancel.disabled = false;
    }
  });
  return h("div", { class: "rotation" }, [start, step, problem, result]);
}

function newSecret(rotated, appKeyChanged) {
  return [
    h("h3", { tabindex: "-1" }, "New API secret"),
    h(
      "p",
      { class: "warning" },
      "Copy it now: Tally keeps only a hash and will not show it again. ",
      oldCredentials(rotated.previous_valid_until, appKeyChanged),
      appKeyChanged ? " The app key changed too: the keys and snippets below are updated." : "",
    ),
    snippet(rotated.api_secret, "The new API secret"),
  ];
}

/** Until when the old secret (and app key) still work, in the viewer's own time. */
function oldCredentials(validUntil, appKeyChanged) {
  const old = appKeyChanged ? "The old secret and app key" : "The old secret";
  if (!validUntil) return `${old} no longer work${appKeyChanged ? "" : "s"}.`;
  const until = new Date(validUntil).toLocaleString(undefined, {
    dateStyle: "medium",
    timeStyle: "short",
  });
  return `${old} keep${appKeyChanged ? "" : "s"} working until ${until}.`;
}

/** A code block whose copy button says what it copies. */
function snippet(code, label) {
  const block = codeBlock(code, label);
  block.querySelector("button").setAttribute("aria-label", `Copy: ${label}`);
  return block;
}

function secretNote() {
  return h(
    "p",
    { class: "hint" },
    `Replace ${SECRET} with the app's API secret (server side only: never put it in a web page).`,
  );
}

const TABS = [
  { id: "tally-js", label: "tally.js" },
  { id: "countly", label: "Countly" },
  { id: "engagelab", label: "EngageLab" },
  { id: "segment", label: "Segment" },
  { id: "python", label: "Python SDK" },
  { id: "http", label: "HTTP API" },
];

/** Each tab's content, from the snippets docs/*.md give, with this server and app filled in. */
function snippetsFor(app) {
  const origin = location.origin;
  const server = { origin, host: location.host, scheme: location.protocol.replace(":", "") };
  return {
    "tally-js": tallyJs(app, server),
    countly: countly(app, server),
    engagelab: engageLab(app, server),
    segment: segment(app, server),
    python: python(app, server),
    http: native(app, server),
  };
}

function tallyJs(app, { origin }) {
  return [
    h(
      "p",
      {},
      "Paste before </head> on every page. tally.js sends page visits and sessions by itself, ",
      "to the server it came from.",
    ),
    snippet(
      `<script>
  window.tally = window.tally || function () { (tally.q = tally.q || []).push(arguments); };
</script>
<script async src="${origin}/sdk/tally.js" data-app-key="${app.app_key}"></script>`,
      "tally.js script tag",
    ),
    h("h3", {}, "Or with an init call"),
    h("p", {}, "For a tag without data-app-key, or tally.js in your own bundle:"),
    snippet(
      `tally("init", { appKey: "${app.app_key}", host: "${origin}", spa: true });`,
      "tally.js init call",
    ),
    h("h3", {}, "Custom events"),
    snippet(
      `tally("identify", "customer-42");
tally("track", "signup.done", { plan: "pro" }, "Signed up");`,
      "tally.js custom event",
    ),
    h(
      "p",
      {},
      "Browsers may send only defined events: define each with this request, or on the Events page.",
    ),
    snippet(
      `curl -u "${app.api_key}:${SECRET}" -X PUT "${origin}/api/v1/apps/${app.id}/definitions/signup.done" \\
  -H 'content-type: application/json' -d '{"permission": "anonymous", "label_template": "Signed up"}'`,
      "Define a custom event with curl",
    ),
    secretNote(),
  ];
}

function countly(app, { origin }) {
  return [
    h("p", {}, "Any Countly SDK works: give it this server's address and the app key."),
    snippet(
      `<script src="https://cdn.jsdelivr.net/npm/countly-sdk-web@latest/lib/countly.min.js"></script>
<script>
  Countly.init({ app_key: "${app.app_key}", url: "${origin}" });
  Countly.track_sessions();
  Countly.track_pageview();
  Countly.add_event({ key: "item purchase", count: 1, segmentation: { item_name: "rolex" } });
</script>`,
      "Countly Web SDK",
    ),
    h("h3", {}, "Countly's HTTP API"),
    snippet(
      `curl -X POST ${origin}/i \\
  -H 'Content-Type: application/x-www-form-urlencoded' \\
  --data 'app_key=${app.app_key}' --data 'device_id=DEVICE_ID' --data "timestamp=$(date +%s)" \\
  --data 'events=[{"key":"item purchase","count":1,"sum":0,"dur":0,"segmentation":{"item_name":"rolex"}}]'
# {"result":"Success"}`,
      "Countly /i request with curl",
    ),
  ];
}

function engageLab(app, { origin }) {
  const body = JSON.stringify({
    data: [
      {
        euid: 10000091198,
        event_name: "sign_up",
        itime: Date.now(),
        properties: { propertyA: "a", propertyB: 2 },
      },
    ],
  });
  return [
    h(
      "p",
      {},
      "EngageLab's body, unchanged, with HTTP Basic authentication: the app's API key as the user ",
      "name and its API secret as the password. Add a random_id to each event so that a resent ",
      "event is stored once.",
    ),
    snippet(
      `curl -X POST ${origin}/v1/event/report -u "${app.api_key}:${SECRET}" \\
  -H 'Content-Type: application/json' \\
  -d '${body}'
# {"code":0,"message":"success"}`,
      "EngageLab event report with curl",
    ),
    secretNote(),
  ];
}

function segment(app, { origin, host, scheme }) {
  return [
    h("p", {}, "The app key is the write key; Tally is the host. No Segment account is needed."),
    h("h3", {}, "analytics.js (@segment/analytics-next)"),
    snippet(
      `import { AnalyticsBrowser } from "@segment/analytics-next";

const analytics = AnalyticsBrowser.load({
  writeKey: "${app.app_key}",
  cdnSettings: {
    integrations: {
      "Segment.io": {
        apiKey: "${app.app_key}",
        apiHost: "${host}/v1",
        protocol: "${scheme}",
      },
    },
    metrics: { sampleRate: 0 },
  },
});
analytics.track("Item Purchased", { revenue: 14.99 });`,
      "Segment analytics.js",
    ),
    h("h3", {}, "analytics-python"),
    snippet(
      `from segment.analytics import Client  # pip install segment-analytics-python

analytics = Client(write_key="${app.app_key}", host="${origin}")
analytics.track(user_id="019mr8mf4r", event="Item Purchased", properties={"revenue": 14.99})
analytics.flush()`,
      "Segment analytics-python",
    ),
    h("h3", {}, "HTTP Tracking API"),
    snippet(
      `curl -X POST ${origin}/v1/track -u "${app.app_key}:" \\
  -H 'Content-Type: application/json' \\
  -d '{"userId": "019mr8mf4r", "event": "Item Purchased",
       "properties": {"name": "Leap to Conclusions Mat", "revenue": 14.99}}'
# {"success":true}`,
      "Segment track call with curl",
    ),
  ];
}

function python(app, { origin }) {
  return [
    h("p", {}, "tally.client comes with the tally package; it needs only httpx."),
    h("h3", {}, "From apps and scripts (the public app key)"),
    snippet(
      `from tally.client import Tally

tally = Tally("${origin}", app_key="${app.app_key}")
tally.track("item purchase", user="customer-42", sum=120.5, properties={"item_name": "rolex"})
tally.identify("customer-42", {"plan": "pro"}, device_id="d-7")`,
      "Python SDK with the app key",
    ),
    h("h3", {}, "From a back end (sends and reads)"),
    snippet(
      `from tally.client import Tally

tally = Tally("${origin}", api_key="${app.api_key}", api_secret="${SECRET}", app_id="${app.id}")
tally.track("invoice.paid", user="customer-42", sum=99.5)
tally.flush()
tally.events(user="customer-42", limit=10)
tally.close()`,
      "Python SDK with the API key and secret",
    ),
    secretNote(),
  ];
}

function native(app, { origin }) {
  return [
    h("p", {}, "Tally's own API: the app key for public sends, the API key and secret for all."),
    snippet(
      `curl -X POST ${origin}/api/v1/events -H 'X-Tally-Key: ${app.app_key}' \\
  -H 'Content-Type: application/json' \\
  -d '{"events": [{"name": "item purchase", "user": "customer-42", "sum": 120.5,
                   "properties": {"item_name": "rolex"}}]}'
# {"accepted":1,"duplicates":0,"rejected":[]}`,
      "Send an event with curl and the app key",
    ),
    h("h3", {}, "Server side, and reading back"),
    snippet(
      `curl -X POST ${origin}/api/v1/events -u "${app.api_key}:${SECRET}" \\
  -H 'Content-Type: application/json' \\
  -d '{"events": [{"name": "invoice.paid", "user": "customer-42", "sum": 99.5}]}'

curl -u "${app.api_key}:${SECRET}" "${origin}/api/v1/apps/${app.id}/events?limit=10"`,
      "Send and read events with curl and the API key",
    ),
    secretNote(),
  ];
}

/**
 * Tabs (WAI-ARIA pattern, automatic activation): arrow keys, Home and End move between tabs and
 * show their panel; only the selected tab is in the Tab order.
 */
function tabs(list, panels, selectedId, onSelect) {
  const tablist = h("div", { role: "tablist", "aria-label": "Install with" });
  const parts = list.map((tab) => {
    const tabId = uid("tab");
    const panelId = uid("panel");
    const button = h(
      "button",
      { type: "button", role: "tab", id: tabId, "aria-controls": panelId },
      tab.label,
    );
    const panel = h(
      "div",
      { role: "tabpanel", id: panelId, "aria-labelledby": tabId, tabindex: "0" },
      panels[tab.id],
    );
    return { tab, button, panel };
  });

  function select(index, focus) {
    parts.forEach((part, i) => {
      const on = i === index;
      part.button.setAttribute("aria-selected", String(on));
      part.button.tabIndex = on ? 0 : -1;
      part.panel.hidden = !on;
    });
    if (focus) parts[index].button.focus();
  }

  const moves = { ArrowRight: 1, ArrowLeft: -1 };
  parts.forEach((part, index) => {
    part.button.addEventListener("click", () => {
      select(index, false);
      onSelect(part.tab.id);
    });
    part.button.addEventListener("keydown", (event) => {
      let next = null;
      if (event.key in moves) next = (index + moves[event.key] + parts.length) % parts.length;
      else if (event.key === "Home") next = 0;
      else if (event.key === "End") next = parts.length - 1;
      if (next === null) return;
      event.preventDefault();
      select(next, true);
      onSelect(parts[next].tab.id);
    });
    tablist.append(part.button);
  });
  const start = Math.max(0, parts.findIndex((part) => part.tab.id === selectedId));
  select(start, false);
  return [tablist, parts.map((part) => part.panel)];
}
