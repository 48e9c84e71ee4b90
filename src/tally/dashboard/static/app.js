// The dashboard's shell: the session, the top bar, the app sections and a router that maps the
// URL to a view module (views/*.js). A view's state lives in the URL's query so that any view
// can be bookmarked, reloaded or shared.

import { api, currentSession, logOut, whenUnauthorized } from "./api.js";
import { browserTimeZone } from "./dates.js";
import { announce, clear, errorBox, h, select } from "./dom.js";

/** App sections, in the order of the navigation. `path` is relative to /apps/{id}. */
export const SECTIONS = [
  { path: "", label: "Overview", view: "overview" },
  { path: "/trends", label: "Trends", view: "trends" },
  { path: "/funnels", label: "Funnels", view: "funnels" },
  { path: "/retention", label: "Retention", view: "retention" },
  { path: "/customers", label: "Customers", view: "customers" },
  { path: "/live", label: "Live", view: "live" },
  { path: "/events", label: "Events", view: "definitions" },
  { path: "/rules", label: "Rules", view: "rules" },
  { path: "/failed", label: "Failed events", view: "failed" },
  { path: "/setup", label: "Keys & install", view: "setup" },
];

const ROUTES = [
  { pattern: /^\/login$/, view: "login", public: true },
  { pattern: /^\/apps$/, view: "apps" },
  { pattern: /^\/apps\/(?<app>[^/]+)\/customers\/(?<user>.+)$/, view: "customer", section: "/customers" },
  ...SECTIONS.map((section) => ({
    pattern: new RegExp(`^/apps/(?<app>[^/]+)${section.path.replace("/", "\\/")}$`),
    view: section.view,
    section: section.path,
  })),
];

const state = { session: null, apps: null, controller: null, leaving: [] };

function decode(params) {
  const out = {};
  for (const [key, value] of Object.entries(params || {})) out[key] = decodeURIComponent(value);
  return out;
}

function match(pathname) {
  for (const route of ROUTES) {
    const found = route.pattern.exec(pathname);
    if (found) return { route, params: decode(found.groups) };
  }
  return null;
}

export function navigate(href, { replace = false } = {}) {
  state.focusOnRender = true;
  if (replace) history.replaceState(null, "", href);
  else history.pushState(null, "", href);
  render();
}

/** Puts a view's state in the URL's query (no new history entry, no re-render). */
function setQuery(values) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(values)) {
    if (value === null || value === undefined || value === "") continue;
    if (Array.isArray(value)) value.forEach((item) => query.append(key, item));
    else query.set(key, typeof value === "object" ? JSON.stringify(value) : String(value));
  }
  const text = query.toString();
  history.replaceState(null, "", location.pathname + (text ? `?${text}` : ""));
}

async function loadApps(force = false) {
  if (!state.apps || force) state.apps = (await api("/api/v1/apps")).apps;
  return state.apps;
}

export function appHref(appId, sectionPath = "") {
  return `/apps/${encodeURIComponent(appId)}${sectionPath}`;
}

function renderTopbar(app, sectionPath) {
  const bar = document.getElementById("topbar");
  bar.hidden = false;
  const picker = state.apps && state.apps.length
    ? select(
        state.apps.map((item) => [item.id, item.name]),
        {
          value: app ? app.id : "",
          label: "App",
          onchange: (event) => navigate(appHref(event.target.value, sectionPath || "")),
        },
      )
    : null;
  if (picker && !app) picker.prepend(h("option", { value: "", disabled: true }, "Choose an app"));
  if (picker && !app) picker.value = "";
  clear(bar).append(
    h("a", { href: "/apps", class: "brand" }, h("img", { src: "/dashboard/icon.svg", alt: "" }), "Tally"),
    picker ? h("div", { class: "app-picker" }, picker) : null,
    h(
      "div",
      { class: "account" },
      h("a", { href: "/apps" }, "All apps"),
      h("span", { class: "email" }, state.session.email),
      h("button", { type: "button", class: "secondary small", onclick: onLogOut }, "Log out"),
    ),
  );
}

function renderSidebar(app, sectionPath) {
  const nav = document.getElementById("sidebar");
  if (!app) {
    nav.hidden = true;
    clear(nav);
    return;
  }
  nav.hidden = false;
  clear(nav).append(
    h(
      "ul",
      {},
      SECTIONS.map((section) =>
        h(
          "li",
          {},
          h(
            "a",
            {
              href: appHref(app.id, section.path),
              "aria-current": section.path === sectionPath ? "page" : null,
            },
            section.label,
          ),
        ),
      ),
    ),
  );
}

async function onLogOut() {
  try {
    await logOut();
  } catch {
    // the session is gone either way
  }
  state.session = null;
  state.apps = null;
  navigate("/login");
}

function leaveView() {
  if (state.controller) state.controller.abort();
  for (const fn of state.leaving.splice(0)) {
    try {
      fn();
    } catch (error) {
      console.warn("leaving a view:", error);
    }
  }
}

function notFound(main, message) {
  main.append(h("h1", { tabindex: "-1" }, "Not found"), h("p", {}, message), h("a", { href: "/apps" }, "All apps"));
}

async function render() {
  leaveView();
  const controller = new AbortController();
  state.controller = controller;
  const main = document.getElementById("main");
  const found = match(location.pathname === "/" ? "/apps" : location.pathname);

  if (!found || !found.route.public) {
    if (!state.session) state.session = await currentSession();
    if (!state.session) {
      const next = location.pathname + location.search;
      const target = next === "/" || next.startsWith("/login") ? "/login" : `/login?next=${encodeURIComponent(next)}`;
      history.replaceState(null, "", target);
      return render();
    }
  }
  if (location.pathname === "/") {
    const apps = await loadApps();
    history.replaceState(null, "", apps.length === 1 ? appHref(apps[0].id) : "/apps");
    return render();
  }

  clear(main);
  main.setAttribute("aria-busy", "true");
  let app = null;
  try {
    if (!found) {
      if (state.session) renderTopbar(null, null);
      renderSidebar(null);
      notFound(main, "There is no page at this address.");
      return;
    }
    const { route, params } = found;
    if (route.public) {
      document.getElementById("topbar").hidden = true;
      renderSidebar(null);
    } else {
      await loadApps();
      if (params.app) {
        app = state.apps.find((item) => item.id === params.app) || null;
        if (!app) {
          renderTopbar(null, null);
          renderSidebar(null);
          notFound(main, `There is no app with the id ${params.app}.`);
          return;
        }
      }
      renderTopbar(app, route.section);
      renderSidebar(app, route.section);
    }
    const module = await import(`./views/${route.view}.js`);
    if (controller.signal.aborted) return;
    await module.render({
      main,
      params,
      query: new URLSearchParams(location.search),
      app,
      apps: state.apps || [],
      session: state.session,
      signal: controller.signal,
      onLeave: (fn) => state.leaving.push(fn),
      navigate,
      setQuery,
      refreshApps: () => loadApps(true),
      setSession: (session) => {
        state.session = session;
      },
      timeZone: browserTimeZone(),
    });
  } catch (error) {
    if (error.name === "AbortError" || controller.signal.aborted) return;
    console.error(error);
    main.append(errorBox(error));
  } finally {
    if (!controller.signal.aborted) {
      main.removeAttribute("aria-busy");
      const heading = main.querySelector("h1");
      document.title = heading ? `${heading.textContent} · ${app ? `${app.name} · ` : ""}Tally` : "Tally";
      if (heading && state.focusOnRender) heading.focus();
      if (heading) announce(heading.textContent);
    }
  }
}

// Same-origin links go through the router; modified clicks open a tab as usual.
document.addEventListener("click", (event) => {
  const link = event.target.closest("a[href]");
  if (!link || event.defaultPrevented || event.button !== 0) return;
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  if (link.target || link.hasAttribute("download")) return;
  const url = new URL(link.href, location.href);
  if (url.origin !== location.origin || !match(url.pathname === "/" ? "/apps" : url.pathname)) return;
  event.preventDefault();
  navigate(url.pathname + url.search);
});

window.addEventListener("popstate", () => {
  state.focusOnRender = true;
  render();
});

whenUnauthorized(() => {
  state.session = null;
  state.apps = null;
  if (location.pathname !== "/login") {
    navigate(`/login?next=${encodeURIComponent(location.pathname + location.search)}`, { replace: true });
  }
});

// The first page keeps the browser's own focus (the skip link comes first); after a navigation
// the focus moves to the new screen's heading.
state.focusOnRender = false;
render();
