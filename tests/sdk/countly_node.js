// Runs the official countly-sdk-nodejs (from the repo's node_modules, unchanged) against a Tally
// server, for tests/sdk/test_countly_node.py.
//
//   node countly_node.js single|bulk
//
// Environment: COUNTLY_APP_KEY, COUNTLY_URL (http://127.0.0.1:PORT), COUNTLY_STORAGE (a fresh
// directory for the SDK's queues: its default is inside node_modules, shared between runs) and
// COUNTLY_DEADLINE_MS (how long the SDK's queues may take to empty).
//
// Output on stdout, besides the SDK's own debug log: one line "EXCHANGE {json}" for every HTTP
// exchange (what the SDK sent and what the server answered), then "DONE" once every queue of the
// SDK is empty and no request is in flight; the exit code is 0 then. If the queues have not emptied
// by the deadline it prints "STALLED {json}" with what is left and exits with 2.
"use strict";

const http = require("http");

const MODE = process.argv[2];
const APP_KEY = process.env.COUNTLY_APP_KEY;
const URL = process.env.COUNTLY_URL;
const STORAGE = process.env.COUNTLY_STORAGE;
const DEADLINE_MS = Number(process.env.COUNTLY_DEADLINE_MS || 20000);
const POLL_MS = 100;

if (!["single", "bulk"].includes(MODE) || !APP_KEY || !URL || !STORAGE) {
    console.error("usage: COUNTLY_APP_KEY=.. COUNTLY_URL=.. COUNTLY_STORAGE=.. node countly_node.js single|bulk");
    process.exit(64);
}

// Watch the SDK's traffic without changing it: both the SDK and CountlyBulk call
// http.request(options, callback) on the http module object, so a wrapper sees every request.
let inFlight = 0;
const originalRequest = http.request;
http.request = function request(options, callback) {
    const exchange = { method: options.method, path: options.path, headers: options.headers || {}, body: "" };
    inFlight += 1;
    let settled = false;
    const settle = () => {
        if (!settled) {
            settled = true;
            console.log(`EXCHANGE ${JSON.stringify(exchange)}`);
            // After the SDK's own handlers for this event have updated its queue.
            setImmediate(() => { inFlight -= 1; });
        }
    };
    const req = originalRequest.call(http, options, (res) => {
        const chunks = [];
        exchange.status = res.statusCode;
        exchange.response_headers = res.headers;
        res.on("data", (chunk) => chunks.push(Buffer.from(chunk)));
        res.on("end", () => {
            exchange.response = Buffer.concat(chunks).toString("utf8");
            settle();
        });
        callback(res);
    });
    const originalWrite = req.write;
    req.write = function write(data, ...rest) {
        exchange.body += Buffer.isBuffer(data) ? data.toString("utf8") : String(data);
        return originalWrite.call(this, data, ...rest);
    };
    req.on("error", (err) => {
        exchange.error = String(err);
        settle();
    });
    return req;
};

const Countly = require("countly-sdk-nodejs");
// The SDK's storage module (one instance per process, shared with the SDK): its queues.
const storage = require("countly-sdk-nodejs/lib/countly-storage");

const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

async function untilFlushed(queues) {
    const deadline = Date.now() + DEADLINE_MS;
    for (;;) {
        const left = queues();
        if (inFlight === 0 && Object.values(left).every((n) => n === 0)) {
            return;
        }
        if (Date.now() >= deadline) {
            console.log(`STALLED ${JSON.stringify({ in_flight: inFlight, queues: left })}`);
            process.exit(2);
        }
        await sleep(POLL_MS);
    }
}

async function single() {
    Countly.init({
        app_key: APP_KEY,
        url: URL,
        device_id: "node-device-1",
        debug: true,
        storage_path: STORAGE,
    });
    const queues = () => ({
        requests: storage.storeGet("cly_queue", []).length,
        events: storage.storeGet("cly_event", []).length,
    });
    Countly.begin_session();
    Countly.add_event({ key: "signup", count: 2, sum: 9.5, segmentation: { plan: "pro" } });
    await untilFlushed(queues);
    Countly.end_session();
    await untilFlushed(queues);
}

async function bulk() {
    const server = new Countly.Bulk({
        app_key: APP_KEY,
        url: URL,
        debug: true,
        storage_path: STORAGE,
        interval: 500,
    });
    const first = server.add_user({ device_id: "bulk-device-1" });
    // 90 seconds of session: begin_session plus session_duration 60 and 30.
    first.begin_session({ _os: "Linux", _os_version: "6.1", _app_version: "2.0" }, 90);
    first.add_event({ key: "purchase", count: 3, sum: 29.97, segmentation: { sku: "A-1" } });
    const second = server.add_user({ device_id: "bulk-device-2" });
    second.add_event({ key: "purchase", count: 1, sum: 5, dur: 1.5, segmentation: { sku: "B-2" } });
    server.start();
    await untilFlushed(() => ({ queue_size: server.queue_size() }));
    server.stop();
}

(MODE === "single" ? single() : bulk()).then(
    () => {
        console.log("DONE");
        process.exit(0);
    },
    (err) => {
        console.log(`FAILED ${err && err.stack ? err.stack : err}`);
        process.exit(1);
    },
);
