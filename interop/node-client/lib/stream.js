'use strict';
// One NSP stream over as many connections as it takes (PROTOCOL.md §6, §7, §10,
// §11, §12.2, §14.1, §15): the reconnect loop and the per-connection I/O.

const net = require('net');
const crypto = require('crypto');
const { performance } = require('perf_hooks');

const { Mode, MODE_NAMES, Code, ProtocolError, encodeHello, isRetryable } = require('./frames');
const { ClientConnection } = require('./connection');
const { Backoff } = require('./backoff');

// §12.4
const Exit = Object.freeze({ OK: 0, VERIFY_FAILED: 1, USAGE: 2, REJECTED: 3, GAVE_UP: 4, INTERRUPTED: 130 });

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
    this.sessionTtlMs = null; // stateful: from the last WELCOME
    this.lastHeardAt = null; // stateful: last bytes on a connection that held the session
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
    else this.sessionTtlMs = w.sessionTtlMs;
  }

  /** Returns an outcome when the number ends the stream, else null. */
  onNumber(num) {
    if (this.mode === Mode.STATELESS) {
      // §6.3: SHOULD check value = a·2^index; a mismatch is a verification failure.
      const expected = BigInt(this.a) << BigInt(num.index);
      if (num.value !== expected) {
        return { kind: 'verify_failed', reason: `value at index ${num.index} is not a·2^${num.index} (a = ${this.a})` };
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
        return { kind: 'verify_failed', reason: 'checksum mismatch' };
      }
    }
    return { kind: 'complete' };
  }
}

/**
 * One connection (§5.1, §14.1): connect, send the HELLO, receive until FINAL,
 * ERROR or a drop. Resolves with {kind, ..., newNumbers, hello, helloSentAt}; never rejects.
 */
function runConnection(stream, opts, log, hooks) {
  return new Promise((resolve) => {
    const hello = stream.nextHello();
    const conn = new ClientConnection(hello);
    const socket = new net.Socket();
    let settled = false;
    let timer = null;
    let helloSentAt = null;
    let newNumbers = 0;

    const finish = (outcome) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      // Close at once, sending nothing more (§10); destroy() never half-closes first.
      socket.destroy();
      resolve({ ...outcome, newNumbers, hello, helloSentAt, welcomed: Boolean(conn.welcome) });
    };
    const arm = (seconds, reason) => {
      clearTimeout(timer);
      timer = setTimeout(() => finish({ kind: 'drop', reason }), seconds * 1000);
    };

    arm(opts.connectTimeout, `connect timeout (${opts.connectTimeout} s)`);
    socket.once('connect', () => {
      socket.setNoDelay(true);
      helloSentAt = now();
      socket.write(encodeHello(hello));
      // The handshake timeout runs from the connect (§14.1).
      arm(opts.handshakeTimeout, `no WELCOME or ERROR within ${opts.handshakeTimeout} s`);
    });

    socket.on('data', (chunk) => {
      if (settled) return;
      const heardAt = now();
      let gotFrame = false;
      let outcome = null;
      try {
        for (const ev of conn.receive(chunk)) {
          gotFrame = true;
          outcome = handleEvent(ev);
          if (outcome) break;
        }
      } catch (err) {
        if (!(err instanceof ProtocolError)) throw err;
        // §12.3: discard the offending frame, close, proceed as after a drop.
        outcome = { kind: 'drop', reason: `protocol violation: ${err.codeName}: ${err.message}` };
      }
      if (stream.mode === Mode.STATEFUL && conn.welcome) stream.lastHeardAt = heardAt;
      if (outcome) return finish(outcome);
      // Silence timer: restarted by every complete frame (§14.1).
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
    socket.on('error', (err) => finish({ kind: 'drop', reason: `socket error: ${err.code || err.message}` }));
    socket.on('close', () => finish({ kind: 'drop', reason: 'connection closed' }));

    function handleEvent(ev) {
      switch (ev.kind) {
        case 'welcome': {
          const w = ev.welcome;
          if (stream.mode === Mode.STATELESS && stream.a === null) log.info(`a = ${w.a}`);
          stream.onWelcome(w);
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
            newNumbers++;
            hooks.progress();
          }
          return outcome;
        }
        case 'error':
          return { kind: 'error', code: ev.code, codeName: ev.codeName, message: ev.message };
        default:
          throw new Error(`unknown event ${ev.kind}`);
      }
    }

    socket.connect({ host: opts.host, port: opts.port });
  });
}

const sleep = (seconds) => new Promise((resolve) => setTimeout(resolve, seconds * 1000));

/**
 * The reconnect loop of §15. Resolves with {exitCode, result} where `result` is the
 * JSON object of the harness contract.
 */
async function runStream(opts, { log, events, random }) {
  const stream = new Stream(opts);
  const backoff = new Backoff(
    { initial: opts.backoffInitial, max: opts.backoffMax, maxAttemptsWithoutProgress: opts.maxRetries },
    random,
  );
  let reconnects = 0;
  let lastProgressEvent = 0;
  const hooks = {
    welcome: (w) => events.emit({ event: 'phase', phase: 'streaming', detail: `from index ${w.nextIndex}`, received: stream.received }),
    progress: () => {
      const t = now();
      if (t - lastProgressEvent >= 250) {
        lastProgressEvent = t;
        events.emit({ event: 'progress', received: stream.received });
      }
    },
  };
  const result = (ok, error, extra = {}) => {
    const r = { mode: MODE_NAMES[stream.mode], n: stream.n, ok, reconnects, received: stream.received };
    if (stream.mode === Mode.STATELESS) {
      r.first = stream.a === null ? null : String(stream.a);
      r.sum = ok ? stream.sum.toString() : null;
    } else {
      r.client_id = stream.clientId;
      r.checksum_expected = stream.checksumExpected;
      r.checksum_computed = stream.checksumComputed;
    }
    return { ...r, ...extra, error };
  };

  log.info(`${MODE_NAMES[stream.mode]} stream of n=${stream.n}${stream.clientId ? `, client id ${stream.clientId}` : ''}`);
  for (let attempt = 1; ; attempt++) {
    if (attempt > 1) {
      const delay = backoff.nextDelay();
      events.emit({ event: 'phase', phase: 'backing_off', detail: `${delay.toFixed(3)} s`, received: stream.received });
      log.debug(`backing off ${delay.toFixed(3)} s (${backoff.fruitless} attempts without progress)`);
      await sleep(delay);
      reconnects++;
    }
    events.emit({ event: 'attempt', attempt });
    events.emit({ event: 'phase', phase: 'connecting', received: stream.received });
    const out = await runConnection(stream, opts, log, hooks);

    switch (out.kind) {
      case 'complete':
        events.emit({ event: 'phase', phase: 'done', received: stream.received });
        return { exitCode: Exit.OK, result: result(true, null) };
      case 'verify_failed':
        events.emit({ event: 'phase', phase: 'failed', detail: out.reason, received: stream.received });
        log.error(`verification failed: ${out.reason}`);
        return { exitCode: Exit.VERIFY_FAILED, result: result(false, out.reason) };
      case 'error':
        if (isRetryable(out.code)) {
          log.warn(`attempt ${attempt}: server ERROR ${out.codeName} (retryable): ${out.message}`);
          // §16.6: the server said why it stopped, so it wrote no FINAL on this connection;
          // a later SESSION_UNKNOWN cannot be a lost final frame.
          if (out.welcomed) stream.lastHeardAt = null;
          break;
        }
        // §12.2: a final code (including unknown ones) ends the run with status 3.
        log.error(`rejected by the server: ${out.codeName} (${out.code}): ${out.message}`);
        events.emit({ event: 'phase', phase: 'failed', detail: out.codeName, received: stream.received });
        return { exitCode: Exit.REJECTED, result: rejection(stream, out, result, log) };
      case 'drop':
        log.info(`attempt ${attempt}: dropped after ${out.newNumbers} new numbers (${stream.received}/${stream.n}): ${out.reason}`);
        break;
      default:
        throw new Error(`unknown outcome ${out.kind}`);
    }
    if (!backoff.record(out.newNumbers > 0)) {
      const why = `gave up after ${backoff.fruitless} consecutive attempts without progress`;
      log.error(why);
      events.emit({ event: 'phase', phase: 'failed', detail: 'gave up', received: stream.received });
      return { exitCode: Exit.GAVE_UP, result: result(false, why) };
    }
  }
}

/** §12.2, §16.6: a final ERROR; SESSION_UNKNOWN on a RESUME is told apart by time. */
function rejection(stream, out, result, log) {
  const base = `${out.codeName}: ${out.message}`;
  if (out.code !== Code.SESSION_UNKNOWN || !out.hello.resume || stream.mode !== Mode.STATEFUL) {
    return result(false, `rejected: ${base}`);
  }
  // The server arms the TTL when it detects the drop, which cannot be before the last
  // bytes we heard on the connection that held the session: measuring from those
  // bytes never turns an expiry into a "final frame lost".
  const sinceDropMs = out.helloSentAt - stream.lastHeardAt;
  if (stream.lastHeardAt !== null && sinceDropMs < stream.sessionTtlMs) {
    log.error(`final frame lost: SESSION_UNKNOWN ${(sinceDropMs / 1000).toFixed(3)} s after the drop (TTL ${stream.sessionTtlMs / 1000} s)`);
    return result(false, 'final frame lost', { final_frame_lost: true });
  }
  return result(false, `session expired or never created: ${base}`, { final_frame_lost: false });
}

module.exports = { runStream, runConnection, Stream, Exit };
