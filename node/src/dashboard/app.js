// The live dashboard: wires the WebSocket feed, the charts, the insight
// feed and the verification panel together.

import { MAX_CHARTS, MetricBoard } from "./board.js";
import { InsightFeed } from "./feed.js";
import { VerifyPanel } from "./panel.js";
import { call, callBatch } from "./rpc.js";
import { LiveSocket } from "./socket.js";

const CHANNELS = ["dashboard", "insights", "alerts", "anchors"];
const HISTORY_LIMIT = 1000;
const FEED_LOAD = 60;
const ANOMALY_LOAD = 200;
/** Most calls in one JSON-RPC batch (the node's default limit is 32). */
const BATCH_LIMIT = 32;
const HEALTH_EVERY_MS = 5000;

const $ = (id) => document.getElementById(id);

class Dashboard {
  constructor(config) {
    this.config = config;
    this.welcomed = false;
    this.alerts = new Set();
    this.lookup = 0;
    this.board = new MetricBoard($("charts"), $("charts-empty"),
      (metric) => this.requestHistory(metric));
    this.feed = new InsightFeed($("feed"), (item) => this.panel.open(item));
    this.panel = new VerifyPanel($("verify"), config);
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    this.socket = new LiveSocket(`${scheme}//${location.host}${config.wsPath}`, {
      onState: (state, delay) => this.showConnection(state, delay),
      onWelcome: () => this.welcome(),
      onMessage: (message) => this.receive(message),
    });
  }

  start() {
    $("foot-rpc").textContent = this.config.rpcUrl ?? "starting";
    $("foot-chain").textContent = this.config.chainRpcUrl;
    $("foot-contract").textContent = this.config.contract;
    this.socket.start();
    this.loadInsights();
    this.pollHealth();
  }

  welcome() {
    this.socket.send({ type: "subscribe", channels: CHANNELS });
    // Charts made before the socket opened, or before it dropped, get
    // their history now; after a reconnection the feed is refreshed too.
    this.board.metrics().forEach((metric) => this.requestHistory(metric));
    if (this.welcomed) this.loadInsights();
    this.welcomed = true;
  }

  receive(message) {
    const data = message.data ?? {};
    switch (message.type) {
      case "dashboard_update":
        return this.board.addLive(data);
      case "historical_data":
        return this.board.addHistory(data.metric, data.points);
      case "insights":
        return this.addInsight(data);
      case "alert":
        return this.addInsight(data);
      case "anchor":
        this.feed.anchor(data);
        return this.scheduleLookup();
      case "error":
        return console.warn("node says:", data.message);
      default:
        return undefined;
    }
  }

  addInsight(view) {
    this.feed.upsert(view);
    this.noteAlert(view);
    if (view.kind === "anomaly") this.board.addAnomaly(view.insight, view.severity);
    if (view.kind === "prediction") this.board.addPrediction(view.insight);
  }

  /** Counts the high and critical insights this page has seen. */
  noteAlert(view) {
    if (view.severity !== "high" && view.severity !== "critical") return;
    this.alerts.add(view.id);
    $("stat-alerts").textContent = String(this.alerts.size);
  }

  requestHistory(metric) {
    this.socket.send({ type: "request_historical_data", metric, limit: HISTORY_LIMIT });
  }

  async loadInsights() {
    try {
      const rpc = this.config.rpcPath;
      const [recent, anomalies] = await Promise.all([
        call(rpc, "analytics_listInsights", [{ limit: FEED_LOAD }]),
        call(rpc, "analytics_listInsights", [{ kind: "anomaly", limit: ANOMALY_LOAD }]),
      ]);
      anomalies.forEach((view) => {
        this.board.addAnomaly(view.insight, view.severity);
        this.noteAlert(view);
      });
      // Metrics with recent anomalies get their charts before any sample
      // arrives; the newest anomalies' metrics come last, so they stay.
      const subjects = [...new Set(anomalies.map((view) => view.subject))];
      subjects.slice(0, MAX_CHARTS).reverse().forEach((name) => this.board.track(name));
      [...recent].reverse().forEach((view) => this.addInsight(view));
      await this.loadBlocks();
    } catch (error) {
      console.warn("could not load insights:", error.message);
    }
  }

  /** Looks up batches of insights that arrived before their batch formed. */
  scheduleLookup() {
    clearTimeout(this.lookup);
    this.lookup = setTimeout(() => this.lookupBatches(), 250);
  }

  async lookupBatches() {
    const ids = this.feed.unbatched(BATCH_LIMIT);
    try {
      const calls = ids.map((id) => ["analytics_getInsight", [id]]);
      const answers = await callBatch(this.config.rpcPath, calls);
      answers.forEach(({ result }, i) => {
        if (result) this.feed.assign(ids[i], result.batchId, result.status);
      });
      await this.loadBlocks();
    } catch (error) {
      console.warn("could not look up batches:", error.message);
    }
  }

  /** Fetches the anchoring block of batches known only by id. */
  async loadBlocks() {
    const batches = this.feed.batchesWithoutBlock().slice(0, BATCH_LIMIT);
    const calls = batches.map((id) => ["analytics_getBatch", [id]]);
    const answers = await callBatch(this.config.rpcPath, calls);
    answers.forEach(({ result }) => result && this.feed.batchView(result));
  }

  async pollHealth() {
    try {
      const health = await call(this.config.rpcPath, "analytics_systemHealth");
      this.showHealth(health);
    } catch {
      $("stat-status").textContent = "unreachable";
    }
    setTimeout(() => this.pollHealth(), HEALTH_EVERY_MS);
  }

  showHealth(health) {
    const number = (n) => (typeof n === "number" ? n.toLocaleString("en-US") : "–");
    $("stat-eps").textContent = (health.eventsPerSecond ?? 0).toFixed(1);
    $("stat-events").textContent = number(health.totals?.events);
    $("stat-insights").textContent = number(health.totals?.insights);
    $("stat-batches").textContent = number(health.totals?.batches);
    $("stat-head").textContent = health.chainHead ? `#${health.chainHead.number}` : "–";
    $("stat-status").textContent = health.status ?? "–";
    $("stat-status").dataset.state = health.status ?? "";
  }

  showConnection(state, delay) {
    document.body.dataset.connection = state;
    const text = {
      connecting: "connecting…",
      open: "live",
      waiting: `reconnecting in ${Math.ceil((delay ?? 0) / 1000)} s`,
    }[state];
    $("conn-text").textContent = text;
  }
}

async function main() {
  const response = await fetch("/config.json", { cache: "no-store" });
  const config = await response.json();
  new Dashboard(config).start();
}

main().catch((error) => {
  document.body.dataset.connection = "failed";
  $("conn-text").textContent = `cannot start: ${error.message}`;
});
