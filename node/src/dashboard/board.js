// The metric charts: one card per metric, at most MAX_CHARTS of them (the
// metric quiet for longest gives its place to a new one), each keeping its
// newest MAX_POINTS samples, the anomalies seen on it and its forecast.

import { MetricChart, formatNumber } from "./chart.js";
import { readForecast } from "./forecast.js";

/** Most charts shown at once. */
export const MAX_CHARTS = 6;
const MAX_POINTS = 1000;
const MAX_ANOMALIES = 200;
const MAX_UNCHARTED = 50;

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** The index of the first point later than t (points ascend by t). */
function insertionIndex(points, t) {
  let lo = 0;
  let hi = points.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (points[mid].t <= t) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * Whether a sample with time t and value v is already among the points
 * just before index `at`. A history answer can hold samples whose live
 * broadcasts are still on their way, so a live sample may arrive twice;
 * samples are told apart by time and value only, which merges two equal
 * values stamped with the same millisecond.
 */
function seen(points, at, t, v) {
  for (let i = at - 1; i >= 0 && points[i].t === t; i--) {
    if (points[i].v === v) return true;
  }
  return false;
}

function typicalStep(points) {
  if (points.length < 2) return 60000;
  const gaps = [];
  for (let i = Math.max(1, points.length - 50); i < points.length; i++) {
    gaps.push(points[i].t - points[i - 1].t);
  }
  gaps.sort((a, b) => a - b);
  return gaps[gaps.length >> 1] || 60000;
}

export class MetricBoard {
  /** `onNewMetric(name)` runs when a metric gets its chart. */
  constructor(container, placeholder, onNewMetric) {
    this.container = container;
    this.placeholder = placeholder;
    this.onNewMetric = onNewMetric;
    this.charts = new Map();
    this.uncharted = new Map();
    this.dirty = new Set();
    this.frame = 0;
    new ResizeObserver(() => this.charts.forEach((_, name) => this.touch(name)))
      .observe(container);
  }

  /** Names of the metrics with a chart. */
  metrics() {
    return [...this.charts.keys()];
  }

  /** Gives a metric its chart, if it has none yet. */
  track(name) {
    if (typeof name !== "string") return;
    this.entry(name);
    this.touch(name);
  }

  /** A live `dashboard_update` payload. */
  addLive(data) {
    const t = Date.parse(data.timestamp);
    if (typeof data.metric !== "string" || !Number.isFinite(t)) return;
    if (typeof data.value !== "number") return;
    const entry = this.entry(data.metric);
    const points = entry.points;
    const at = insertionIndex(points, t);
    if (!seen(points, at, t, data.value)) {
      points.splice(at, 0, { t, v: data.value });
      if (points.length > MAX_POINTS) points.splice(0, points.length - MAX_POINTS);
    }
    entry.change = data.change_percent;
    entry.lastSeen = performance.now();
    this.touch(data.metric);
  }

  /** A `historical_data` answer: points newest first. */
  addHistory(metric, history) {
    const entry = this.charts.get(metric);
    if (!entry || !Array.isArray(history)) return;
    const older = history
      .map((p) => ({ t: Date.parse(p.timestamp), v: p.value }))
      .filter((p) => Number.isFinite(p.t) && typeof p.v === "number")
      .reverse();
    if (older.length === 0) return;
    const newest = older[older.length - 1].t;
    const later = entry.points.filter((p) => p.t > newest);
    entry.points = older.concat(later).slice(-MAX_POINTS);
    if (entry.change === undefined) entry.change = history[0].changePercent;
    this.touch(metric);
  }

  /** An anomaly insight's content: marks its value on its metric. */
  addAnomaly(insight, severity) {
    const mark = { t: insight?.event?.timestamp_ms, v: insight?.data?.value, severity };
    if (!Number.isFinite(mark.t) || !Number.isFinite(mark.v)) return;
    const name = insight.subject;
    const list = this.charts.get(name)?.anomalies ?? this.unchartedList(name);
    if (list.some((m) => m.t === mark.t && m.v === mark.v)) return;
    list.push(mark);
    if (list.length > MAX_ANOMALIES) list.shift();
    this.touch(name);
  }

  /** A prediction insight's content: replaces its metric's forecast. */
  addPrediction(insight) {
    const entry = this.charts.get(insight?.subject);
    if (!entry) return;
    const forecast = readForecast(insight, typicalStep(entry.points));
    if (!forecast) return;
    entry.forecast = forecast.points;
    this.touch(insight.subject);
  }

  unchartedList(name) {
    if (!this.uncharted.has(name)) {
      if (this.uncharted.size >= MAX_UNCHARTED) {
        this.uncharted.delete(this.uncharted.keys().next().value);
      }
      this.uncharted.set(name, []);
    }
    return this.uncharted.get(name);
  }

  entry(name) {
    const found = this.charts.get(name);
    if (found) return found;
    if (this.charts.size >= MAX_CHARTS) this.evictQuietest();
    const entry = this.card(name);
    entry.anomalies = this.uncharted.get(name) ?? [];
    this.uncharted.delete(name);
    this.charts.set(name, entry);
    this.placeholder.hidden = true;
    this.onNewMetric(name);
    return entry;
  }

  evictQuietest() {
    let quietest = null;
    for (const [name, entry] of this.charts) {
      if (!quietest || entry.lastSeen < this.charts.get(quietest).lastSeen) {
        quietest = name;
      }
    }
    const entry = this.charts.get(quietest);
    entry.root.remove();
    this.uncharted.set(quietest, entry.anomalies);
    this.charts.delete(quietest);
  }

  card(name) {
    const root = el("article", "card chart-card");
    root.dataset.metric = name;
    const head = el("header", "chart-head");
    const title = el("h3", "chart-title", name);
    title.title = name;
    const value = el("span", "chart-value", "–");
    const change = el("span", "chart-change");
    head.append(title, value, change);
    const canvas = el("canvas", "chart-canvas");
    canvas.dataset.metric = name;
    canvas.setAttribute("role", "img");
    canvas.setAttribute("aria-label", `${name} over time`);
    const foot = el("footer", "chart-foot");
    this.container.append(root);
    root.append(head, canvas, foot);
    return {
      root, valueEl: value, changeEl: change, footEl: foot,
      chart: new MetricChart(canvas), points: [], anomalies: [], forecast: null,
      lastSeen: performance.now(), change: undefined,
    };
  }

  touch(name) {
    if (!this.charts.has(name)) return;
    this.dirty.add(name);
    this.frame ||= requestAnimationFrame(() => this.flush());
  }

  flush() {
    this.frame = 0;
    for (const name of this.dirty) {
      const entry = this.charts.get(name);
      if (entry) this.render(entry);
    }
    this.dirty.clear();
  }

  render(entry) {
    entry.chart.draw(entry);
    const last = entry.points[entry.points.length - 1];
    entry.valueEl.textContent = last ? formatNumber(last.v) : "–";
    const change = entry.change;
    entry.changeEl.textContent = typeof change === "number"
      ? `${change >= 0 ? "+" : ""}${change.toFixed(2)}%` : "";
    entry.changeEl.className =
      `chart-change ${change > 0 ? "up" : change < 0 ? "down" : ""}`;
    const marks = entry.chart.canvas.dataset.anomalies;
    entry.footEl.textContent = `${entry.points.length} samples · ${marks} anomalies`
      + (entry.forecast ? " · forecast" : "");
  }
}
