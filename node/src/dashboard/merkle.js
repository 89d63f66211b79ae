// The OpenZeppelin StandardMerkleTree rules for one bytes32 value per leaf
// (docs/verification.md, section 5).

import { compareBytes, concatBytes, fromHex, toHex } from "./bytes.js";
import { keccak256 } from "./keccak.js";

/** keccak256(keccak256(hash)): the leaf of an insight hash. */
export function leafOf(hashHex) {
  return toHex(keccak256(keccak256(fromHex(hashHex))));
}

/** keccak256 of the two nodes, the smaller first. */
export function hashPair(aHex, bHex) {
  const a = fromHex(aHex);
  const b = fromHex(bHex);
  const [low, high] = compareBytes(a, b) <= 0 ? [a, b] : [b, a];
  return toHex(keccak256(concatBytes(low, high)));
}

/** The root a proof leads to from a leaf. */
export function processProof(leafHex, proof) {
  return proof.reduce((node, sibling) => hashPair(node, sibling), leafHex);
}
