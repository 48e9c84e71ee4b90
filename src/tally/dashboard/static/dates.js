// Calendar dates (YYYY-MM-DD) in a time zone, for query periods. The query API takes an ISO
// date as midnight in the query's zone, `from` inclusive and `to` exclusive.

export function browserTimeZone() {
  return Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
}

/** Every IANA zone the browser knows (falls back to a short list). */
export function timeZones() {
  if (typeof Intl.supportedValuesOf === "function") {
    const zones = Intl.supportedValuesOf("timeZone");
    return zones.includes("UTC") ? zones : ["UTC", ...zones];
  }
  return ["UTC", browserTimeZone()];
}

/** Today's date in `timeZone`. */
export function today(timeZone) {
  return new Intl.DateTimeFormat("en-CA", {
    timeZone,
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
  }).format(new Date());
}

/** `date` moved by `days` (negative: back). */
export function addDays(date, days) {
  const moved = new Date(`${date}T00:00:00Z`);
  moved.setUTCDate(moved.getUTCDate() + days);
  return moved.toISOString().slice(0, 10);
}

export function isDate(text) {
  return /^\d{4}-\d{2}-\d{2}$/.test(text || "") && !Number.isNaN(Date.parse(`${text}T00:00:00Z`));
}

/** The last `days` days including today: {from, to} (to is tomorrow, exclusive). */
export function lastDays(days, timeZone) {
  const end = addDays(today(timeZone), 1);
  return { from: addDays(end, -days), to: end };
}

export const RANGES = [
  ["today", "Today", 1],
  ["7d", "Last 7 days", 7],
  ["30d", "Last 30 days", 30],
  ["90d", "Last 90 days", 90],
];

/** {from, to} of a named range ("7d"...) or of explicit dates; null when neither is valid. */
export function resolveRange(range, from, to, timeZone) {
  const named = RANGES.find(([key]) => key === range);
  if (named) return lastDays(named[2], timeZone);
  if (isDate(from) && isDate(to) && from <= to) return { from, to: addDays(to, 1) };
  return null;
}

/** A bucket's label from its ISO start time: the local date, or date and hour. */
export function bucketLabel(iso, interval) {
  if (interval === "hour") return iso.slice(0, 16).replace("T", " ");
  if (interval === "month") return iso.slice(0, 7);
  return iso.slice(0, 10);
}
