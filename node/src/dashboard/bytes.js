// Byte helpers: UTF-8, 0x hex, comparison.

const encoder = new TextEncoder();

/** The UTF-8 bytes of a string. */
export function utf8(text) {
  return encoder.encode(text);
}

/** Lowercase 0x hex of bytes. */
export function toHex(bytes) {
  let out = "0x";
  for (const byte of bytes) {
    out += byte.toString(16).padStart(2, "0");
  }
  return out;
}

/** Bytes of 0x hex (an even number of digits); throws on anything else. */
export function fromHex(text) {
  const digits = String(text).replace(/^0x/i, "");
  if (digits.length % 2 !== 0 || /[^0-9a-f]/i.test(digits)) {
    throw new Error(`not hex: ${text}`);
  }
  const out = new Uint8Array(digits.length / 2);
  for (let i = 0; i < out.length; i++) {
    out[i] = parseInt(digits.slice(2 * i, 2 * i + 2), 16);
  }
  return out;
}

/** Negative, zero or positive as a is below, equal to or above b. */
export function compareBytes(a, b) {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    if (a[i] !== b[i]) return a[i] - b[i];
  }
  return a.length - b.length;
}

/** The concatenation of byte arrays. */
export function concatBytes(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/** Whether two 0x hex strings name the same bytes, ignoring case. */
export function sameHex(a, b) {
  return typeof a === "string" && typeof b === "string"
    && a.toLowerCase() === b.toLowerCase();
}
