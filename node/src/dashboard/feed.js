// The insight feed, newest first and at most MAX_ITEMS long, with each
// insight's anchoring status: pending (not in a batch), anchoring (batch
// formed or submitted), anchored (in a block) and final (confirmed).

const MAX_ITEMS = 60;
const STEPS = ["pending", "anchoring", "anchored", "final"];

/** The feed status of a batch status from an `anchor` message. */
export function statusOfBatch(status) {
  return status === "pending" || status === "submitted" ? "anchoring" : status;
}

function rank(status) {
  return Math.max(0, STEPS.indexOf(status));
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function clock(seconds) {
  return new Date(seconds * 1000).toISOString().slice(11, 19);
}

export class InsightFeed {
  /** `onSelect(item)` runs when an insight is clicked or chosen by key. */
  constructor(list, onSelect) {
    this.list = list;
    this.onSelect = onSelect;
    this.items = new Map();
    this.batches = new Map();
  }

  /** An `insights` payload or an `InsightView`. */
  upsert(view) {
    if (!Number.isInteger(view?.id)) return;
    let item = this.items.get(view.id);
    if (!item) {
      item = { id: view.id, status: "pending", batchId: null };
      item.node = this.node(item);
      this.items.set(view.id, item);
      this.place(item);
    }
    Object.assign(item, {
      kind: view.kind, subject: view.subject, severity: view.severity ?? null,
      hash: view.hash, insight: view.insight,
    });
    this.assign(view.id, view.batchId ?? null, view.status);
    this.fill(item);
  }

  place(item) {
    const older = [...this.list.children]
      .find((node) => Number(node.dataset.id) < item.id);
    this.list.insertBefore(item.node, older ?? null);
    while (this.items.size > MAX_ITEMS) {
      const oldest = Math.min(...this.items.keys());
      this.items.get(oldest).node.remove();
      this.items.delete(oldest);
    }
  }

  /** Records what the node said of an insight's batch and status. */
  assign(id, batchId, status) {
    const item = this.items.get(id);
    if (!item) return;
    if (batchId !== null && batchId !== undefined) item.batchId = batchId;
    if (status && rank(status) > rank(item.status)) item.status = status;
    this.refresh(item);
  }

  /** An `anchor` payload: a batch changed status. */
  anchor(data) {
    if (!Number.isInteger(data?.batchId)) return;
    const batch = this.batch(data.batchId);
    const status = statusOfBatch(data.status);
    if (rank(status) >= rank(batch.status)) batch.status = status;
    const details = data.details ?? {};
    batch.blockNumber = details.blockNumber ?? batch.blockNumber;
    batch.blockTimestamp = details.blockTimestamp ?? batch.blockTimestamp;
    this.refreshBatch(data.batchId);
  }

  /** A `BatchView` from JSON-RPC. */
  batchView(view) {
    const batch = this.batch(view.id);
    const status = statusOfBatch(view.status);
    if (rank(status) >= rank(batch.status)) batch.status = status;
    batch.blockNumber = view.blockNumber ?? batch.blockNumber;
    batch.blockTimestamp = view.blockTimestamp ?? batch.blockTimestamp;
    this.refreshBatch(view.id);
  }

  batch(id) {
    if (!this.batches.has(id)) this.batches.set(id, { status: "anchoring" });
    return this.batches.get(id);
  }

  refreshBatch(batchId) {
    for (const item of this.items.values()) {
      if (item.batchId === batchId) this.refresh(item);
    }
  }

  /** Ids of shown insights whose batch is unknown, oldest first. */
  unbatched(limit) {
    return [...this.items.values()]
      .filter((item) => item.batchId === null)
      .map((item) => item.id)
      .sort((a, b) => a - b)
      .slice(0, limit);
  }

  /** Batches of shown insights that are in a block we know no details of. */
  batchesWithoutBlock() {
    const ids = new Set();
    for (const item of this.items.values()) {
      const batch = item.batchId === null ? null : this.batches.get(item.batchId);
      const inBlock = rank(item.status) >= rank("anchored");
      if (item.batchId !== null && inBlock && !batch?.blockTimestamp) {
        ids.add(item.batchId);
      }
    }
    return [...ids];
  }

  node(item) {
    const li = el("li", "insight");
    li.tabIndex = 0;
    li.setAttribute("role", "button");
    li.dataset.id = String(item.id);
    li.addEventListener("click", () => this.onSelect(item));
    li.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        this.onSelect(item);
      }
    });
    return li;
  }

  fill(item) {
    const li = item.node;
    li.replaceChildren();
    li.className = `insight sev-${item.severity ?? "none"}`;
    const head = el("div", "insight-head");
    head.append(el("span", `kind kind-${item.kind}`, item.kind));
    head.append(el("span", "subject", item.subject));
    if (item.severity) head.append(el("span", `sev sev-${item.severity}`, item.severity));
    head.append(el("span", "insight-id", `#${item.id}`));
    const summary = el("p", "summary", item.insight?.summary ?? "");
    const status = el("div", "anchoring");
    li.append(head, summary, status);
    item.statusNode = status;
    this.refresh(item);
  }

  refresh(item) {
    const batch = item.batchId === null ? null : this.batches.get(item.batchId);
    if (batch && rank(batch.status) > rank(item.status)) item.status = batch.status;
    item.node.dataset.status = item.status;
    if (!item.statusNode) return;
    const steps = el("ol", "steps");
    STEPS.forEach((step) => {
      const done = rank(step) <= rank(item.status);
      const dot = el("li", done ? "done" : "", step);
      if (step === item.status) dot.classList.add("current");
      steps.append(dot);
    });
    const where = el("span", "where", this.describe(item, batch));
    item.statusNode.replaceChildren(steps, where);
  }

  describe(item, batch) {
    const stamp = item.insight?.block;
    if (!batch || rank(item.status) < rank("anchored") || !batch.blockNumber) {
      const seen = stamp?.number === undefined ? ""
        : `stamped block ${stamp.number} · ${clock(stamp.timestamp)}Z`;
      return [item.batchId ? `batch ${item.batchId}` : "", seen]
        .filter(Boolean).join(" · ");
    }
    const when = batch.blockTimestamp ? ` · ${clock(batch.blockTimestamp)}Z` : "";
    return `batch ${item.batchId} · block ${batch.blockNumber}${when}`;
  }
}
