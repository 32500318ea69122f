'use strict';
// Reconnection backoff (PROTOCOL.md §15): gRPC-style exponential backoff with
// jitter, reset only by progress, giving up after a number of fruitless attempts.

const DEFAULTS = Object.freeze({
  initial: 1.0, // INITIAL_BACKOFF, seconds
  multiplier: 1.6, // MULTIPLIER
  jitter: 0.2, // JITTER: delay × uniform(1 − J, 1 + J)
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

  /** Seconds to wait before the next attempt (never 0: no busy loop). */
  nextDelay() {
    const { initial, multiplier, jitter, max } = this.options;
    const base = Math.min(initial * multiplier ** this.fruitless, max);
    return base * (1 - jitter + 2 * jitter * this.random());
  }
}

module.exports = { Backoff, BACKOFF_DEFAULTS: DEFAULTS };
