// Keccak-256 as Ethereum uses it: the Keccak sponge with the original
// padding (0x01 ... 0x80), not the NIST SHA3-256 padding (0x06 ... 0x80).
// Each 64-bit lane is held as two 32-bit words, low word first, so the
// permutation needs no BigInt.

const RATE = 136; // bytes absorbed per block: 1600 - 2 * 256 bits

// Round constants, as [low, high] 32-bit halves.
const ROUND = [
  [0x00000001, 0x00000000], [0x00008082, 0x00000000],
  [0x0000808a, 0x80000000], [0x80008000, 0x80000000],
  [0x0000808b, 0x00000000], [0x80000001, 0x00000000],
  [0x80008081, 0x80000000], [0x00008009, 0x80000000],
  [0x0000008a, 0x00000000], [0x00000088, 0x00000000],
  [0x80008009, 0x00000000], [0x8000000a, 0x00000000],
  [0x8000808b, 0x00000000], [0x0000008b, 0x80000000],
  [0x00008089, 0x80000000], [0x00008003, 0x80000000],
  [0x00008002, 0x80000000], [0x00000080, 0x80000000],
  [0x0000800a, 0x00000000], [0x8000000a, 0x80000000],
  [0x80008081, 0x80000000], [0x00008080, 0x80000000],
  [0x80000001, 0x00000000], [0x80008008, 0x80000000],
];

// Rotation of lane x + 5y.
const ROTATION = [
  0, 1, 62, 28, 27,
  36, 44, 6, 55, 20,
  3, 10, 43, 25, 39,
  41, 45, 15, 21, 8,
  18, 2, 61, 56, 14,
];

// Where rho-pi moves lane x + 5y: to y + 5 * ((2x + 3y) mod 5).
const TARGET = ROTATION.map((_, i) => {
  const x = i % 5;
  const y = (i - x) / 5;
  return y + 5 * ((2 * x + 3 * y) % 5);
});

// Rotates the lane (lo, hi) left by n bits into out[at], out[at + 1].
function rotate(lo, hi, n, out, at) {
  if (n >= 32) {
    [lo, hi] = [hi, lo];
    n -= 32;
  }
  if (n === 0) {
    out[at] = lo;
    out[at + 1] = hi;
    return;
  }
  out[at] = (lo << n) | (hi >>> (32 - n));
  out[at + 1] = (hi << n) | (lo >>> (32 - n));
}

const c = new Uint32Array(10);
const d = new Uint32Array(10);
const b = new Uint32Array(50);

// Keccak-f[1600] on 25 lanes held in 50 words.
function permute(s) {
  for (const [rcLo, rcHi] of ROUND) {
    // theta: each column's parity mixes into its neighbours.
    for (let x = 0; x < 5; x++) {
      c[2 * x] = s[2 * x] ^ s[2 * x + 10] ^ s[2 * x + 20] ^ s[2 * x + 30]
        ^ s[2 * x + 40];
      c[2 * x + 1] = s[2 * x + 1] ^ s[2 * x + 11] ^ s[2 * x + 21]
        ^ s[2 * x + 31] ^ s[2 * x + 41];
    }
    for (let x = 0; x < 5; x++) {
      const right = 2 * ((x + 1) % 5);
      rotate(c[right], c[right + 1], 1, d, 2 * x);
      const left = 2 * ((x + 4) % 5);
      d[2 * x] ^= c[left];
      d[2 * x + 1] ^= c[left + 1];
    }
    for (let i = 0; i < 25; i++) {
      const x = i % 5;
      s[2 * i] ^= d[2 * x];
      s[2 * i + 1] ^= d[2 * x + 1];
    }

    // rho and pi: rotate every lane and move it.
    for (let i = 0; i < 25; i++) {
      rotate(s[2 * i], s[2 * i + 1], ROTATION[i], b, 2 * TARGET[i]);
    }

    // chi: the only non-linear step, row by row.
    for (let y = 0; y < 25; y += 5) {
      for (let x = 0; x < 5; x++) {
        const i = 2 * (y + x);
        const n1 = 2 * (y + ((x + 1) % 5));
        const n2 = 2 * (y + ((x + 2) % 5));
        s[i] = b[i] ^ (~b[n1] & b[n2]);
        s[i + 1] = b[i + 1] ^ (~b[n1 + 1] & b[n2 + 1]);
      }
    }

    // iota
    s[0] ^= rcLo;
    s[1] ^= rcHi;
  }
}

// Byte j of a block lands in word j >> 2 at bit 8 * (j & 3): lanes are
// little-endian and the low word comes first.
function absorb(s, bytes, start, length) {
  for (let j = 0; j < length; j++) {
    s[j >> 2] ^= bytes[start + j] << (8 * (j & 3));
  }
}

/** keccak256 of a Uint8Array, as a 32-byte Uint8Array. */
export function keccak256(bytes) {
  const s = new Uint32Array(50);
  let offset = 0;
  while (bytes.length - offset >= RATE) {
    absorb(s, bytes, offset, RATE);
    permute(s);
    offset += RATE;
  }
  const last = new Uint8Array(RATE);
  last.set(bytes.subarray(offset));
  last[bytes.length - offset] ^= 0x01;
  last[RATE - 1] ^= 0x80;
  absorb(s, last, 0, RATE);
  permute(s);

  const out = new Uint8Array(32);
  for (let j = 0; j < 32; j++) {
    out[j] = (s[j >> 2] >>> (8 * (j & 3))) & 0xff;
  }
  return out;
}
