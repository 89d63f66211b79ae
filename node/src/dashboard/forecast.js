// Reads a `prediction` insight into chart points. The prediction engine's
// exact fields are not fixed yet, so this accepts the plausible shapes and
// returns null when it finds no usable forecast:
// - `forecast`: a number, an array of numbers, or an array of objects with
//   `value` and a time (`timestamp_ms`, `t` or `time`);
// - `horizon_ms` (or `horizon`, in milliseconds) or `step_ms`: when the
//   forecast values fall after the insight's event time;
// - `interval`: `[low, high]`, `{low, high}` or `{lower, upper}`, one for
//   all values or an array with one per value; or flat `lower`/`upper`.

function asNumber(value) {
  return typeof value === "number" && Number.isFinite(value) ? value : undefined;
}

function readBounds(interval) {
  if (Array.isArray(interval) && interval.length === 2
    && interval.every((v) => typeof v === "number")) {
    return { low: interval[0], high: interval[1] };
  }
  if (interval && typeof interval === "object") {
    return {
      low: asNumber(interval.low ?? interval.lower),
      high: asNumber(interval.high ?? interval.upper),
    };
  }
  return { low: undefined, high: undefined };
}

function boundsAt(data, index, count) {
  const interval = data.interval;
  if (Array.isArray(interval) && interval.length === count
    && interval.some((v) => typeof v === "object" && v !== null)) {
    return readBounds(interval[index]);
  }
  if (interval !== undefined) return readBounds(interval);
  return { low: asNumber(data.lower), high: asNumber(data.upper) };
}

function readValues(data) {
  const forecast = data.forecast ?? data.predicted ?? data.prediction;
  if (typeof forecast === "number") return [{ v: forecast }];
  if (!Array.isArray(forecast)) return [];
  return forecast.map((entry) => {
    if (typeof entry === "number") return { v: entry };
    if (entry && typeof entry === "object") {
      const t = asNumber(entry.timestamp_ms ?? entry.t ?? entry.time);
      return { v: asNumber(entry.value ?? entry.v), t };
    }
    return { v: undefined };
  });
}

/**
 * `{metric, points: [{t, v, low, high}]}` from a prediction insight, or
 * null. `typicalStepMs` spaces values that carry no time and no horizon.
 */
export function readForecast(insight, typicalStepMs) {
  const data = insight?.data;
  const start = asNumber(insight?.event?.timestamp_ms);
  if (!data || typeof data !== "object" || start === undefined) return null;
  const values = readValues(data);
  if (values.length === 0) return null;

  const horizon = asNumber(data.horizon_ms ?? data.horizon);
  const step = asNumber(data.step_ms)
    ?? (horizon !== undefined ? horizon / values.length : typicalStepMs);
  const points = values.map((entry, i) => ({
    t: entry.t ?? start + step * (i + 1),
    v: entry.v,
    ...boundsAt(data, i, values.length),
  })).filter((p) => Number.isFinite(p.t) && Number.isFinite(p.v));
  if (points.length === 0) return null;
  return { metric: insight.subject, points };
}
