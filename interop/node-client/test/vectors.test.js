'use strict';
// Checks the client's codec and connection rules against spec/vectors/*.json
// (PROTOCOL.md §21.1). Run: node --test interop/node-client/test/

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const crypto = require('node:crypto');

const {
  Mode,
  Type,
  TYPE_NAMES,
  ProtocolError,
  FrameDecoder,
  encodeHello,
  decodeHello,
  decodeError,
  isValidClientId,
} = require('../lib/frames');
const { ClientConnection } = require('../lib/connection');
const { Stream } = require('../lib/stream');
const { Backoff } = require('../lib/backoff');
const { MAX_DURATION_MS, MAX_TIMER_MS, secondsToMs, armTimer } = require('../lib/durations');
const { parseArgs, UsageError } = require('../client');

const VECTORS = path.join(__dirname, '..', '..', '..', 'spec', 'vectors');
const load = (name) => JSON.parse(fs.readFileSync(path.join(VECTORS, name), 'utf8'));
const hex = (h) => Buffer.from(h, 'hex');
const MODES = { stateless: Mode.STATELESS, stateful: Mode.STATEFUL };

/** A client connection in the state of a vector's context.hello. */
function connectionFor(helloHex) {
  const frames = new FrameDecoder().push(hex(helloHex));
  assert.equal(frames.length, 1);
  return new ClientConnection(decodeHello(frames[0].payload));
}

/** Feed `bytes` in pieces of `size` (Infinity: one chunk); collect the events. */
function feed(conn, bytes, size = Infinity) {
  const events = [];
  for (let off = 0; off < bytes.length; off += size) {
    for (const ev of conn.receive(bytes.subarray(off, Math.min(bytes.length, off + size)))) events.push(ev);
  }
  return events;
}

// Split sizes: whole, byte by byte, and awkward pieces across header/payload edges.
const CHUNKINGS = [Infinity, 1, 2, 3, 7, 4096];

test('frames.json: HELLO frames encode to their hex', async (t) => {
  for (const f of load('frames.json').frames.filter((f) => f.type === 'HELLO')) {
    await t.test(f.name, () => {
      const x = f.fields;
      const hello = { mode: x.mode, resume: x.resume, n: x.n, nextIndex: x.next_index };
      if (x.mode === Mode.STATELESS) hello.a = x.a;
      else hello.clientId = x.client_id;
      const bytes = encodeHello(hello);
      assert.equal(bytes.toString('hex'), f.hex);
      assert.equal(bytes.length, f.size);
      assert.equal(crypto.createHash('sha256').update(bytes).digest('hex'), f.sha256);
      // ...and decode back to the same fields.
      const [{ type, payload }] = new FrameDecoder().push(bytes);
      assert.equal(type, Type.HELLO);
      const back = decodeHello(payload);
      assert.equal(back.flags, x.flags);
      assert.equal(back.version, x.version);
      assert.equal(back.n, x.n);
      assert.equal(back.nextIndex, x.next_index);
    });
  }
});

test('frames.json: server-to-client frames decode to their fields', async (t) => {
  for (const f of load('frames.json').frames.filter((f) => f.direction === 'server-to-client')) {
    for (const size of CHUNKINGS) {
      await t.test(`${f.name} (chunks of ${size})`, () => {
        const conn = connectionFor(f.context.hello);
        if (f.context.welcome) {
          const [w] = feed(conn, hex(f.context.welcome));
          assert.equal(w.kind, 'welcome');
        }
        const events = feed(conn, hex(f.hex), size);
        assert.equal(events.length, 1);
        const ev = events[0];
        const x = f.fields;
        switch (f.type) {
          case 'WELCOME':
            assert.equal(ev.kind, 'welcome');
            assert.deepEqual(ev.welcome, {
              version: x.version,
              mode: x.mode,
              flags: x.flags,
              n: x.n,
              nextIndex: x.next_index,
              intervalMs: x.interval_ms,
              a: x.a,
              sessionTtlMs: x.session_ttl_ms,
            });
            break;
          case 'DATA':
          case 'FINAL':
            assert.equal(ev.kind, 'number');
            assert.equal(ev.final, f.type === 'FINAL');
            assert.equal(ev.index, x.index);
            if (f.mode === 'stateless') {
              assert.equal(ev.value, BigInt(x.value));
              assert.equal(ev.valueBytes.length, x.value_bytes);
            } else {
              assert.equal(ev.value, x.value);
              if (f.type === 'FINAL') assert.equal(ev.checksum.toString('hex'), x.checksum);
            }
            break;
          case 'ERROR':
            assert.equal(ev.kind, 'error');
            assert.equal(ev.code, x.code);
            assert.equal(ev.message, x.message);
            if (x.code_name) assert.equal(ev.codeName, x.code_name);
            break;
          default:
            assert.fail(`unexpected type ${f.type}`);
        }
        assert.doesNotThrow(() => conn.end()); // the frame ended on a boundary
      });
    }
  }
});

test('invalid_frames.json: client-side cases are rejected with the listed code', async (t) => {
  for (const c of load('invalid_frames.json').cases) {
    if (c.decoder !== 'client') {
      await t.test(c.name, { skip: 'server-side vector' }, () => {});
      continue;
    }
    for (const size of CHUNKINGS) {
      await t.test(`${c.name} (chunks of ${size})`, () => {
        const conn = connectionFor(c.context.hello);
        feed(conn, hex(c.context.received)); // valid frames: must not throw
        assert.throws(
          () => {
            feed(conn, hex(c.hex), size);
            if (c.eof) conn.end();
          },
          (err) => {
            assert.ok(err instanceof ProtocolError, `${err}`);
            assert.equal(err.codeName, c.error.name, `${c.why}: ${err.message}`);
            assert.equal(err.code, c.error.code);
            return true;
          },
        );
      });
    }
  }
});

test('invalid_frames.json: header errors are reported before the payload arrives', () => {
  // §3 rule 1: FRAME_TOO_LARGE / MALFORMED_FRAME as soon as the header is in.
  const d = new FrameDecoder();
  assert.throws(() => d.push(hex('034001')), { codeName: 'FRAME_TOO_LARGE' });
  assert.throws(() => new FrameDecoder().push(hex('06')), { codeName: 'MALFORMED_FRAME' }); // first byte suffices
});

test('sessions.json: whole conversations give the expected result', async (t) => {
  for (const s of load('sessions.json').sessions) {
    await t.test(s.name, () => {
      const p = s.parameters;
      const stream = new Stream({ mode: MODES[s.mode], n: p.n, clientId: p.client_id });
      let outcome = null;
      for (const c of s.connections) {
        // Our client must send exactly the HELLO of the vector, given its state.
        assert.equal(c.client_sends.length, 1);
        const hello = stream.nextHello();
        assert.equal(encodeHello(hello).toString('hex'), c.client_sends[0]);
        const conn = new ClientConnection(hello);
        for (const f of c.server_sends) {
          const events = feed(conn, hex(f.hex));
          assert.equal(events.length, 1);
          const ev = events[0];
          assert.equal(ev.kind === 'number' ? (ev.final ? 'FINAL' : 'DATA') : ev.kind.toUpperCase(), f.type);
          if (ev.kind === 'welcome') stream.onWelcome(ev.welcome);
          else if (ev.kind === 'number') outcome = stream.onNumber(ev);
          else outcome = { kind: 'error', code: ev.code };
        }
        if (c.after_final !== undefined) {
          assert.equal(conn.state, 'done');
          assert.deepEqual(feed(conn, hex(c.after_final)), []); // §5.5: nothing is read after FINAL
        }
      }
      assert.equal(stream.received, s.values.length);
      const r = s.result;
      if (r.exit_status === 0) {
        assert.deepEqual(outcome, { kind: 'complete' });
        if (r.sum !== undefined) assert.equal(stream.sum.toString(), r.sum);
        if (r.checksum !== undefined) {
          assert.equal(stream.checksumComputed, r.checksum);
          assert.equal(stream.checksumExpected, r.checksum);
        }
      } else {
        // The final-frame-lost case: a final ERROR (exit 3) answering a RESUME.
        assert.equal(r.exit_status, 3);
        assert.equal(outcome.kind, 'error');
        assert.equal(outcome.code, 20);
        assert.equal(stream.received, s.parameters.n - 1);
      }
    });
  }
});

test('§5.5: after FINAL nothing is read, even garbage in the same chunk', () => {
  const conn = new ClientConnection(statelessHello({ n: 1 }));
  const events = feed(conn, Buffer.concat([welcomeBytes({ mode: 1, n: 1, a: 23 }), hex('0400050000000017'), hex('ff0000')]));
  assert.deepEqual(events.map((e) => e.kind), ['welcome', 'number']);
  assert.deepEqual(feed(conn, hex('ffffff')), []);
  conn.end(); // EOF after FINAL: nothing to judge either
});

test('cli_values.json: durations in seconds to whole milliseconds (§13.1)', async (t) => {
  for (const d of load('cli_values.json').durations) {
    await t.test(JSON.stringify(d.text), () => assert.equal(secondsToMs(d.text), d.ms));
  }
});

test('cli_values.json: every client option accepts or refuses each value (A.1, A.2)', async (t) => {
  for (const c of load('cli_values.json').options.filter((o) => o.option.startsWith('client '))) {
    const flag = c.option.split(' ')[1];
    await t.test(`${flag} ${JSON.stringify(c.text)}`, () => {
      const args = ['--port', '9', '--mode', flag === '-n' ? 'stateless' : 'stateful', flag, c.text];
      if (flag !== '-n') args.push('-n', '3');
      if (c.accepted) assert.doesNotThrow(() => parseArgs(args));
      else assert.throws(() => parseArgs(args), UsageError);
    });
  }
});

test('§15: the backoff is min(nominal × jitter, MAX_BACKOFF): the cap is a cap', () => {
  const top = new Backoff({ initial: 1, max: 10 }, () => 0.999999); // jitter ≈ × 1.2
  const low = new Backoff({ initial: 1, max: 10 }, () => 0); // jitter × 0.8
  const nominal = [1, 1.6, 2.56, 4.096, 6.5536, 10.48576, 16.777216];
  nominal.forEach((d, k) => {
    top.fruitless = k;
    low.fruitless = k;
    assert.ok(Math.abs(top.nextDelay() - Math.min(d * 1.2, 10)) < 1e-4, `k=${k}`);
    assert.ok(Math.abs(low.nextDelay() - Math.min(d * 0.8, 10)) < 1e-9, `k=${k}`);
  });
  top.fruitless = 5000; // 1.6^5000 is Infinity in a double: still exactly the cap
  assert.equal(top.nextDelay(), 10);
  const biggest = new Backoff({ initial: MAX_DURATION_MS / 1000, max: MAX_DURATION_MS / 1000 }, () => 0.999999);
  assert.ok(biggest.nextDelay() * 1000 <= MAX_TIMER_MS); // §13.1: a backoff timer Node can hold
});

test('timers hold their whole range or refuse: never 1 ms for 2^31 ms (§13.1)', () => {
  assert.throws(() => armTimer(() => {}, MAX_TIMER_MS + 1), RangeError);
  assert.throws(() => armTimer(() => {}, 3 * 800_000_000), RangeError);
  const longest = armTimer(() => assert.fail('fired'), 3 * MAX_DURATION_MS); // the longest silence timeout
  clearTimeout(longest);
  assert.ok(3 * MAX_DURATION_MS <= MAX_TIMER_MS);
});

test('checksum.json: incremental SHA-256 over big-endian u32 values', async (t) => {
  const v = load('checksum.json');
  for (const s of v.sequences) {
    await t.test(s.name, () => {
      const h = crypto.createHash('sha256');
      const bytes = Buffer.alloc(4 * s.values.length);
      s.values.forEach((x, i) => {
        bytes.writeUInt32BE(x, 4 * i);
        h.update(bytes.subarray(4 * i, 4 * i + 4)); // one value at a time, as the client does
      });
      assert.equal(bytes.toString('hex'), s.bytes_hex);
      assert.equal(h.digest('hex'), s.sha256);
    });
  }
  // The sessions' checksums can be checked by a client only through a full stream;
  // checking the first elements' encoding is what remains for us.
  for (const s of v.sessions.filter((s) => s.n === s.first_elements.length)) {
    await t.test(`session seed ${s.seed_hex} n=${s.n}`, () => {
      const stream = new Stream({ mode: Mode.STATEFUL, n: s.n, clientId: '00000000-0000-4000-8000-000000000000' });
      stream.onWelcome({ sessionTtlMs: 30000 });
      let outcome;
      s.first_elements.forEach((value, index) => {
        const valueBytes = Buffer.alloc(4);
        valueBytes.writeUInt32BE(value);
        const final = index === s.n - 1;
        const num = { index, value, valueBytes, final };
        if (final) num.checksum = hex(s.sha256);
        outcome = stream.onNumber(num);
      });
      assert.deepEqual(outcome, { kind: 'complete' });
      assert.equal(stream.checksumComputed, s.sha256);
    });
  }
});

test('stateless_sums.json: BigInt sums and value sizes', async (t) => {
  for (const c of load('stateless_sums.json').cases) {
    await t.test(`a=${c.a} n=${c.n}`, () => {
      const stream = new Stream({ mode: Mode.STATELESS, n: c.n });
      stream.onWelcome({ a: c.a });
      let outcome;
      let last;
      for (let k = 0; k < c.n; k++) {
        const value = BigInt(c.a) << BigInt(k);
        last = value;
        outcome = stream.onNumber({ index: k, value, final: k === c.n - 1 });
      }
      assert.deepEqual(outcome, { kind: 'complete' });
      assert.equal(stream.sum.toString(), c.sum);
      assert.equal(stream.sum.toString(2).length, c.sum_bits);
      assert.equal(c.sum.length, c.sum_digits);
      assert.equal(Math.ceil(last.toString(2).length / 8), c.last_value_bytes);
    });
  }
});

test('a stateless value other than a·2^index is a verification failure (§6.3)', () => {
  const stream = new Stream({ mode: Mode.STATELESS, n: 3 });
  stream.onWelcome({ a: 23 });
  assert.equal(stream.onNumber({ index: 0, value: 24n, final: false }).kind, 'verify_failed');
});

test('a stateful checksum mismatch is a verification failure (§7.5)', () => {
  const stream = new Stream({ mode: Mode.STATEFUL, n: 1, clientId: '00000000-0000-4000-8000-000000000000' });
  stream.onWelcome({ sessionTtlMs: 30000 });
  const out = stream.onNumber({ index: 0, value: 1, valueBytes: hex('00000001'), final: true, checksum: Buffer.alloc(32) });
  assert.equal(out.kind, 'verify_failed');
});

test('decoder: many frames in one chunk, and a frame split anywhere', () => {
  const frames = load('frames.json').frames.filter((f) => f.direction === 'server-to-client');
  const all = Buffer.concat(frames.map((f) => hex(f.hex)));
  for (const size of [1, 2, 3, 5, 11, 100, 8199, 8200, 8201, all.length]) {
    const d = new FrameDecoder();
    const got = [];
    for (let off = 0; off < all.length; off += size) {
      for (const f of d.frames(all.subarray(off, off + size))) {
        got.push(Buffer.concat([Buffer.from([f.type, f.payload.length >> 8, f.payload.length & 0xff]), f.payload]));
      }
    }
    d.end();
    assert.deepEqual(
      got.map((b) => b.toString('hex')),
      frames.map((f) => f.hex),
      `chunks of ${size}`,
    );
  }
});

test('decoder: EOF inside a header or a payload is MALFORMED_FRAME (§3 rule 3)', () => {
  for (const partial of ['03', '0300', '030008', '03000800000000157a38']) {
    const d = new FrameDecoder();
    d.push(hex(partial));
    assert.throws(() => d.end(), { codeName: 'MALFORMED_FRAME' }, partial);
  }
});

test('decoder: a zero-length payload is a complete frame', () => {
  // e.g. an (invalid) ERROR with no payload: framing is fine, the payload is not.
  for (const size of [1, 3]) {
    const d = new FrameDecoder();
    const got = [];
    const bytes = hex('050000');
    for (let off = 0; off < bytes.length; off += size) got.push(...d.push(bytes.subarray(off, off + size)));
    assert.equal(got.length, 1);
    assert.equal(TYPE_NAMES[got[0].type], 'ERROR');
    assert.throws(() => decodeError(got[0].payload), { codeName: 'MALFORMED_FRAME' });
  }
});

test('client id validation (§4.1)', () => {
  assert.ok(isValidClientId('3f2c8a4e-9b1d-4c7e-a5f0-6d8e2b7c1a90'));
  assert.ok(isValidClientId(crypto.randomUUID()));
  for (const bad of ['3F2C8A4E-9B1D-4C7E-A5F0-6D8E2B7C1A90', '{3f2c8a4e-9b1d-4c7e-a5f0-6d8e2b7c1a9}', '3f2c8a4e9b1d4c7ea5f06d8e2b7c1a90', '']) {
    assert.ok(!isValidClientId(bad), bad);
  }
});

// ---- §5.4 and §5.5: the order of the client's checks (informative, but the
// client-side vectors' codes follow it), on cases where two checks fail at once.

const ID = '3f2c8a4e-9b1d-4c7e-a5f0-6d8e2b7c1a90';
function welcomeBytes({ version = 1, mode, flags = 0, n, nextIndex = 0, intervalMs = 1000, a = 0, ttlMs = 0, length = 23 }) {
  const p = Buffer.alloc(23);
  p[0] = version;
  p[1] = mode;
  p[2] = flags;
  p.writeUInt32BE(n, 3);
  p.writeUInt32BE(nextIndex, 7);
  p.writeUInt32BE(intervalMs, 11);
  p.writeUInt32BE(a, 15);
  p.writeUInt32BE(ttlMs, 19);
  const body = p.subarray(0, Math.min(length, 23));
  return Buffer.concat([Buffer.from([0x02, 0, body.length]), body]);
}
const statelessHello = (over = {}) => ({ mode: Mode.STATELESS, resume: false, n: 3, nextIndex: 0, a: 0, ...over });
const statefulHello = (over = {}) => ({ mode: Mode.STATEFUL, resume: false, n: 3, nextIndex: 0, clientId: ID, ...over });

test('§5.4: WELCOME checks in the order of the table', async (t) => {
  const cases = [
    ['version before mode', statelessHello(), { version: 2, mode: 3, n: 3, a: 23 }, 'UNSUPPORTED_VERSION'],
    ['mode before flags', statelessHello(), { mode: 3, flags: 1, n: 3, a: 23 }, 'UNSUPPORTED_MODE'],
    ['flags before n', statelessHello(), { mode: 1, flags: 1, n: 0, a: 23 }, 'MALFORMED_FRAME'],
    ['n out of range (check 5) before n ≠ HELLO n (check 10)', statelessHello(), { mode: 1, n: 0, a: 23 }, 'INVALID_N'],
    ['n = 65536', statelessHello(), { mode: 1, n: 65536, a: 23 }, 'INVALID_N'],
    ['next_index ≥ n (check 6) before a (check 7)', statelessHello(), { mode: 1, n: 3, nextIndex: 3, a: 0 }, 'INVALID_INDEX'],
    ['next_index ≥ n (check 6) before n ≠ HELLO n (check 10)', statelessHello(), { mode: 1, n: 2, nextIndex: 2, a: 23 }, 'INVALID_INDEX'],
    ['stateful WELCOME with a to a stateless HELLO: check 9 before check 10', statelessHello(), { mode: 2, n: 3, a: 23, ttlMs: 30000 }, 'INVALID_A'],
    ['stateless WELCOME with a = 0 to a stateful HELLO: check 7 before check 10', statefulHello(), { mode: 1, n: 3, a: 0 }, 'INVALID_A'],
    ['stateless WELCOME with a TTL to a stateful HELLO: check 8 before check 10', statefulHello(), { mode: 1, n: 3, a: 5, ttlMs: 30000 }, 'MALFORMED_FRAME'],
    ['n ≠ HELLO n (check 10) before next_index ≠ HELLO (check 11)', statelessHello(), { mode: 1, n: 4, nextIndex: 1, a: 23 }, 'MALFORMED_FRAME'],
    ['next_index ≠ HELLO (check 11) before a ≠ resumed a (check 12)', statelessHello({ resume: true, nextIndex: 1, a: 23 }), { mode: 1, n: 3, nextIndex: 2, a: 24 }, 'INVALID_INDEX'],
    ['resumed a = 0: check 7, not check 12', statelessHello({ resume: true, nextIndex: 1, a: 23 }), { mode: 1, n: 3, nextIndex: 1, a: 0 }, 'INVALID_A'],
    ['resumed a differs', statelessHello({ resume: true, nextIndex: 1, a: 23 }), { mode: 1, n: 3, nextIndex: 1, a: 24 }, 'MALFORMED_FRAME'],
  ];
  for (const [name, hello, welcome, code] of cases) {
    await t.test(name, () => {
      assert.throws(() => feed(new ClientConnection(hello), welcomeBytes(welcome)), (err) => {
        assert.ok(err instanceof ProtocolError, `${err}`);
        assert.equal(err.codeName, code, err.message);
        return true;
      });
    });
  }
  await t.test('interval_ms and session_ttl_ms up to MAX_DURATION_MS pass (§13.1)', () => {
    for (const [intervalMs, ttlMs] of [[0, 0], [86_400_000, 86_400_000], [1000, 30000]]) {
      const [ev] = feed(new ClientConnection(statefulHello()), welcomeBytes({ mode: 2, n: 3, intervalMs, ttlMs }));
      assert.equal(ev.kind, 'welcome');
    }
  });
  await t.test('interval_ms and session_ttl_ms above MAX_DURATION_MS fail: checks 13, 14 come last', () => {
    // With a wrong next_index too, check 11 reports first: 13 and 14 follow 1-12.
    const conn = new ClientConnection(statefulHello({ resume: true, nextIndex: 1 }));
    assert.throws(() => feed(conn, welcomeBytes({ mode: 2, n: 3, intervalMs: 86_400_001, ttlMs: 0 })), {
      codeName: 'INVALID_INDEX',
    });
    for (const [intervalMs, ttlMs] of [[86_400_001, 0], [0xffffffff, 0], [0, 86_400_001]]) {
      const c = new ClientConnection(statefulHello());
      assert.throws(() => feed(c, welcomeBytes({ mode: 2, n: 3, intervalMs, ttlMs })), { codeName: 'MALFORMED_FRAME' });
    }
  });
});

test('§5.5: DATA/FINAL checks in the order of the table', async (t) => {
  const welcome = welcomeBytes({ mode: 1, n: 3, a: 23 });
  const cases = [
    ['a second WELCOME of the wrong length: the state check (2) comes first', [welcome], welcomeBytes({ mode: 1, n: 3, a: 23, length: 22 }), 'UNEXPECTED_FRAME'],
    ['a malformed DATA before WELCOME: the state check (2) before the layout (3)', [], hex('030003000000'), 'UNEXPECTED_FRAME'],
    ['layout (3) before the index (4)', [welcome], hex('03000500000005' + '00'), 'MALFORMED_FRAME'],
    ['FINAL out of sequence and not at n − 1: INVALID_INDEX (4 before 5)', [welcome], hex('0400050000000117'), 'INVALID_INDEX'],
    ['DATA at n − 1 out of sequence: INVALID_INDEX', [welcome], hex('0300050000000217'), 'INVALID_INDEX'],
    ['FINAL in sequence but not at n − 1: UNEXPECTED_FRAME', [welcome], hex('0400050000000017'), 'UNEXPECTED_FRAME'],
  ];
  for (const [name, before, bytes, code] of cases) {
    await t.test(name, () => {
      const conn = new ClientConnection(statelessHello());
      for (const b of before) feed(conn, b);
      assert.throws(() => feed(conn, bytes), (err) => {
        assert.equal(err.codeName, code, err.message);
        return true;
      });
    });
  }
});

test('§4.4, §2.2: ERROR messages: U+FEFF kept anywhere, U+0000 accepted, beyond U+10FFFF rejected', () => {
  const err = (msgHex, code = '0020') => hex('05' + ((msgHex.length / 2 + 2).toString(16).padStart(4, '0')) + code + msgHex);
  assert.equal(decodeError(err('efbbbf41').subarray(3)).message, '\ufeffA');
  assert.equal(decodeError(err('41efbbbf').subarray(3)).message, 'A\ufeff');
  assert.equal(decodeError(err('00').subarray(3)).message, '\u0000');
  assert.equal(decodeError(err('efbfbf').subarray(3)).message, '\uffff'); // a noncharacter
  assert.throws(() => decodeError(err('f4908080').subarray(3)), { codeName: 'MALFORMED_FRAME' });
  assert.equal(decodeError(err('', '0063').subarray(3)).codeName, 'ERROR_99'); // A.3: unassigned code
});

test('§12.2: SESSION_UNKNOWN is a lost final frame only after a drop, within the TTL of its detection', () => {
  const s = new Stream({ mode: Mode.STATEFUL, n: 3, clientId: ID });
  assert.equal(s.judgeSessionUnknown(1000).lost, false); // no WELCOMEd connection
  s.onWelcomedConnectionEnd('drop', 1000, { sessionTtlMs: 30000 });
  assert.equal(s.judgeSessionUnknown(1000 + 29999).lost, true);
  assert.equal(s.judgeSessionUnknown(1000 + 30000).lost, false); // not less than the TTL
  s.onWelcomedConnectionEnd('error', 2000, { sessionTtlMs: 30000 });
  assert.equal(s.judgeSessionUnknown(2001).lost, false); // ended by an ERROR frame
  s.onWelcomedConnectionEnd('drop', 3000, { sessionTtlMs: 0 });
  assert.equal(s.judgeSessionUnknown(3000).lost, false); // TTL 0: never "less than"
});
