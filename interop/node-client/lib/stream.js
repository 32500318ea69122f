'use strict';
// One NSP stream over as many connections as it takes (PROTOCOL.md §6, §7, §10,
// §11, §12.2, §14.1, §15): the reconnect loop and the per-connection I/O.

const net = require('net');
const crypto = require('crypto');
const { performance } = require('perf_hooks');

const { Mode, MODE_NAMES, Code, ProtocolError, encodeHello, isRetryable } = require('./frames');
const { ClientConnection } = require('./connection');
const { Backoff } = require('./backoff');
const { armTimer } = require('./durations');
const { escapePeerText } = require('./text');

// §12.4
const Exit = Object.freeze({ OK: 0, VERIFY_FAILED: 1, USAGE: 2, REJECTED: 3, GAVE_UP: 4, INTERRUPTED: 130, TERMINATED: 143 });
// Appendix A.3: the reason tokens that are not ERROR code names (those are codeName()).
const Reason = Object.freeze({ CHECKSUM_MISMATCH: 'CHECKSUM_MISMATCH', VERIFY_FAILED: 'VERIFY_FAILED', GAVE_UP: 'GAVE_UP' });

const now = () => performance.now(); // monotonic, ms

/**
 * The client's state for the whole stream: what it has received, and the
 * resumption parameters of §11.
 */
class Stream {
  constructor({ mode, n, clientId }) {
    this.mode = mode;
    this.n = n;
    this.clientId = mode === Mode.STATEFUL ? clientId : null;
    this.received = 0; // = next index wanted (§11)
    this.sawWelcome = false;
    this.a = null; // stateless: from the first WELCOME (§5.4)
    this.sum = 0n; // stateless running sum
    this.hash = mode === Mode.STATEFUL ? crypto.createHash('sha256') : null; // §9, incremental
    // §12.2: how the last connection that received a WELCOME ended: {endedBy: 'drop' |
    // 'error', lastFrameAt (ms, monotonic: when its last complete frame arrived), ttlMs
    // (its WELCOME's session_ttl_ms)}.
    this.lastWelcomed = null;
    this.checksumExpected = null;
    this.checksumComputed = null;
  }

  /** The HELLO for the next connection (§6.4, §7.3, §11). */
  nextHello() {
    const hello = { mode: this.mode, n: this.n, resume: this.sawWelcome, nextIndex: this.sawWelcome ? this.received : 0 };
    if (this.mode === Mode.STATELESS) hello.a = this.sawWelcome ? this.a : 0;
    else hello.clientId = this.clientId;
    return hello;
  }

  onWelcome(w) {
    this.sawWelcome = true;
    if (this.mode === Mode.STATELESS) this.a ??= w.a; // the connection checked equality on resume
  }

  /**
   * A connection that had received a WELCOME has ended, by a drop (EOF, socket error,
   * a timer, a violation) or by an ERROR frame; its last complete frame (the WELCOME
   * or a number; never an offending frame) arrived at `lastFrameAt` (§12.2).
   */
  onWelcomedConnectionEnd(endedBy, lastFrameAt, welcome) {
    this.lastWelcomed = { endedBy, lastFrameAt, ttlMs: welcome.sessionTtlMs };
  }

  /**
   * §12.2: is a SESSION_UNKNOWN that answered a RESUME and arrived at `arrivedAt` a
   * lost final frame? Only if the last WELCOMEd connection ended by a drop, not by an
   * ERROR frame, and its last complete frame arrived less than its session_ttl_ms
   * before (1.1: measured from that frame, not from noticing the drop, so a long
   * silence timeout cannot turn an expiry into a lost FINAL). Returns {lost, why}.
   */
  judgeSessionUnknown(arrivedAt) {
    const last = this.lastWelcomed;
    if (last === null) return { lost: false, why: 'no connection of this run received a WELCOME' };
    if (last.endedBy !== 'drop') {
      return { lost: false, why: 'the last connection that received a WELCOME ended with an ERROR frame, not a drop' };
    }
    const elapsed = arrivedAt - last.lastFrameAt;
    const span = `${(elapsed / 1000).toFixed(3)} s after the last frame of the dropped connection (TTL ${last.ttlMs / 1000} s)`;
    return elapsed < last.ttlMs ? { lost: true, why: span } : { lost: false, why: span };
  }

  /**
   * Returns an outcome when the number ends the stream, else null:
   * {kind: 'complete'} or {kind: 'verify_failed', error: VERIFY_FAILED | CHECKSUM_MISMATCH, detail}.
   */
  onNumber(num) {
    if (this.mode === Mode.STATELESS) {
      // §6.3: value = a·2^index; a mismatch is a verification failure (not a violation):
      // the number is not counted, and the run stops without reconnecting.
      const expected = BigInt(this.a) << BigInt(num.index);
      if (num.value !== expected) {
        return {
          kind: 'verify_failed',
          error: Reason.VERIFY_FAILED,
          detail: `value at index ${num.index} is not a·2^${num.index} (a = ${this.a})`,
        };
      }
      this.sum += num.value;
    } else {
      this.hash.update(num.valueBytes);
    }
    this.received++;
    if (!num.final) return null;
    if (this.mode === Mode.STATEFUL) {
      this.checksumExpected = num.checksum.toString('hex');
      this.checksumComputed = this.hash.digest('hex');
      if (this.checksumExpected !== this.checksumComputed) {
        return { kind: 'verify_failed', error: Reason.CHECKSUM_MISMATCH, detail: 'checksum mismatch' };
      }
    }
    return { kind: 'complete' };
  }
}

/**
 * One connection (§5.1, §14.1): connect, send the HELLO, receive until FINAL,
 * ERROR or a drop. Resolves with {kind, ..., newNumbers, hello, welcome, endedAt,
 * lastFrameAt}; never rejects. `endedAt` is when the client detected the end;
 * `lastFrameAt` when the last complete WELCOME or number arrived (§12.2), null
 * before a WELCOME. An 'error' outcome also carries `arrivedAt`.
 */
function runConnection(stream, opts, log, hooks) {
  return new Promise((resolve) => {
    const hello = stream.nextHello();
    const conn = new ClientConnection(hello);
    const socket = new net.Socket();
    let settled = false;
    let timer = null;
    let newNumbers = 0;
    let lastFrameAt = null;

    const finish = (outcome) => {
      if (settled) return;
      settled = true;
      const endedAt = now();
      clearTimeout(timer);
      // Close at once, sending nothing more (§10); destroy() never half-closes first.
      socket.destroy();
      resolve({ ...outcome, newNumbers, hello, welcome: conn.welcome, endedAt, lastFrameAt });
    };
    // Every delay is at most 3 × MAX_DURATION_MS (§13.1): armTimer holds it exactly.
    const arm = (seconds, reason) => {
      clearTimeout(timer);
      timer = armTimer(() => finish({ kind: 'drop', reason }), Math.round(seconds * 1000));
    };

    arm(opts.connectTimeout, `connect timeout (${opts.connectTimeout} s)`);
    socket.once('connect', () => {
      socket.setNoDelay(true);
      socket.write(encodeHello(hello));
      // §14.1: the handshake timeout runs from the connect until a WELCOME or ERROR
      // has arrived; bytes of an incomplete WELCOME do not restart it.
      arm(opts.handshakeTimeout, `no WELCOME or ERROR within ${opts.handshakeTimeout} s of connecting`);
    });

    socket.on('data', (chunk) => {
      if (settled) return;
      const heardAt = now();
      let gotFrame = false;
      let outcome = null;
      try {
        for (const ev of conn.receive(chunk)) {
          gotFrame = true;
          outcome = handleEvent(ev, heardAt);
          if (outcome) break;
        }
      } catch (err) {
        if (!(err instanceof ProtocolError)) throw err;
        // §12.3: discard the offending frame, close, proceed as after a drop.
        outcome = { kind: 'drop', reason: `protocol violation: ${err.codeName}: ${err.message}` };
      }
      if (outcome) return finish(outcome);
      // §14.1: after the WELCOME, the silence timer restarts on every complete frame.
      if (gotFrame && conn.welcome) timer.refresh();
    });

    socket.on('end', () => {
      try {
        conn.end();
        finish({ kind: 'drop', reason: 'EOF before FINAL' });
      } catch (err) {
        finish({ kind: 'drop', reason: `protocol violation: ${err.codeName}: ${err.message}` });
      }
    });
    socket.on('error', (err) => finish({ kind: 'drop', reason: `socket error: ${err.code || err.message}`, refused: err.code === 'ECONNREFUSED' }));
    socket.on('close', () => finish({ kind: 'drop', reason: 'connection closed' }));

    function handleEvent(ev, heardAt) {
      switch (ev.kind) {
        case 'welcome': {
          const w = ev.welcome;
          lastFrameAt = heardAt;
          if (stream.mode === Mode.STATELESS && stream.a === null) log.info(`a = ${w.a}`);
          stream.onWelcome(w);
          // §14.1: from the WELCOME on, the silence timeout of this connection's interval_ms.
          const silence = opts.silenceTimeout ?? Math.max((3 * w.intervalMs) / 1000, opts.minSilence);
          log.debug(
            `WELCOME next_index=${w.nextIndex} interval_ms=${w.intervalMs} a=${w.a} ttl_ms=${w.sessionTtlMs}; silence timeout ${silence} s`,
          );
          arm(silence, `silence: no frame for ${silence} s`);
          hooks.welcome(w);
          return null;
        }
        case 'number': {
          const outcome = stream.onNumber(ev);
          if (outcome?.kind !== 'verify_failed') {
            lastFrameAt = heardAt;
            newNumbers++;
            hooks.progress();
          }
          return outcome;
        }
        case 'error':
          return { kind: 'error', code: ev.code, codeName: ev.codeName, message: ev.message, arrivedAt: heardAt };
        default:
          throw new Error(`unknown event ${ev.kind}`);
      }
    }

    socket.connect({ host: opts.host, port: opts.port });
  });
}

// A backoff delay is at most 1.2 × MAX_DURATION_MS (§13.1, §15).
const sleep = (seconds) => new Promise((resolve) => armTimer(resolve, Math.round(seconds * 1000)));

/**
 * The reconnect loop of §15. Resolves with {exitCode, result} where `result` is the
 * object of Appendix A.4 (the text output of A.3 is derived from it).
 */
async function runStream(opts, { log, events, random }) {
  const stream = new Stream(opts);
  const backoff = new Backoff(
    { initial: opts.backoffInitial, max: opts.backoffMax, maxAttemptsWithoutProgress: opts.maxRetries },
    random,
  );
  let reconnects = 0;
  let lastProgressEvent = -Infinity;
  const phase = (p, detail) => events.emit({ event: 'phase', phase: p, detail, received: stream.received });
  const hooks = {
    welcome: (w) => phase('streaming', `from index ${w.nextIndex}`),
    progress: () => {
      const t = now();
      if (t - lastProgressEvent >= 250) {
        // A.2: at most 10 per second
        lastProgressEvent = t;
        events.emit({ event: 'progress', received: stream.received });
      }
    },
  };
  // Appendix A.4: every field of the mode; null for what a failed run does not have.
  const result = (error, finalFrameLost = false) => {
    const r = { mode: MODE_NAMES[stream.mode], n: stream.n, ok: error === null, reconnects, received: stream.received, error };
    if (stream.mode === Mode.STATELESS) {
      r.first = stream.a === null ? null : String(stream.a);
      r.sum = stream.a === null ? null : stream.sum.toString(); // partial on failure
    } else {
      r.client_id = stream.clientId;
      r.checksum_expected = stream.checksumExpected;
      r.checksum_computed = stream.checksumComputed;
      r.final_frame_lost = finalFrameLost;
    }
    return r;
  };

  log.info(`${MODE_NAMES[stream.mode]} stream of n=${stream.n}${stream.clientId ? `, client id ${stream.clientId}` : ''}`);
  let delay = 0; // before the next attempt: drawn when the last one ended, so it can be said
  for (let attempt = 1; ; attempt++) {
    if (attempt > 1) {
      phase('backing_off', `${delay.toFixed(3)} s`);
      log.debug(`backing off ${delay.toFixed(3)} s (${backoff.fruitless} attempts without progress)`);
      await sleep(delay);
      reconnects++;
    }
    events.emit({ event: 'attempt', attempt });
    phase('connecting', `attempt ${attempt}`);
    const out = await runConnection(stream, opts, log, hooks);
    if (out.welcome && (out.kind === 'drop' || out.kind === 'error')) {
      stream.onWelcomedConnectionEnd(out.kind, out.lastFrameAt, out.welcome);
    }

    switch (out.kind) {
      case 'complete':
        phase('done', 'complete');
        return { exitCode: Exit.OK, result: result(null) };
      case 'verify_failed':
        // §6.3, §7.5, §15: final, status 1, no reconnection.
        phase('failed', out.error);
        log.error(`verification failed: ${out.detail}`);
        return { exitCode: Exit.VERIFY_FAILED, result: result(out.error) };
      case 'error':
        if (isRetryable(out.code)) {
          log.warn(`attempt ${attempt}: server ERROR ${out.codeName} (retryable): ${escapePeerText(out.message)}`);
          break;
        }
        // §12.2: a final code (including unknown ones) ends the run with status 3.
        phase('failed', out.codeName);
        return { exitCode: Exit.REJECTED, result: rejection(stream, out, result, log) };
      case 'drop':
        log.info(`attempt ${attempt}: dropped after ${out.newNumbers} new numbers (${stream.received}/${stream.n}): ${out.reason}`);
        break;
      default:
        throw new Error(`unknown outcome ${out.kind}`);
    }
    if (!backoff.record(out.newNumbers > 0)) {
      log.error(`gave up after ${backoff.fruitless} consecutive attempts without progress`);
      phase('failed', 'gave up');
      return { exitCode: Exit.GAVE_UP, result: result(Reason.GAVE_UP) };
    }
    delay = backoff.nextDelay();
    if (out.kind === 'drop' && out.refused) {
      // Issue 11 point 7: say in words what is happening, on the first failure already.
      log.warn(`nothing is listening on ${opts.host}:${opts.port} (connection refused); attempt ${backoff.fruitless} of ${backoff.options.maxAttemptsWithoutProgress} without progress, reconnecting in ${delay.toFixed(2)} s`);
      if (attempt === 1) log.warn(`is the server running? Start one with: numstream-server --port ${opts.port}`);
    }
  }
}

/** §12.2, §16.6: a final ERROR; the reason is the code's name. */
function rejection(stream, out, result, log) {
  log.error(`rejected by the server: ${out.codeName} (${out.code}): ${escapePeerText(out.message)}`);
  if (out.code !== Code.SESSION_UNKNOWN || !out.hello.resume || stream.mode !== Mode.STATEFUL) {
    return result(out.codeName);
  }
  const { lost, why } = stream.judgeSessionUnknown(out.arrivedAt);
  if (lost) log.error(`final frame lost: SESSION_UNKNOWN ${why}`);
  else log.error(`session expired or unknown: ${why}`);
  return result(out.codeName, lost);
}

module.exports = { runStream, runConnection, Stream, Exit, Reason };
