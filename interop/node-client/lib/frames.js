'use strict';
// NSP v1 framing (PROTOCOL.md §3, §4): constants, the HELLO encoder, payload
// decoders and a buffering frame decoder that copes with any chunking.

const HEADER_SIZE = 3;
const MAX_PAYLOAD = 16384;
const VERSION = 1;
const MAX_N = 65535; // §17

const Type = Object.freeze({ HELLO: 0x01, WELCOME: 0x02, DATA: 0x03, FINAL: 0x04, ERROR: 0x05 });
const TYPE_NAMES = Object.freeze({ 1: 'HELLO', 2: 'WELCOME', 3: 'DATA', 4: 'FINAL', 5: 'ERROR' });

const Mode = Object.freeze({ STATELESS: 1, STATEFUL: 2 });
const MODE_NAMES = Object.freeze({ 1: 'stateless', 2: 'stateful' });
const FLAG_RESUME = 0x01;

// §12.1
const Code = Object.freeze({
  MALFORMED_FRAME: 1,
  FRAME_TOO_LARGE: 2,
  UNEXPECTED_FRAME: 3,
  UNSUPPORTED_VERSION: 4,
  UNSUPPORTED_MODE: 5,
  INVALID_N: 6,
  INVALID_A: 7,
  INVALID_INDEX: 8,
  INVALID_CLIENT_ID: 9,
  HANDSHAKE_TIMEOUT: 10,
  SESSION_UNKNOWN: 20,
  SESSION_MISMATCH: 21,
  SESSION_SUPERSEDED: 22,
  STORE_UNAVAILABLE: 30,
  SERVER_BUSY: 31,
  SHUTTING_DOWN: 32,
  INTERNAL_ERROR: 33,
});
const CODE_NAMES = Object.freeze(Object.fromEntries(Object.entries(Code).map(([k, v]) => [v, k])));
// §12.1: only these are retryable; every other code, known or not, is final.
const RETRYABLE_CODES = new Set([10, 30, 31, 32, 33]);

const STATELESS_HELLO_PAYLOAD = 15;
const STATEFUL_HELLO_PAYLOAD = 47;
const WELCOME_PAYLOAD = 23;
const STATEFUL_DATA_PAYLOAD = 8;
const STATEFUL_FINAL_PAYLOAD = 40;
const MAX_ERROR_MESSAGE = 1024;
const CLIENT_ID_LENGTH = 36;

/** A violation of the protocol by the peer; `code` classifies it (§12.1, §12.3). */
class ProtocolError extends Error {
  constructor(code, message) {
    super(message);
    this.name = 'ProtocolError';
    this.code = code;
    this.codeName = codeName(code);
  }
}

/** §12.1 name, or `ERROR_<decimal code>` for an unassigned code (Appendix A.3). */
function codeName(code) {
  return CODE_NAMES[code] || `ERROR_${code}`;
}

function isRetryable(code) {
  return RETRYABLE_CODES.has(code);
}

/** §4.1: exactly 36 bytes, '-' at 8, 13, 18, 23, lower-case hex digits elsewhere. */
function isValidClientId(id) {
  if (typeof id !== 'string' || id.length !== CLIENT_ID_LENGTH) return false;
  for (let i = 0; i < CLIENT_ID_LENGTH; i++) {
    const c = id.charCodeAt(i);
    if (i === 8 || i === 13 || i === 18 || i === 23) {
      if (c !== 0x2d) return false;
    } else if (!((c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66))) {
      return false;
    }
  }
  return true;
}

function frame(type, payload) {
  if (payload.length > MAX_PAYLOAD) throw new RangeError('payload exceeds MAX_PAYLOAD');
  const out = Buffer.allocUnsafe(HEADER_SIZE + payload.length);
  out[0] = type;
  out.writeUInt16BE(payload.length, 1);
  payload.copy(out, HEADER_SIZE);
  return out;
}

/**
 * Encode a HELLO (§4.1). `hello` = {mode, resume, n, nextIndex, a?, clientId?}.
 * Fields are written as u32 without range checks beyond u32: validating is the
 * caller's job, and the server reports out-of-range values precisely.
 */
function encodeHello(hello) {
  const stateless = hello.mode === Mode.STATELESS;
  const p = Buffer.alloc(stateless ? STATELESS_HELLO_PAYLOAD : STATEFUL_HELLO_PAYLOAD);
  p[0] = hello.version ?? VERSION;
  p[1] = hello.mode;
  p[2] = hello.resume ? FLAG_RESUME : 0;
  p.writeUInt32BE(hello.n, 3);
  p.writeUInt32BE(hello.nextIndex, 7);
  if (stateless) {
    p.writeUInt32BE(hello.a ?? 0, 11);
  } else {
    if (!isValidClientId(hello.clientId)) throw new TypeError(`invalid client id: ${hello.clientId}`);
    p.write(hello.clientId, 11, 'ascii');
  }
  return frame(Type.HELLO, p);
}

/** Decode a HELLO payload (used by tests to set up a client connection from a vector). */
function decodeHello(payload) {
  if (payload.length < 11) throw new ProtocolError(Code.MALFORMED_FRAME, 'HELLO shorter than 11 bytes');
  const hello = {
    version: payload[0],
    mode: payload[1],
    flags: payload[2],
    resume: (payload[2] & FLAG_RESUME) !== 0,
    n: payload.readUInt32BE(3),
    nextIndex: payload.readUInt32BE(7),
  };
  if (hello.mode === Mode.STATELESS && payload.length === STATELESS_HELLO_PAYLOAD) {
    hello.a = payload.readUInt32BE(11);
  } else if (hello.mode === Mode.STATEFUL && payload.length === STATEFUL_HELLO_PAYLOAD) {
    hello.clientId = payload.toString('latin1', 11, 47);
  } else {
    throw new ProtocolError(Code.MALFORMED_FRAME, 'HELLO payload length does not match its mode');
  }
  return hello;
}

/** §4.2: layout only; the comparison with the HELLO (§5.4) is the connection's job. */
function decodeWelcome(payload) {
  if (payload.length !== WELCOME_PAYLOAD) {
    throw new ProtocolError(Code.MALFORMED_FRAME, `WELCOME payload is ${payload.length} bytes, not 23`);
  }
  return {
    version: payload[0],
    mode: payload[1],
    flags: payload[2],
    n: payload.readUInt32BE(3),
    nextIndex: payload.readUInt32BE(7),
    intervalMs: payload.readUInt32BE(11),
    a: payload.readUInt32BE(15),
    sessionTtlMs: payload.readUInt32BE(19),
  };
}

/** Big-endian magnitude to BigInt; hex parsing is linear for power-of-two radixes. */
function bytesToBigInt(bytes) {
  return bytes.length === 0 ? 0n : BigInt('0x' + bytes.toString('hex'));
}

/** §4.3, DATA or FINAL; `final` is set by the caller from the frame type. */
function decodeNumber(payload, mode, final) {
  if (mode === Mode.STATELESS) {
    if (payload.length < 5) {
      throw new ProtocolError(Code.MALFORMED_FRAME, `stateless number payload of ${payload.length} bytes (< 5)`);
    }
    if (payload[4] === 0) {
      throw new ProtocolError(Code.MALFORMED_FRAME, 'stateless value is not minimal (first byte 0x00)');
    }
    // Keep the raw bytes too: the caller can check a·2^index without parsing.
    const valueBytes = payload.subarray(4);
    return { index: payload.readUInt32BE(0), valueBytes, value: bytesToBigInt(valueBytes), final };
  }
  const expected = final ? STATEFUL_FINAL_PAYLOAD : STATEFUL_DATA_PAYLOAD;
  if (payload.length !== expected) {
    throw new ProtocolError(
      Code.MALFORMED_FRAME,
      `stateful ${final ? 'FINAL' : 'DATA'} payload is ${payload.length} bytes, not ${expected}`,
    );
  }
  const number = {
    index: payload.readUInt32BE(0),
    valueBytes: payload.subarray(4, 8),
    value: payload.readUInt32BE(4),
    final,
  };
  if (final) number.checksum = Buffer.from(payload.subarray(8, 40)); // copy: outlives the chunk
  return number;
}

// fatal: reject invalid UTF-8 (overlong, surrogates, truncated); ignoreBOM: keep a
// leading U+FEFF as text rather than silently dropping it.
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** §4.4 */
function decodeError(payload) {
  if (payload.length < 2) throw new ProtocolError(Code.MALFORMED_FRAME, 'ERROR payload under 2 bytes');
  if (payload.length - 2 > MAX_ERROR_MESSAGE) {
    throw new ProtocolError(Code.MALFORMED_FRAME, `ERROR message of ${payload.length - 2} bytes (> 1024)`);
  }
  let message;
  try {
    message = utf8.decode(payload.subarray(2));
  } catch {
    throw new ProtocolError(Code.MALFORMED_FRAME, 'ERROR message is not valid UTF-8');
  }
  const code = payload.readUInt16BE(0);
  return { code, codeName: codeName(code), message };
}

/**
 * Reassembles frames from arbitrary chunks (§2.1 item 2, §3). push() returns the
 * complete frames in order; it throws a ProtocolError as soon as a header is bad,
 * after returning nothing of that chunk — so callers that need the frames before a
 * bad header use frames() instead. At most one incomplete frame is buffered.
 */
class FrameDecoder {
  constructor() {
    this._header = Buffer.alloc(HEADER_SIZE);
    this._headerFill = 0;
    this._payload = null; // preallocated once the header of a split frame is known
    this._payloadFill = 0;
  }

  /** Bytes of an incomplete frame currently buffered. */
  get buffered() {
    return this._headerFill + this._payloadFill;
  }

  /** Generator over the complete frames of `chunk`; throws at the first bad header. */
  *frames(chunk) {
    let off = 0;
    while (off < chunk.length) {
      if (this._payload === null) {
        if (this._headerFill === 0 && chunk.length - off >= HEADER_SIZE) {
          // Fast path: header in this chunk.
          const type = chunk[off];
          const length = chunk.readUInt16BE(off + 1);
          checkHeader(type, length);
          const start = off + HEADER_SIZE;
          if (chunk.length - start >= length) {
            off = start + length;
            yield { type, payload: chunk.subarray(start, off) };
            continue;
          }
          this._startPayload(type, length);
          off = start;
        } else {
          // Slow path: header split across chunks.
          if (this._headerFill === 0) checkType(chunk[off]); // MUST reject on the first byte (§3 rule 1)
          const take = Math.min(HEADER_SIZE - this._headerFill, chunk.length - off);
          chunk.copy(this._header, this._headerFill, off, off + take);
          this._headerFill += take;
          off += take;
          if (this._headerFill < HEADER_SIZE) break;
          const type = this._header[0];
          const length = this._header.readUInt16BE(1);
          checkHeader(type, length);
          if (length === 0) {
            this._headerFill = 0;
            yield { type, payload: Buffer.alloc(0) };
            continue;
          }
          this._startPayload(type, length);
        }
      }
      const need = this._payload.length - this._payloadFill;
      const take = Math.min(need, chunk.length - off);
      chunk.copy(this._payload, this._payloadFill, off, off + take);
      this._payloadFill += take;
      off += take;
      if (this._payloadFill === this._payload.length) {
        const f = { type: this._type, payload: this._payload };
        this._payload = null;
        this._payloadFill = 0;
        this._headerFill = 0;
        yield f;
      }
    }
  }

  /** Convenience: all frames of a chunk as an array. */
  push(chunk) {
    return [...this.frames(chunk)];
  }

  /** EOF: on a frame boundary it is a plain EOF; inside a frame it is MALFORMED_FRAME (§3 rule 3). */
  end() {
    if (this.buffered > 0) {
      throw new ProtocolError(Code.MALFORMED_FRAME, `EOF inside a frame (${this.buffered} bytes buffered)`);
    }
  }

  _startPayload(type, length) {
    this._type = type;
    this._headerFill = HEADER_SIZE; // counted as buffered until the frame completes
    this._payload = Buffer.allocUnsafe(length);
    this._payloadFill = 0;
  }
}

function checkType(type) {
  if (type < Type.HELLO || type > Type.ERROR) {
    throw new ProtocolError(Code.MALFORMED_FRAME, `unknown frame type 0x${type.toString(16).padStart(2, '0')}`);
  }
}

function checkHeader(type, length) {
  checkType(type);
  if (length > MAX_PAYLOAD) throw new ProtocolError(Code.FRAME_TOO_LARGE, `payload length ${length} > ${MAX_PAYLOAD}`);
}

module.exports = {
  HEADER_SIZE,
  MAX_PAYLOAD,
  VERSION,
  MAX_N,
  Type,
  TYPE_NAMES,
  Mode,
  MODE_NAMES,
  FLAG_RESUME,
  Code,
  CODE_NAMES,
  ProtocolError,
  codeName,
  isRetryable,
  isValidClientId,
  encodeHello,
  decodeHello,
  decodeWelcome,
  decodeNumber,
  decodeError,
  bytesToBigInt,
  FrameDecoder,
};
