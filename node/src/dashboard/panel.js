// The verification panel: fetches an insight's proof document from the
// node and checks it in this browser against the chain (verify.js),
// showing each check as it completes.

import { call } from "./rpc.js";
import { recompute, verifyProof } from "./verify.js";

/** JSON-RPC code of "the insight is not in a batch yet". */
const NOT_BATCHED = -32002;

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** Why a proof failed, in the words a reader needs first. */
function notVerified(batch) {
  if (batch?.status === "pending" || batch?.status === "submitted") {
    return `NOT VERIFIED yet: batch ${batch.id} is still being anchored `
      + `(${batch.status}); try again shortly`;
  }
  return "NOT VERIFIED: see the failed checks";
}

export class VerifyPanel {
  constructor(root, config) {
    this.root = root;
    this.config = config;
    this.run = 0;
    this.title = root.querySelector("#verify-title");
    this.about = root.querySelector("#verify-about");
    this.checks = root.querySelector("#verify-checks");
    this.verdict = root.querySelector("#verify-verdict");
    this.canonical = root.querySelector("#verify-canonical");
    this.trust = root.querySelector("#verify-trust");
    root.querySelector("#verify-close").addEventListener("click", () => this.close());
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape") this.close();
    });
  }

  close() {
    this.run += 1;
    this.root.hidden = true;
    document.body.classList.remove("verifying");
  }

  /** Opens the panel on a feed item and verifies its proof. */
  async open(item) {
    const run = ++this.run;
    this.root.hidden = false;
    document.body.classList.add("verifying");
    this.title.textContent = `Insight #${item.id}`;
    this.describe(item);
    this.checks.replaceChildren();
    this.canonical.textContent = "";
    this.setVerdict("running", "fetching the proof from the node…");

    let doc;
    try {
      doc = await call(this.config.rpcPath, "analytics_getInsightProof", [item.id]);
    } catch (error) {
      if (run !== this.run) return;
      const waiting = error.code === NOT_BATCHED;
      this.setVerdict(waiting ? "unavailable" : "failed", waiting
        ? "not in a batch yet: its proof exists once the node batches it"
        : `the node did not give a proof: ${error.message}`);
      return;
    }
    if (run !== this.run) return;
    this.canonical.textContent = recompute(doc).text;
    this.setVerdict("running", `checking batch ${doc.batch?.id} against the chain…`);
    const { chainRpcUrl, contract } = this.config;
    const options = { chainRpcUrl, contract };
    const ok = await verifyProof(doc, options, (check) => {
      if (run === this.run) this.checks.append(this.row(check));
    });
    if (run !== this.run) return;
    this.setVerdict(ok ? "verified" : "failed", ok
      ? "VERIFIED: this content is in a batch the contract anchored"
      : notVerified(doc.batch));
  }

  describe(item) {
    const head = el("div", "insight-head");
    head.append(el("span", `kind kind-${item.kind}`, item.kind));
    head.append(el("span", "subject", item.subject));
    if (item.severity) head.append(el("span", `sev sev-${item.severity}`, item.severity));
    const summary = el("p", "summary", item.insight?.summary ?? "");
    const hash = el("p", "mono dim", item.hash ?? "");
    this.about.replaceChildren(head, summary, hash);
    this.trust.textContent = `Trusted: the chain endpoint ${this.config.chainRpcUrl} `
      + `and the contract ${this.config.contract}, as this node's configuration `
      + "names them; compare them with your own. The proof itself is checked, "
      + "not trusted.";
  }

  row(check) {
    const li = el("li", `check ${check.ok ? "ok" : "fail"}`);
    li.dataset.check = check.id;
    li.dataset.ok = String(check.ok);
    li.append(el("span", "mark", check.ok ? "✓" : "✗"));
    const body = el("div", "check-body");
    body.append(el("strong", "", check.title));
    if (check.value) body.append(el("code", "mono", check.value));
    body.append(el("span", "detail", check.detail));
    li.append(body);
    return li;
  }

  setVerdict(state, text) {
    this.root.dataset.verdict = state;
    this.verdict.className = `verdict ${state}`;
    this.verdict.textContent = text;
  }
}
