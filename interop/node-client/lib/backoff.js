'use strict';
// Reconnection backoff (PROTOCOL.md §15): gRPC-style exponential backoff with
// jitter, reset only by progress, giving up after a number of fruitless attempts.

const DEFAULTS = Object.freeze({
  initial: 1.0, // INITIAL_BACKOFF, seconds
  multiplier: 1.6, // MULTIPLIER
  jitter: 0.2, // JITTER: nominal delay × uniform(1 − J, 1 + J), then capped
  max: 10.0, // MAX_BACKOFF, seconds
  maxAttemptsWithoutProgress: 10, // MAX_ATTEMPTS_WITHOUT_PROGRESS
});

class Backoff {
  /** `random` returns a float in [0, 1). */
  constructor(options = {}, random = Math.random) {
    this.options = { ...DEFAULTS, ...options };
    this.random = random;
    this.fruitless = 0; // k of §15: consecutive attempts without progress
  }

  /** Record how an attempt ended; returns false once the client must give up. */
  record(madeProgress) {
    this.fruitless = madeProgress ? 0 : this.fruitless + 1;
    return this.fruitless < this.options.maxAttemptsWithoutProgress;
  }

  /**
   * Seconds to wait before the next attempt (never 0: no busy loop):
   * min(INITIAL × MULTIPLIER^k × uniform(1 − J, 1 + J), MAX). The jitter comes before the
   * cap, so MAX_BACKOFF is a cap (§15, 1.1; 1.0 jittered after it, up to 1.2 × MAX).
   */
  nextDelay() {
    const { initial, multiplier, jitter, max } = this.options;
    const nominal = initial * multiplier ** this.fruitless; // may reach Infinity: the cap holds
    return Math.min(nominal * (1 - jitter + 2 * jitter * this.random()), max);
  }
}

module.exports = { Backoff, BACKOFF_DEFAULTS: DEFAULTS };
