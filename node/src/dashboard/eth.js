// Reads of the InsightAnchor contract through plain eth_call, with the ABI
// encoding written out by hand.

import { toHex, utf8 } from "./bytes.js";
import { keccak256 } from "./keccak.js";
import { call } from "./rpc.js";

/** The 4-byte selector of a function signature, as 0x hex. */
export function selector(signature) {
  return toHex(keccak256(utf8(signature)).subarray(0, 4));
}

function word(hexOrNumber) {
  const digits = typeof hexOrNumber === "number"
    ? hexOrNumber.toString(16)
    : hexOrNumber.replace(/^0x/i, "");
  return digits.padStart(64, "0");
}

/** Calldata of anchorOf(bytes32 root). */
export function encodeAnchorOf(root) {
  return selector("anchorOf(bytes32)") + word(root);
}

/**
 * Calldata of verifyInsight(bytes32 root, bytes32[] proof, bytes32 hash):
 * the dynamic array sits after the three head words, so its offset is
 * 0x60.
 */
export function encodeVerifyInsight(root, proof, hash) {
  return selector("verifyInsight(bytes32,bytes32[],bytes32)")
    + word(root) + word(0x60) + word(hash)
    + word(proof.length) + proof.map(word).join("");
}

/** The answer's 32-byte words as BigInts. */
export function decodeWords(data) {
  const digits = data.replace(/^0x/i, "");
  const words = [];
  for (let at = 0; at + 64 <= digits.length; at += 64) {
    words.push(BigInt(`0x${digits.slice(at, at + 64)}`));
  }
  return words;
}

/** A chain endpoint and the contract to ask. */
export class AnchorContract {
  constructor(rpcUrl, address) {
    this.rpcUrl = rpcUrl;
    this.address = address;
  }

  async ethCall(data) {
    const params = [{ to: this.address, data }, "latest"];
    return call(this.rpcUrl, "eth_call", params);
  }

  /** {batchId, blockNumber, timestamp, leafCount}; all zero if unknown. */
  async anchorOf(root) {
    const words = decodeWords(await this.ethCall(encodeAnchorOf(root)));
    if (words.length < 4) throw new Error("anchorOf answered too few words");
    const [batchId, blockNumber, timestamp, leafCount] = words.map(Number);
    return { batchId, blockNumber, timestamp, leafCount };
  }

  /** The contract's own verdict on a proof. */
  async verifyInsight(root, proof, hash) {
    const answer = await this.ethCall(encodeVerifyInsight(root, proof, hash));
    const [flag] = decodeWords(answer);
    return flag === 1n;
  }

  async chainId() {
    return Number(BigInt(await call(this.rpcUrl, "eth_chainId")));
  }

  async blockNumber() {
    return Number(BigInt(await call(this.rpcUrl, "eth_blockNumber")));
  }

  async code() {
    return call(this.rpcUrl, "eth_getCode", [this.address, "latest"]);
  }

  async block(number) {
    const tag = `0x${number.toString(16)}`;
    return call(this.rpcUrl, "eth_getBlockByNumber", [tag, false]);
  }
}
