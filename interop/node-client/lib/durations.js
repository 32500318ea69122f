'use strict';
// Durations (PROTOCOL.md §13.1): seconds as written on a command line to whole
// milliseconds, exactly (BigInt, no binary floating point), and timers that hold
// their whole range.

// §13.1: no duration NSP carries or accepts exceeds one day.
const MAX_DURATION_MS = 86_400_000;
// Node's setTimeout turns any delay of 2^31 ms or more into 1 ms (with a warning).
// §13.1 keeps every timer below this; armTimer() refuses to be the exception.
const MAX_TIMER_MS = 2 ** 31 - 1;

// §13.1 rule 1: DIGITS ["." [DIGITS]] [EXP] or "." DIGITS [EXP]; EXP = (e|E) [+|-] DIGITS.
const SECONDS = /^(?:([0-9]+)(?:\.([0-9]*))?|\.([0-9]+))(?:[eE]([+-]?[0-9]+))?$/;

/**
 * Milliseconds for a duration written in seconds (§13.1 rule 2): the exact value
 * times 1000, rounded to the nearest integer, ties up ('0.0025' → 3). Returns null
 * when the text is not the grammar of rule 1. Values far out of every range come
 * back as a number above MAX_DURATION_MS, never as Infinity.
 */
function secondsToMs(text) {
  const m = SECONDS.exec(text);
  if (m === null) return null;
  const whole = m[1] ?? '';
  const fraction = m[2] ?? m[3] ?? '';
  const exponent = Number(m[4] ?? '0'); // digits only: finite, maybe huge
  const digits = (whole + fraction).replace(/^0+/, '');
  if (digits === '') return 0;
  // value = digits × 10^shift ms, with shift = exponent − len(fraction) + 3
  const shift = exponent - fraction.length + 3;
  if (digits.length + shift > 20) return MAX_DURATION_MS * 1e6; // ≥ 10^19 ms: out of any range
  if (digits.length + shift < -1) return 0; // < 0.1 ms: rounds to 0
  const mantissa = BigInt(digits);
  if (shift >= 0) return Number(mantissa * 10n ** BigInt(shift));
  const unit = 10n ** BigInt(-shift);
  const q = mantissa / unit;
  const r = mantissa % unit;
  return Number(q + (2n * r >= unit ? 1n : 0n));
}

/** setTimeout that holds its whole range: a delay Node cannot hold is a bug, not 1 ms. */
function armTimer(fn, ms) {
  if (!(ms >= 0 && ms <= MAX_TIMER_MS)) throw new RangeError(`timer of ${ms} ms is outside 0..${MAX_TIMER_MS}`);
  return setTimeout(fn, ms);
}

module.exports = { MAX_DURATION_MS, MAX_TIMER_MS, secondsToMs, armTimer };
