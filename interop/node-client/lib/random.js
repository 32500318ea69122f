'use strict';
// The client's own non-secret randomness (backoff jitter, a random n). With --seed
// it is reproducible; the client id always comes from the CSPRNG (§7.1).

const crypto = require('crypto');

const MASK64 = (1n << 64n) - 1n;
const GAMMA = 0x9e3779b97f4a7c15n;

/** A seeded uniform [0, 1) source: SplitMix64, the same mixer as §8, taking 53 bits. */
function seededRandom(seed) {
  let state = BigInt.asUintN(64, BigInt(seed));
  return () => {
    state = (state + GAMMA) & MASK64;
    let z = state;
    z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK64;
    z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK64;
    z ^= z >> 31n;
    return Number(z >> 11n) / 2 ** 53;
  };
}

/** Uniform [0, 1) from the CSPRNG. */
function secureRandom() {
  return crypto.randomBytes(6).readUIntBE(0, 6) / 2 ** 48;
}

/** Integer uniform in [lo, hi]. */
function randomInt(random, lo, hi) {
  return lo + Math.floor(random() * (hi - lo + 1));
}

module.exports = { seededRandom, secureRandom, randomInt };
