// An independent check of a served insight proof, sharing no code with the
// node: RFC 8785 canonicalisation by the `canonicalize` package, keccak256
// from `ethereum-cryptography`, the Merkle proof by OpenZeppelin's
// `@openzeppelin/merkle-tree`, and the contract's views through plain
// `eth_call` requests with hand-built ABI encoding.
//
//   node tests/js/verify-proof.mjs <proof.json> <rpc-url> <contract>
//
// Prints one JSON object with each check's result; exits 0 only when all
// checks pass.

import { createRequire } from "node:module";
import { readFileSync } from "node:fs";

const require = createRequire(new URL("../../contracts/package.json", import.meta.url));
const { StandardMerkleTree } = require("@openzeppelin/merkle-tree");
const canonicalize = require("canonicalize");
const { keccak256 } = require("ethereum-cryptography/keccak");

const [proofPath, rpcUrl, contract] = process.argv.slice(2);
const doc = JSON.parse(readFileSync(proofPath, "utf8"));

const hex = (bytes) => "0x" + Buffer.from(bytes).toString("hex");
const word = (h) => h.replace(/^0x/, "").padStart(64, "0");
const selector = (sig) => hex(keccak256(Buffer.from(sig))).slice(0, 10);

async function ethCall(data) {
  const body = {
    jsonrpc: "2.0", id: 1, method: "eth_call",
    params: [{ to: contract, data }, "latest"],
  };
  const res = await fetch(rpcUrl, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  const json = await res.json();
  if (json.error) throw new Error(JSON.stringify(json.error));
  return json.result.replace(/^0x/, "");
}

const hash = hex(keccak256(Buffer.from(canonicalize(doc.insight), "utf8")));
const merkle = StandardMerkleTree.verify(doc.root, ["bytes32"], [hash], doc.proof);

// verifyInsight(bytes32 root, bytes32[] proof, bytes32 insightHash)
const verifyData = selector("verifyInsight(bytes32,bytes32[],bytes32)")
  + word(doc.root) + word("60") + word(hash)
  + word(doc.proof.length.toString(16)) + doc.proof.map(word).join("");
const onChain = BigInt("0x" + (await ethCall(verifyData))) === 1n;

// anchorOf(bytes32) -> (batchId, blockNumber, timestamp, leafCount)
const record = await ethCall(selector("anchorOf(bytes32)") + word(doc.root));
const batchId = BigInt("0x" + record.slice(0, 64));

const result = {
  hashMatches: hash === doc.hash,
  merkleVerifies: merkle,
  contractVerifies: onChain,
  anchoredBatch: Number(batchId),
};
console.log(JSON.stringify(result));
const ok = result.hashMatches && merkle && onChain && batchId > 0n;
process.exit(ok ? 0 : 1);
