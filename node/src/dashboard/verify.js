// The verification of a proof document in the browser, trusting only the
// chain endpoint and the contract address (docs/verification.md, 7 and 8).
// Each check reports {id, title, ok, detail} as soon as it is done.

import { sameHex, toHex, utf8 } from "./bytes.js";
import { AnchorContract } from "./eth.js";
import { canonicalize } from "./jcs.js";
import { keccak256 } from "./keccak.js";
import { leafOf, processProof } from "./merkle.js";

/** RFC 3339 text of a Unix time in seconds. */
export function isoSeconds(seconds) {
  return new Date(seconds * 1000).toISOString().replace(".000Z", "Z");
}

/** The hash, leaf and root that the document's content and proof give. */
export function recompute(doc) {
  const text = canonicalize(doc.insight);
  const bytes = utf8(text);
  const hash = toHex(keccak256(bytes));
  const leaf = leafOf(hash);
  const root = processProof(leaf, doc.proof ?? []);
  return { text, length: bytes.length, hash, leaf, root };
}

function claim(computed, claimed, what) {
  if (claimed === undefined || claimed === null) {
    return { ok: true, note: `(the document states no ${what})` };
  }
  const ok = sameHex(computed, claimed);
  return { ok, note: ok ? `matches the document's ${what}` : `document says ${claimed}` };
}

/** The checks that need nothing but the document. */
function localChecks(doc, local) {
  const hash = claim(local.hash, doc.hash, "hash");
  const leaf = claim(local.leaf, doc.leaf, "leaf");
  const root = claim(local.root, doc.root, "root");
  const nodes = (doc.proof ?? []).length;
  return [
    { id: "hash", title: "Content hash", ok: hash.ok, value: local.hash,
      detail: `keccak256 of its ${local.length}-byte RFC 8785 text; ${hash.note}` },
    { id: "leaf", title: "Merkle leaf", ok: leaf.ok, value: local.leaf,
      detail: `keccak256(keccak256(hash)); ${leaf.note}` },
    { id: "root", title: "Merkle root", ok: root.ok, value: local.root,
      detail: `from ${nodes} proof node${nodes === 1 ? "" : "s"}; ${root.note}` },
  ];
}

async function chainCheck(contract, doc) {
  const id = await contract.chainId();
  const claimed = doc.batch?.chainId;
  const ok = claimed === undefined || claimed === id;
  return { id: "chain", title: "Chain", ok,
    detail: `chain id ${id}${claimed === undefined ? "" : ` (document: ${claimed})`}` };
}

async function contractCheck(contract, doc) {
  const code = await contract.code();
  const hasCode = typeof code === "string" && code.length > 2;
  const named = doc.batch?.contract;
  const same = !named || sameHex(named, contract.address);
  const detail = !hasCode
    ? `no contract code at ${contract.address}`
    : `${contract.address}${same ? "" : `; the document names ${named}`}`;
  return { id: "contract", title: "Contract", ok: hasCode && same, detail };
}

async function recordCheck(contract, doc, root) {
  const record = await contract.anchorOf(root);
  if (record.batchId === 0) {
    return { check: { id: "record", title: "Anchor record", ok: false,
      detail: `NOT ANCHORED: the contract has no record of ${root}` } };
  }
  const count = doc.batch?.leafCount;
  const ok = count === undefined || count === record.leafCount;
  const detail = `batch ${record.batchId} in block ${record.blockNumber} at `
    + `${isoSeconds(record.timestamp)}, ${record.leafCount} leaves`;
  return { record, check: { id: "record", title: "Anchor record", ok, detail } };
}

async function proofCheck(contract, root, doc, hash) {
  const ok = await contract.verifyInsight(root, doc.proof ?? [], hash);
  return { id: "onchain", title: "On-chain proof", ok,
    detail: ok ? "the contract's verifyInsight accepts the proof"
      : "the contract's verifyInsight rejects the proof" };
}

async function depthCheck(contract, record) {
  const [latest, block] = await Promise.all([
    contract.blockNumber(), contract.block(record.blockNumber),
  ]);
  const confirmations = latest + 1 - record.blockNumber;
  const timeOk = block !== null && Number(BigInt(block.timestamp)) === record.timestamp;
  const ok = timeOk && confirmations >= 1;
  const detail = `${confirmations} confirmation${confirmations === 1 ? "" : "s"}; `
    + (timeOk ? `block ${record.blockNumber} time matches the record`
      : `block ${record.blockNumber} time does not match the record`);
  return { id: "depth", title: "Anchoring block", ok, detail };
}

async function stampCheck(contract, doc) {
  const stamp = doc.insight?.block;
  if (!stamp || typeof stamp.number !== "number" || !stamp.hash) {
    return { id: "stamp", title: "Block stamp", ok: false,
      detail: "the insight has no block stamp" };
  }
  const block = await contract.block(stamp.number);
  const ok = block !== null && sameHex(block.hash, stamp.hash);
  const when = block ? ` at ${isoSeconds(Number(BigInt(block.timestamp)))}` : "";
  return { id: "stamp", title: "Block stamp", ok,
    detail: ok ? `computed after block ${stamp.number}${when}`
      : `block ${stamp.number} on the chain is not ${stamp.hash}` };
}

async function guarded(id, title, step) {
  try {
    return await step();
  } catch (error) {
    return { id, title, ok: false, detail: `could not check: ${error.message}` };
  }
}

/**
 * Runs every check; `report(check)` sees each as it completes. Resolves
 * to true only when all pass.
 */
export async function verifyProof(doc, { chainRpcUrl, contract }, report) {
  const local = recompute(doc);
  let ok = true;
  const note = (check) => {
    ok &&= check.ok;
    report(check);
  };
  localChecks(doc, local).forEach(note);

  const anchor = new AnchorContract(chainRpcUrl, contract);
  note(await guarded("chain", "Chain", () => chainCheck(anchor, doc)));
  note(await guarded("contract", "Contract", () => contractCheck(anchor, doc)));
  let record = null;
  note(await guarded("record", "Anchor record", async () => {
    const found = await recordCheck(anchor, doc, local.root);
    record = found.record ?? null;
    return found.check;
  }));
  if (record) {
    note(await guarded("onchain", "On-chain proof",
      () => proofCheck(anchor, local.root, doc, local.hash)));
    note(await guarded("depth", "Anchoring block", () => depthCheck(anchor, record)));
  }
  note(await guarded("stamp", "Block stamp", () => stampCheck(anchor, doc)));
  return ok;
}
