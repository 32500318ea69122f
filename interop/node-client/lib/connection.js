'use strict';
// The client side of one NSP connection as a pure state machine (PROTOCOL.md §5.4,
// §5.5, §4.3): bytes in, events out, ProtocolError on any violation. No I/O, so the
// vectors can drive it directly.

const {
  VERSION,
  MAX_N,
  Type,
  TYPE_NAMES,
  Mode,
  Code,
  ProtocolError,
  FrameDecoder,
  decodeWelcome,
  decodeNumber,
  decodeError,
} = require('./frames');
const { MAX_DURATION_MS } = require('./durations');

const State = Object.freeze({
  AWAITING_WELCOME: 'awaiting_welcome',
  STREAMING: 'streaming',
  DONE: 'done', // FINAL received: nothing more is read (§5.5, §10)
  CLOSED: 'closed', // ERROR received
});

class ClientConnection {
  /** `hello` is the HELLO this connection sent: {version?, mode, resume, n, nextIndex, a?}. */
  constructor(hello) {
    this.hello = { version: 1, ...hello };
    this.state = State.AWAITING_WELCOME;
    this.welcome = null;
    this.expectedIndex = null; // next index allowed on this connection
    this._decoder = new FrameDecoder();
  }

  /**
   * Yields, in order, {kind:'welcome', welcome}, {kind:'number', ...} and
   * {kind:'error', code, codeName, message} events for the complete frames of
   * `chunk`. Throws a ProtocolError at the first violation; events already yielded
   * stay valid (§12.3: the numbers before the offending frame are intact). Once FINAL
   * has arrived nothing more is read (§5.5, §10): what follows it, in the same chunk or
   * later, is discarded unread and is no violation.
   */
  *receive(chunk) {
    if (this.state === State.DONE) return;
    for (const { type, payload } of this._decoder.frames(chunk)) {
      yield this._onFrame(type, payload);
      if (this.state === State.DONE) return; // stop before decoding what follows FINAL
    }
  }

  /** Called on EOF. Throws MALFORMED_FRAME when EOF cuts a frame (§3 rule 3). */
  end() {
    if (this.state === State.DONE) return;
    this._decoder.end();
  }

  _onFrame(type, payload) {
    if (this.state === State.CLOSED) {
      throw new ProtocolError(Code.UNEXPECTED_FRAME, `${TYPE_NAMES[type]} after the conversation ended`);
    }
    switch (type) {
      case Type.WELCOME:
        if (this.state !== State.AWAITING_WELCOME) {
          throw new ProtocolError(Code.UNEXPECTED_FRAME, 'a second WELCOME');
        }
        return this._onWelcome(decodeWelcome(payload));
      case Type.DATA:
      case Type.FINAL:
        if (this.state !== State.STREAMING) {
          throw new ProtocolError(Code.UNEXPECTED_FRAME, `${TYPE_NAMES[type]} before WELCOME`);
        }
        return this._onNumber(decodeNumber(payload, this.welcome.mode, type === Type.FINAL));
      case Type.ERROR: {
        const error = decodeError(payload);
        this.state = State.CLOSED;
        return { kind: 'error', ...error };
      }
      default: // HELLO: a server never sends one
        throw new ProtocolError(Code.UNEXPECTED_FRAME, `${TYPE_NAMES[type]} from the server`);
    }
  }

  // §5.4: the checks in the order of its table. Rejecting is normative; the order and
  // the codes are the reference client's (informative), which are also those of the
  // client-side cases of vectors/invalid_frames.json. Checks 2–9 look at the WELCOME
  // alone, with its own mode; checks 10–12 compare it with this connection's HELLO;
  // checks 13–14 (1.1) bound the announced durations (§13.1), so every timer derived
  // from them stays within Node's range.
  // (Check 1, the payload length, is decodeWelcome's; the §5.5 state check precedes it.)
  _onWelcome(w) {
    const h = this.hello;
    const fail = (code, message) => {
      throw new ProtocolError(code, message);
    };
    if (w.version !== VERSION) fail(Code.UNSUPPORTED_VERSION, `WELCOME version ${w.version}`); // 2 (§19)
    if (w.mode !== Mode.STATELESS && w.mode !== Mode.STATEFUL) fail(Code.UNSUPPORTED_MODE, `WELCOME mode ${w.mode}`); // 3
    if (w.flags !== 0) fail(Code.MALFORMED_FRAME, `WELCOME flags 0x${w.flags.toString(16)}`); // 4
    if (w.n < 1 || w.n > MAX_N) fail(Code.INVALID_N, `WELCOME n = ${w.n}`); // 5
    if (w.nextIndex >= w.n) fail(Code.INVALID_INDEX, `WELCOME next_index ${w.nextIndex} ≥ n ${w.n}`); // 6
    if (w.mode === Mode.STATELESS) {
      if (w.a < 1 || w.a > 255) fail(Code.INVALID_A, `stateless WELCOME a = ${w.a}`); // 7
      if (w.sessionTtlMs !== 0) fail(Code.MALFORMED_FRAME, `stateless WELCOME session_ttl_ms = ${w.sessionTtlMs}`); // 8
    } else if (w.a !== 0) {
      fail(Code.INVALID_A, `stateful WELCOME a = ${w.a}`); // 9
    }
    if (w.mode !== h.mode) fail(Code.MALFORMED_FRAME, `WELCOME mode ${w.mode} ≠ HELLO mode ${h.mode}`); // 10
    if (w.n !== h.n) fail(Code.MALFORMED_FRAME, `WELCOME n ${w.n} ≠ HELLO n ${h.n}`); // 10
    if (w.nextIndex !== h.nextIndex) {
      fail(Code.INVALID_INDEX, `WELCOME next_index ${w.nextIndex} ≠ HELLO next_index ${h.nextIndex}`); // 11
    }
    if (w.mode === Mode.STATELESS && h.resume && w.a !== h.a) {
      fail(Code.MALFORMED_FRAME, `WELCOME a ${w.a} ≠ resumed a ${h.a}`); // 12
    }
    if (w.intervalMs > MAX_DURATION_MS) fail(Code.MALFORMED_FRAME, `WELCOME interval_ms ${w.intervalMs} > ${MAX_DURATION_MS}`); // 13
    if (w.sessionTtlMs > MAX_DURATION_MS) fail(Code.MALFORMED_FRAME, `WELCOME session_ttl_ms ${w.sessionTtlMs} > ${MAX_DURATION_MS}`); // 14
    this.welcome = w;
    this.expectedIndex = w.nextIndex;
    this.state = State.STREAMING;
    return { kind: 'welcome', welcome: w };
  }

  // §5.5 checks 4 and 5 (checks 1–3 are the decoder's, the state check _onFrame's):
  // the index is the one expected, then FINAL if and only if index = n − 1.
  _onNumber(num) {
    if (num.index !== this.expectedIndex) {
      throw new ProtocolError(Code.INVALID_INDEX, `index ${num.index}, expected ${this.expectedIndex}`);
    }
    const last = this.welcome.n - 1;
    if (num.final && num.index !== last) {
      throw new ProtocolError(Code.UNEXPECTED_FRAME, `FINAL at index ${num.index}, n − 1 = ${last}`);
    }
    if (!num.final && num.index === last) {
      throw new ProtocolError(Code.UNEXPECTED_FRAME, `DATA at the last index ${last}`);
    }
    this.expectedIndex++;
    if (num.final) this.state = State.DONE;
    return { kind: 'number', ...num };
  }
}

module.exports = { ClientConnection, State };
