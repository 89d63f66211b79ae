// A hand-drawn time-series chart on a canvas: axes with labelled ticks,
// the series as a line over a soft fill, anomalies as marks coloured by
// severity, and a forecast as a dashed line inside its interval band.

const PAD = { left: 56, right: 14, top: 12, bottom: 26 };
const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const TIME_STEPS = [
  SECOND, 2 * SECOND, 5 * SECOND, 10 * SECOND, 15 * SECOND, 30 * SECOND,
  MINUTE, 2 * MINUTE, 5 * MINUTE, 10 * MINUTE, 15 * MINUTE, 30 * MINUTE,
  HOUR, 2 * HOUR, 3 * HOUR, 6 * HOUR, 12 * HOUR,
  DAY, 2 * DAY, 7 * DAY, 14 * DAY, 30 * DAY, 91 * DAY, 365 * DAY,
];

/** A round step (1, 2 or 5 times a power of ten) near `raw`. */
export function niceStep(raw) {
  if (!(raw > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(raw));
  const scaled = raw / power;
  const factor = scaled <= 1 ? 1 : scaled <= 2 ? 2 : scaled <= 5 ? 5 : 10;
  return factor * power;
}

/** A number as a tick label, with as many decimals as the step needs. */
export function formatNumber(value, step = 0) {
  const magnitude = Math.abs(value);
  if (magnitude >= 1e6) return `${+(value / 1e6).toPrecision(4)}M`;
  if (magnitude >= 1e4) return `${+(value / 1e3).toPrecision(4)}k`;
  const decimals = step > 0 ? Math.max(0, Math.min(4, -Math.floor(Math.log10(step)))) : 2;
  return value.toFixed(decimals);
}

function pad2(n) {
  return String(n).padStart(2, "0");
}

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep",
  "Oct", "Nov", "Dec"];

/** A UTC time label fitting the tick step. */
function formatTime(ms, step) {
  const d = new Date(ms);
  const clock = `${pad2(d.getUTCHours())}:${pad2(d.getUTCMinutes())}`;
  const date = `${MONTHS[d.getUTCMonth()]} ${d.getUTCDate()}`;
  if (step >= DAY) return date;
  if (step < MINUTE) return `${clock}:${pad2(d.getUTCSeconds())}`;
  if (step >= 6 * HOUR || (d.getUTCHours() === 0 && d.getUTCMinutes() === 0)) {
    return `${date} ${clock}`;
  }
  return clock;
}

function cssColors() {
  const style = getComputedStyle(document.documentElement);
  const read = (name) => style.getPropertyValue(name).trim();
  return {
    grid: read("--grid"), axis: read("--muted"), line: read("--accent"),
    surface: read("--surface"), forecast: read("--forecast"),
    severity: {
      low: read("--sev-low"), medium: read("--sev-medium"),
      high: read("--sev-high"), critical: read("--sev-critical"),
    },
  };
}

/** The ranges the data spans, padded so that nothing touches an edge. */
function extent(series) {
  const { points, anomalies, forecast } = series;
  let t0 = points[0].t;
  let t1 = points[points.length - 1].t;
  let lo = Infinity;
  let hi = -Infinity;
  const widen = (v) => {
    if (Number.isFinite(v)) {
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
    }
  };
  points.forEach((p) => widen(p.v));
  anomalies.filter((a) => a.t >= t0 && a.t <= t1).forEach((a) => widen(a.v));
  for (const f of forecast ?? []) {
    t1 = Math.max(t1, f.t);
    [f.v, f.low, f.high].forEach(widen);
  }
  if (t1 - t0 < MINUTE) {
    const middle = (t0 + t1) / 2;
    t0 = middle - MINUTE / 2;
    t1 = middle + MINUTE / 2;
  }
  const margin = hi > lo ? (hi - lo) * 0.08 : Math.max(1, Math.abs(hi) * 0.1);
  return { t0, t1, lo: lo - margin, hi: hi + margin };
}

export class MetricChart {
  constructor(canvas) {
    this.canvas = canvas;
    this.colors = null;
  }

  /** Draws `series` ({points, anomalies, forecast}) at the canvas size. */
  draw(series) {
    const ctx = this.prepare();
    if (!ctx) return;
    const { width, height } = this.size;
    ctx.clearRect(0, 0, width, height);
    this.canvas.dataset.points = String(series.points.length);
    if (series.points.length === 0) {
      this.canvas.dataset.anomalies = "0";
      return this.empty(ctx);
    }
    const box = extent(series);
    const innerWidth = width - PAD.left - PAD.right;
    const innerHeight = height - PAD.top - PAD.bottom;
    const plot = {
      x: (t) => PAD.left + ((t - box.t0) / (box.t1 - box.t0)) * innerWidth,
      y: (v) => PAD.top + (1 - (v - box.lo) / (box.hi - box.lo)) * innerHeight,
    };
    this.axes(ctx, box, plot);
    this.forecast(ctx, series, plot);
    this.line(ctx, series.points, plot);
    const marked = this.anomalies(ctx, series.anomalies, box, plot);
    this.canvas.dataset.anomalies = String(marked);
    this.canvas.dataset.forecast = String(series.forecast?.length ?? 0);
  }

  prepare() {
    const ctx = this.canvas.getContext("2d");
    const width = this.canvas.clientWidth;
    const height = this.canvas.clientHeight;
    if (!ctx || width === 0 || height === 0) return null;
    const ratio = window.devicePixelRatio || 1;
    if (this.canvas.width !== Math.round(width * ratio)
      || this.canvas.height !== Math.round(height * ratio)) {
      this.canvas.width = Math.round(width * ratio);
      this.canvas.height = Math.round(height * ratio);
    }
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    this.size = { width, height };
    this.colors ??= cssColors();
    ctx.font = "11px system-ui, sans-serif";
    return ctx;
  }

  empty(ctx) {
    ctx.fillStyle = this.colors.axis;
    ctx.textAlign = "center";
    ctx.fillText("waiting for samples", this.size.width / 2, this.size.height / 2);
  }

  axes(ctx, box, plot) {
    const { width, height } = this.size;
    const bottom = height - PAD.bottom;
    ctx.lineWidth = 1;
    ctx.strokeStyle = this.colors.grid;
    ctx.fillStyle = this.colors.axis;

    const step = niceStep((box.hi - box.lo) / 4);
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (let v = Math.ceil(box.lo / step) * step; v <= box.hi; v += step) {
      const y = Math.round(plot.y(v)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(PAD.left, y);
      ctx.lineTo(width - PAD.right, y);
      ctx.stroke();
      ctx.fillText(formatNumber(v, step), PAD.left - 8, y);
    }

    const room = Math.max(2, Math.floor((width - PAD.left - PAD.right) / 80));
    const tStep = TIME_STEPS.find((s) => (box.t1 - box.t0) / s <= room)
      ?? TIME_STEPS[TIME_STEPS.length - 1];
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    for (let t = Math.ceil(box.t0 / tStep) * tStep; t <= box.t1; t += tStep) {
      const x = Math.round(plot.x(t)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(x, bottom);
      ctx.lineTo(x, bottom + 4);
      ctx.stroke();
      const label = formatTime(t, tStep);
      if (x + ctx.measureText(label).width / 2 <= width) {
        ctx.fillText(label, x, bottom + 7);
      }
    }

    ctx.strokeStyle = this.colors.axis;
    ctx.beginPath();
    ctx.moveTo(PAD.left + 0.5, PAD.top);
    ctx.lineTo(PAD.left + 0.5, bottom + 0.5);
    ctx.lineTo(width - PAD.right, bottom + 0.5);
    ctx.stroke();
  }

  line(ctx, points, plot) {
    const bottom = this.size.height - PAD.bottom;
    const path = new Path2D();
    points.forEach((p, i) => {
      const [x, y] = [plot.x(p.t), plot.y(p.v)];
      if (i === 0) path.moveTo(x, y);
      else path.lineTo(x, y);
    });

    const fill = new Path2D(path);
    fill.lineTo(plot.x(points[points.length - 1].t), bottom);
    fill.lineTo(plot.x(points[0].t), bottom);
    fill.closePath();
    const gradient = ctx.createLinearGradient(0, PAD.top, 0, bottom);
    gradient.addColorStop(0, `${this.colors.line}55`);
    gradient.addColorStop(1, `${this.colors.line}00`);
    ctx.fillStyle = gradient;
    ctx.fill(fill);

    ctx.strokeStyle = this.colors.line;
    ctx.lineWidth = 1.5;
    ctx.lineJoin = "round";
    ctx.stroke(path);

    const last = points[points.length - 1];
    ctx.fillStyle = this.colors.line;
    ctx.beginPath();
    ctx.arc(plot.x(last.t), plot.y(last.v), 3, 0, 2 * Math.PI);
    ctx.fill();
  }

  anomalies(ctx, anomalies, box, plot) {
    let marked = 0;
    for (const a of anomalies) {
      if (a.t < box.t0 || a.t > box.t1 || !Number.isFinite(a.v)) continue;
      const [x, y] = [plot.x(a.t), plot.y(a.v)];
      ctx.fillStyle = this.colors.severity[a.severity] ?? this.colors.severity.medium;
      ctx.strokeStyle = this.colors.surface;
      ctx.lineWidth = 2;
      ctx.beginPath();
      ctx.arc(x, y, a.severity === "critical" ? 6 : 5, 0, 2 * Math.PI);
      ctx.fill();
      ctx.stroke();
      marked += 1;
    }
    return marked;
  }

  forecast(ctx, series, plot) {
    const forecast = series.forecast ?? [];
    if (forecast.length === 0) return;
    const last = series.points[series.points.length - 1];
    const band = forecast
      .filter((f) => Number.isFinite(f.low) && Number.isFinite(f.high));
    if (band.length > 0) {
      ctx.fillStyle = `${this.colors.forecast}33`;
      ctx.beginPath();
      ctx.moveTo(plot.x(last.t), plot.y(last.v));
      band.forEach((f) => ctx.lineTo(plot.x(f.t), plot.y(f.high)));
      [...band].reverse().forEach((f) => ctx.lineTo(plot.x(f.t), plot.y(f.low)));
      ctx.closePath();
      ctx.fill();
    }
    ctx.strokeStyle = this.colors.forecast;
    ctx.lineWidth = 1.5;
    ctx.setLineDash([5, 4]);
    ctx.beginPath();
    ctx.moveTo(plot.x(last.t), plot.y(last.v));
    forecast.filter((f) => Number.isFinite(f.v))
      .forEach((f) => ctx.lineTo(plot.x(f.t), plot.y(f.v)));
    ctx.stroke();
    ctx.setLineDash([]);
  }
}
