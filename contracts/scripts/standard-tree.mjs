// Prints OpenZeppelin StandardMerkleTrees (leaf encoding ["bytes32"]) as
// JSON, for the anvil smoke check: one tree per size given on the command
// line (default: 3 and 5 leaves). Insight hashes are sha256("insight-<n>"),
// any 32 bytes will do.
//
//   node contracts/scripts/standard-tree.mjs [size ...]

import { createHash } from "node:crypto";
import { StandardMerkleTree } from "@openzeppelin/merkle-tree";

function insightHash(n) {
  return `0x${createHash("sha256").update(`insight-${n}`).digest("hex")}`;
}

function describe(size, first) {
  const values = Array.from({ length: size }, (_, i) => [insightHash(first + i)]);
  const tree = StandardMerkleTree.of(values, ["bytes32"]);
  const entries = [...tree.entries()].map(([index, [hash]]) => ({
    insightHash: hash,
    leaf: tree.leafHash([hash]),
    proof: tree.getProof(index),
  }));
  return { root: tree.root, leafCount: size, entries };
}

const sizes = process.argv.slice(2).map(Number);
if (sizes.some((n) => !Number.isInteger(n) || n < 1)) {
  console.error("usage: standard-tree.mjs [size ...] (sizes are positive integers)");
  process.exit(2);
}

let first = 1;
const trees = (sizes.length > 0 ? sizes : [3, 5]).map((size) => {
  const tree = describe(size, first);
  first += size;
  return tree;
});
console.log(JSON.stringify({ trees }, null, 2));
