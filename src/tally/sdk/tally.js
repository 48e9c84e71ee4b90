/*! tally.js: Tally's browser tracker. Plain JavaScript, no dependencies. Apache-2.0.
 * Docs: docs/tally-js.md. Sends to {host}/sdk/v1/events as text/plain JSON (no CORS preflight). */
((window, document) => {
  "use strict";

  const VERSION = "0.1.0";
  const PREFIX = "tally.";
  const MINUTE = 60000;
  const COOLDOWN = 15000; // a page loaded this soon after its session ended at page hide continues it
  const TAB_STALE = 3 * MINUTE; // a tab that has not said it is alive for this long is gone
  const NAVIGATION_WINDOW = MINUTE; // a same-site navigation is expected to hide the page within this
  const MAX_QUEUE = 1000;
  const MAX_BATCH = 50;
  const MAX_BATCH_BYTES = 60000; // under sendBeacon's 64 KB
  const MAX_BACKOFF = 5 * MINUTE;
  const ATTR = "data-tally-event";
  const CAPTURE = "data-tally-capture";
  const BOT = /bot|crawl|spider|slurp|archiver|facebookexternalhit|bingpreview|mediapartners|lighthouse|pingdom|prerender|phantomjs/i;

  const stub = window.tally;
  if (stub && stub.version) return; // loaded twice
  const pending = Array.from((stub && stub.q) || [], (call) => Array.from(call));

  const config = {
    appKey: null,
    host: null,
    spa: false,
    pageVisits: true,
    declarative: true,
    respectDnt: false,
    requireConsent: false,
    sessionTimeout: 30, // minutes without activity
    flushInterval: 1000, // ms between a tracked event and its batch going out
    identifyEvent: null, // an event identify() sends with the traits (it must be defined)
    debug: false,
  };

  const log = (...a) => config.debug && console.log("[tally]", ...a);
  const warn = (...a) => console.warn("[tally]", ...a);
  const now = () => Date.now();

  // Storage: localStorage, or memory where it is unavailable or consent is not given yet.

  let local = null;
  try {
    local = window.localStorage;
    local.setItem(PREFIX + "probe", "1");
    local.removeItem(PREFIX + "probe");
  } catch (e) {
    local = null;
  }
  let memory = {};
  let persist = true; // false until consent, when consent is required
  const area = () => (persist ? local : null);

  const get = (key) => {
    const ls = area();
    try {
      return ls ? ls.getItem(PREFIX + key) : key in memory ? memory[key] : null;
    } catch (e) {
      return null;
    }
  };
  const set = (key, value) => {
    const ls = area();
    if (value == null) {
      delete memory[key];
      if (ls) ls.removeItem(PREFIX + key);
      return true;
    }
    try {
      if (ls) ls.setItem(PREFIX + key, value);
      else memory[key] = value;
      return true;
    } catch (e) {
      return false; // quota
    }
  };
  const getJSON = (key, fallback) => {
    try {
      const text = get(key);
      return text ? JSON.parse(text) : fallback;
    } catch (e) {
      return fallback;
    }
  };
  const setJSON = (key, value) => set(key, value == null ? null : JSON.stringify(value));
  // Preferences live in localStorage whatever the consent: they are the user's own choice.
  const pref = (key, value) => {
    try {
      if (value === undefined) return local ? local.getItem(PREFIX + key) : memory["pref." + key];
      if (!local) memory["pref." + key] = value;
      else if (value === null) local.removeItem(PREFIX + key);
      else local.setItem(PREFIX + key, value);
    } catch (e) {
      return null;
    }
  };

  const uuid = () => {
    const c = window.crypto;
    if (c.randomUUID) return c.randomUUID(); // secure contexts only
    const b = c.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 15) | 64;
    b[8] = (b[8] & 63) | 128;
    const h = Array.from(b, (x) => (x + 256).toString(16).slice(1)).join("");
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  };

  // State.

  let ready = false; // init ran
  let started = false; // ids and session set up (tracking allowed)
  let device = null;
  let user = null;
  let token = null;
  let lastUrl = null;
  let referrer = document.referrer;
  let leaving = 0; // when a navigation to this site started (this page is about to be replaced)
  let lastTouch = 0;
  const tab = uuid();
  let timezone;
  try {
    timezone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  } catch (e) {
    timezone = undefined;
  }

  const dnt = () =>
    [navigator.doNotTrack, window.doNotTrack, navigator.msDoNotTrack].some((v) => v === "1" || v === "yes") ||
    navigator.globalPrivacyControl === true;
  const bot = () => BOT.test(navigator.userAgent || "");
  const consented = () => !config.requireConsent || pref("consent") === "1";
  // Whether events may be recorded at all (kept in memory until consent, when it is required).
  const allowed = () =>
    ready && !bot() && !(config.respectDnt && dnt()) && pref("optout") !== "1" && pref("consent") !== "0";

  // Events.

  const context = () => ({ url: location.href, referrer, locale: navigator.language, timezone });

  const plain = (value) => {
    try {
      const copy = JSON.parse(JSON.stringify(value));
      return copy && typeof copy === "object" && !Array.isArray(copy) ? copy : undefined;
    } catch (e) {
      warn("params are not JSON-serialisable; sent without them", e);
      return undefined;
    }
  };

  const build = (name, properties, label, session, time = now(), dur) => {
    const event = {
      id: uuid(),
      name,
      time: new Date(time).toISOString(),
      device,
      session,
      context: context(),
    };
    if (user) event.user = user;
    if (label != null && label !== "") event.label = String(label);
    if (dur != null) event.dur = Math.max(0, Math.round(dur / 1000));
    const props = properties == null ? undefined : plain(properties);
    if (props) event.properties = props;
    return event;
  };

  // Sessions: {id, start, last (activity), seg (counted from, for the next end's dur), end (page hide)}.

  const timeout = () => config.sessionTimeout * MINUTE;
  const endEvent = (s, at) => build("session.end", null, null, s.id, at, at - s.seg);

  const touch = (at = now()) => {
    let s = getJSON("session");
    if (s && !s.end && at - s.last >= timeout()) {
      enqueue(endEvent(s, s.last)); // expired while no page was open: sent on the next visit
      s = null;
    } else if (s && s.end) {
      if (at - s.end < COOLDOWN) {
        // A reload or a navigation tally.js could not see coming: the same session goes on.
        s = { id: s.id, start: s.start, seg: at, last: at };
        setJSON("session", s);
        enqueue(build("session.start", null, null, s.id, at));
        lastTouch = at;
        return s;
      }
      s = null;
    }
    if (!s) {
      s = { id: uuid(), start: at, seg: at, last: at };
      setJSON("session", s);
      enqueue(build("session.start", null, null, s.id, at));
    } else {
      s.last = at;
      setJSON("session", s);
    }
    lastTouch = at;
    return s;
  };

  const expire = () => {
    const s = getJSON("session");
    if (s && !s.end && now() - s.last >= timeout()) {
      setJSON("session", null);
      enqueue(endEvent(s, s.last));
    }
  };

  // Open tabs of this site, so that closing one of several does not end the session.
  const tabs = (alive) => {
    const all = getJSON("tabs", {});
    const t = now();
    for (const id of Object.keys(all)) if (t - all[id] > TAB_STALE) delete all[id];
    if (alive) all[tab] = t;
    else delete all[tab];
    setJSON("tabs", all);
    return Object.keys(all).filter((id) => id !== tab).length;
  };

  // The queue: {q: [{e: event, t: token id}], t: {token id: jwt}}, per app key, in localStorage.

  const queueKey = () => "queue." + config.appKey;
  const loadQueue = () => {
    const data = getJSON(queueKey(), null);
    return data && Array.isArray(data.q) ? data : { q: [], t: {} };
  };
  const saveQueue = (data) => {
    if (data.q.length > MAX_QUEUE) data.q.splice(0, data.q.length - MAX_QUEUE);
    const used = new Set(data.q.map((item) => item.t));
    for (const id of Object.keys(data.t)) if (!used.has(id)) delete data.t[id];
    while (!setJSON(queueKey(), data) && data.q.length) {
      data.q.splice(0, Math.ceil(data.q.length / 2)); // storage full: the oldest go first
    }
  };
  const tokenId = (data) => {
    if (!token) return undefined;
    for (const id of Object.keys(data.t)) if (data.t[id] === token) return id;
    const id = uuid().slice(0, 8);
    data.t[id] = token;
    return id;
  };

  const enqueue = (event) => {
    const data = loadQueue();
    data.q.push({ e: event, t: tokenId(data) });
    saveQueue(data);
    log("queued", event.name, event);
    schedule(data.q.length >= MAX_BATCH ? 0 : config.flushInterval);
  };

  const remove = (ids) => {
    const data = loadQueue();
    data.q = data.q.filter((item) => !ids.has(item.e.id));
    saveQueue(data);
  };

  // The next batch: items with the same token, up to MAX_BATCH events and MAX_BATCH_BYTES.
  const pick = (items, tokens, skip = new Set()) => {
    const chosen = [];
    let size = 200;
    let key;
    for (const item of items) {
      if (skip.has(item.e.id)) continue;
      if (!chosen.length) key = item.t;
      else if (item.t !== key) continue;
      const length = JSON.stringify(item.e).length + 1;
      if (chosen.length && (chosen.length >= MAX_BATCH || size + length > MAX_BATCH_BYTES)) break;
      chosen.push(item);
      size += length;
    }
    const body = { app_key: config.appKey, sent_at: new Date().toISOString() };
    if (key && tokens[key]) body.access_token = tokens[key];
    body.events = chosen.map((item) => item.e);
    return { chosen, key, body: JSON.stringify(body) };
  };

  // Delivery.

  const endpoint = () => config.host + "/sdk/v1/events";
  let timer = 0;
  let due = 0;
  let sending = false;
  let failures = 0;
  let retryAt = 0;

  // Runs flush after delay ms, or sooner if it is already due sooner.
  const schedule = (delay) => {
    const at = now() + Math.max(0, delay);
    if (timer && due <= at) return;
    clearTimeout(timer);
    due = at;
    timer = setTimeout(() => {
      timer = 0;
      flush();
    }, at - now());
  };

  const mayDeliver = () => allowed() && consented() && navigator.onLine !== false;

  const retry = (reason, after) => {
    failures += 1;
    const backoff = Math.min(MAX_BACKOFF, 2000 * 2 ** (failures - 1)) * (0.8 + Math.random() * 0.4);
    const delay = Math.max(backoff, after || 0);
    retryAt = now() + delay;
    log(`send failed (${reason}); retry in ${Math.round(delay / 1000)} s`);
    schedule(delay);
  };

  const report = (events, reply) => {
    for (const r of (reply && reply.rejected) || []) {
      const event = events[r.index];
      warn(`event ${event ? event.name : r.index} rejected: ${r.code}: ${r.message}`);
    }
  };

  // Sends the next batch with fetch; the reply decides what happens to it.
  const flush = () => {
    if (sending || !mayDeliver()) return;
    if (now() < retryAt) return schedule(retryAt - now());
    const data = loadQueue();
    if (!data.q.length) return;
    const lock = getJSON("lock");
    if (lock && lock.tab !== tab && now() - lock.at < 10000) return schedule(config.flushInterval);
    setJSON("lock", { tab, at: now() });
    const { chosen, key, body } = pick(data.q, data.t);
    const ids = new Set(chosen.map((item) => item.e.id));
    const events = chosen.map((item) => item.e);
    sending = true;
    const done = () => {
      sending = false;
      if (getJSON("lock", {}).tab === tab) setJSON("lock", null);
    };
    fetch(endpoint(), {
      method: "POST",
      body,
      headers: { "Content-Type": "text/plain" },
      credentials: "omit",
    })
      .then((response) =>
        response.text().then((text) => {
          let reply = null;
          try {
            reply = JSON.parse(text);
          } catch (e) {
            reply = null;
          }
          return { status: response.status, reply, after: Number(response.headers.get("retry-after")) };
        }),
      )
      .then(({ status, reply, after }) => {
        done();
        const code = reply && reply.error && reply.error.code;
        if (status >= 200 && status < 300) {
          failures = 0;
          report(events, reply);
          remove(ids);
          log(`sent ${events.length}:`, reply);
          schedule(0);
        } else if (status === 401 && code === "invalid_token") {
          // The customer JWT no longer verifies: forget it and send these events anonymously.
          warn("the access token was refused (invalid_token); sending without it");
          const q = loadQueue();
          const jwt = q.t[key];
          for (const item of q.q) if (item.t === key) delete item.t;
          saveQueue(q);
          if (token === jwt) setAccessToken(null);
          schedule(0);
        } else if (status === 408 || status === 429 || status >= 500) {
          retry(`HTTP ${status}`, after > 0 ? after * 1000 : 0);
        } else {
          // The server read the request and refused it as invalid: retrying cannot help.
          failures = 0;
          report(events, reply);
          warn(`dropped ${events.length} events: HTTP ${status} ${code || ""}`, reply);
          remove(ids);
          schedule(0);
        }
      })
      .catch((error) => {
        done();
        retry(String(error));
      });
  };

  // Hands the whole queue to sendBeacon (the page is going away); what it takes leaves the queue.
  const beacon = () => {
    if (!mayDeliver() || !navigator.sendBeacon) return;
    const data = loadQueue();
    const sent = new Set();
    while (sent.size < data.q.length) {
      const { chosen, body } = pick(data.q, data.t, sent);
      if (!chosen.length) break;
      if (!navigator.sendBeacon(endpoint(), new Blob([body], { type: "text/plain" }))) break;
      for (const item of chosen) sent.add(item.e.id);
    }
    if (sent.size) remove(sent);
  };

  // The public API.

  function track(name, params, label) {
    if (!allowed()) return log("not tracking", name);
    if (typeof name !== "string" || !name) return warn("track: the event name must be a non-empty string");
    const s = touch();
    enqueue(build(name, params, label, s.id));
  }

  function page() {
    const href = location.href;
    if (href === lastUrl) return;
    if (lastUrl !== null) referrer = lastUrl;
    lastUrl = href;
    const params = { url: href, path: location.pathname, referrer, title: document.title };
    new URLSearchParams(location.search).forEach((value, key) => {
      if (/^utm_/i.test(key)) params[key.toLowerCase()] = value;
    });
    track("page.visit", params);
  }

  function identify(customerId, traits) {
    if (customerId == null || customerId === "") return warn("identify: a customer id is required");
    user = String(customerId);
    if (allowed()) set("user", user);
    if (config.identifyEvent) track(config.identifyEvent, traits || {});
  }

  function setAccessToken(jwt) {
    token = jwt || null;
    if (allowed() || !token) set("token", token);
  }

  function reset() {
    if (allowed()) {
      const s = getJSON("session");
      if (s && !s.end) enqueue(endEvent(s, now()));
    }
    setJSON("session", null);
    user = null;
    set("user", null);
    setAccessToken(null);
    device = uuid();
    if (allowed()) set("device", device);
  }

  // Forgets everything tally.js keeps (ids, session, queue) but the choice itself.
  const forget = () => {
    for (const key of ["device", "user", "token", "session", "tabs", "lock", queueKey()]) set(key, null);
    device = user = token = null;
    started = false;
  };

  function optOut() {
    pref("optout", "1");
    forget();
  }

  function optIn() {
    pref("optout", null);
    if (ready) start();
  }

  function consent(granted) {
    pref("consent", granted ? "1" : "0");
    if (!granted) {
      for (const key of Object.keys(memory)) if (!key.startsWith("pref.")) delete memory[key];
      forget();
      persist = !!local && !config.requireConsent;
      return;
    }
    if (!persist && local) {
      // Move what was kept in memory to localStorage, then send it.
      const kept = memory;
      memory = {};
      persist = true;
      for (const key of Object.keys(kept)) if (key.startsWith("pref.")) memory[key] = kept[key];
      for (const key of Object.keys(kept)) if (!key.startsWith("pref.")) set(key, kept[key]);
    }
    persist = true;
    if (ready) start();
  }

  // Declarative tracking: delegated listeners on the document see content added at any time.

  const handled = new WeakSet();
  const paramsOf = (el) => {
    const params = {};
    for (const key of Object.keys(el.dataset)) {
      if (key.startsWith("tallyParam") && key.length > 10) {
        params[key[10].toLowerCase() + key.slice(11)] = el.dataset[key];
      }
    }
    return params;
  };
  const fieldValue = (field) => {
    const type = (field.type || "").toLowerCase();
    if (type === "password" || type === "file") return undefined; // never captured
    if (type === "checkbox") return field.checked;
    if (type === "radio") return field.checked ? field.value : undefined;
    if (type === "select-multiple") return Array.from(field.selectedOptions, (o) => o.value);
    return field.value;
  };
  const formParams = (form) => {
    const params = {};
    const id = form.getAttribute("id") || form.getAttribute("name");
    if (id) params.form = id;
    for (const field of Array.from(form.elements)) {
      if (!field.hasAttribute(CAPTURE)) continue;
      const name = field.getAttribute(CAPTURE) || field.getAttribute("name") || field.getAttribute("id");
      const value = fieldValue(field);
      if (name && value !== undefined) params[name] = value;
    }
    return Object.assign(params, paramsOf(form));
  };

  const onClick = (event) => {
    if (handled.has(event)) return;
    handled.add(event);
    const path = event.composedPath ? event.composedPath() : [event.target];
    const el = path.find((node) => node.nodeType === 1 && node.hasAttribute(ATTR));
    if (!el || el.tagName === "FORM") return;
    track(el.getAttribute(ATTR) || "button.click", paramsOf(el), el.getAttribute("data-tally-label"));
  };

  const onSubmit = (event) => {
    const form = event.target;
    if (handled.has(event) || !form || form.tagName !== "FORM" || !form.hasAttribute(ATTR)) return;
    handled.add(event);
    track(form.getAttribute(ATTR) || "form.submit", formParams(form), form.getAttribute("data-tally-label"));
  };

  const bound = new WeakSet();
  const bind = (root) => {
    if (bound.has(root)) return;
    bound.add(root);
    root.addEventListener("click", onClick, true);
    root.addEventListener("submit", onSubmit, true);
  };

  // Binds the open shadow roots under root (delegation on the document cannot see their forms'
  // submits); returns how many tagged elements there are under root.
  function rescan(root = document) {
    let count = 0;
    const walk = (node) => {
      for (const el of node.querySelectorAll("*")) {
        if (el.hasAttribute(ATTR)) count += 1;
        if (el.shadowRoot) {
          bind(el.shadowRoot);
          walk(el.shadowRoot);
        }
      }
    };
    if (root !== document && root.nodeType === 11) bind(root);
    walk(root);
    return count;
  }

  // Leaving the page for another one of this site is not the end of the session.
  const sameSite = (url) => {
    try {
      return new URL(url, location.href).origin === location.origin;
    } catch (e) {
      return false;
    }
  };
  const watchNavigation = () => {
    const nav = window.navigation;
    if (nav && nav.addEventListener) {
      nav.addEventListener("navigate", (e) => {
        if (!e.destination.sameDocument && !e.downloadRequest && sameSite(e.destination.url)) leaving = now();
      });
      nav.addEventListener("navigateerror", () => (leaving = 0));
      return;
    }
    // Without the Navigation API: links and forms (not back/forward, which then end the session,
    // and the next page within the cooldown continues it).
    document.addEventListener("click", (e) => {
      const a = e.target.closest && e.target.closest("a[href]");
      if (!a || e.defaultPrevented || e.button || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
      if ((a.target && a.target !== "_self") || a.hasAttribute("download")) return;
      if (sameSite(a.href) && a.href.split("#")[0] !== location.href.split("#")[0]) leaving = now();
    });
    document.addEventListener("submit", (e) => {
      const action = e.target.getAttribute && e.target.getAttribute("action");
      if (!e.defaultPrevented && sameSite(action || location.href)) leaving = now();
    });
  };

  const onHide = () => {
    if (!ready || !allowed()) return;
    const others = tabs(false);
    const navigating = leaving && now() - leaving < NAVIGATION_WINDOW;
    const s = getJSON("session");
    if (s && !s.end && !others && !navigating && consented()) {
      const t = now();
      enqueue(endEvent(s, t));
      setJSON("session", { id: s.id, start: s.start, seg: s.seg, last: t, end: t });
    }
    beacon();
  };

  const onActivity = () => {
    if (allowed() && now() - lastTouch > 5000) touch();
  };

  const start = () => {
    if (!allowed()) return;
    if (!started) {
      started = true;
      device = get("device") || device || uuid();
      set("device", device);
      user = user || get("user");
      token = token || get("token");
      tabs(true);
      touch();
    }
    schedule(0);
  };

  function init(options) {
    if (ready) return warn("init: already initialised"), api;
    const o = options || {};
    for (const key of Object.keys(config)) if (o[key] !== undefined) config[key] = o[key];
    if (!config.appKey || !config.host) return warn("init: appKey and host are required"), api;
    config.host = String(config.host).replace(/\/+$/, "");
    persist = !!local && consented();
    ready = true;
    if (pref("optout") === "1" || pref("consent") === "0") forget();
    if (bot()) log("a bot: not tracking");
    else if (config.respectDnt && dnt()) log("Do Not Track: not tracking");

    addEventListener("pagehide", onHide);
    addEventListener("pageshow", (e) => {
      if (!e.persisted || !allowed()) return;
      tabs(true);
      lastUrl = null;
      if (config.pageVisits) page();
      else touch();
    });
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "hidden") beacon();
      else if (allowed()) {
        tabs(true);
        expire();
        touch();
      }
    });
    addEventListener("online", () => {
      failures = 0;
      retryAt = 0;
      schedule(0);
    });
    for (const type of ["pointerdown", "keydown", "scroll"]) {
      addEventListener(type, onActivity, { capture: true, passive: true });
    }
    setInterval(() => {
      if (!allowed()) return;
      tabs(true);
      expire();
      flush();
    }, 30000);
    watchNavigation();
    if (config.declarative) bind(document);
    if (config.spa) {
      let route = 0;
      const changed = () => {
        clearTimeout(route);
        route = setTimeout(page, 100); // let the app set the new title first
      };
      for (const method of ["pushState", "replaceState"]) {
        const original = history[method];
        history[method] = function (...args) {
          const result = original.apply(this, args);
          changed();
          return result;
        };
      }
      addEventListener("popstate", changed);
    }

    start();
    for (const [method, ...args] of pending.splice(0)) call(method, ...args);
    if (config.pageVisits) page();
    return api;
  }

  const methods = { init, track, page, identify, setAccessToken, reset, optOut, optIn, consent, rescan };
  const early = new Set(["init", "optOut", "optIn", "consent", "rescan"]);

  function call(method, ...args) {
    const fn = methods[method];
    if (!fn) return warn(`unknown method ${method}`);
    if (!ready && !early.has(method)) return void pending.push([method, ...args]);
    return fn(...args);
  }

  const api = (method, ...args) => call(method, ...args);
  for (const name of Object.keys(methods)) api[name] = (...args) => call(name, ...args);
  Object.assign(api, {
    version: VERSION,
    flush: () => {
      retryAt = 0;
      if (ready) flush();
    },
    device: () => device,
    user: () => user,
    session: () => (getJSON("session") || {}).id,
    pending: () => (ready ? loadQueue().q.length : 0),
  });
  window.tally = api;

  // For sites moving over from Synerise's tracker: SR.event.trackCustomEvent(action, params, label).
  const SR = (window.SR = window.SR || {});
  SR.event = SR.event || {};
  if (!SR.event.trackCustomEvent) SR.event.trackCustomEvent = api.track;

  // <script src=".../sdk/tally.js" data-app-key="..." async>: the tag's attributes are the
  // options, and the host defaults to where the script came from. A queued init call wins.
  const script = document.currentScript || document.querySelector('script[src*="/sdk/tally.js"]');
  const data = (script && script.dataset) || {};
  if (script && script.src) config.host = script.src.replace(/\/sdk\/tally\.js([?#].*)?$/, "");
  const flag = (v) => v !== undefined && v !== "false" && v !== "0";
  const queuedInit = pending.findIndex((c) => c[0] === "init");
  const options = queuedInit < 0 ? {} : pending.splice(queuedInit, 1)[0][1] || {};
  if (data.appKey || queuedInit >= 0) {
    init({
      appKey: data.appKey,
      host: data.host,
      spa: flag(data.spa),
      pageVisits: data.pageVisits === undefined || flag(data.pageVisits),
      declarative: data.declarative === undefined || flag(data.declarative),
      respectDnt: flag(data.respectDnt),
      requireConsent: flag(data.requireConsent),
      sessionTimeout: Number(data.sessionTimeout) || undefined,
      identifyEvent: data.identifyEvent || undefined,
      debug: flag(data.debug),
      ...options,
    });
  }
})(window, document);
