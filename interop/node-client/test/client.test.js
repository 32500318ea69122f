'use strict';
// End-to-end: the real client process against a scripted fake server, replaying
// spec/vectors/sessions.json and the failure paths of PROTOCOL.md §12, §14, §15.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const { spawn } = require('node:child_process');

const CLIENT = path.join(__dirname, '..', 'client.js');
const sessions = JSON.parse(
  fs.readFileSync(path.join(__dirname, '..', '..', '..', 'spec', 'vectors', 'sessions.json'), 'utf8'),
).sessions;
const FAST = ['--backoff-initial', '0.01', '--backoff-max', '0.05', '--json', '--log-level', 'debug'];

/**
 * A server that plays `script[i]` on its i-th connection: checks the HELLO (when
 * `hello` is given), writes `send` (hex frames) in slices of `slice` bytes, then
 * 'fin' (close), 'rst' (reset) or 'hang' (stay silent).
 */
async function fakeServer(script) {
  const hellos = [];
  const sockets = [];
  const server = net.createServer((sock) => {
    sockets.push(sock);
    const step = script[Math.min(hellos.length, script.length - 1)];
    const index = hellos.length;
    hellos.push(null);
    sock.on('error', () => {});
    if (step.acceptOnly) return sock.end();
    let buf = Buffer.alloc(0);
    sock.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      if (buf.length < 3 || buf.length < 3 + buf.readUInt16BE(1) || hellos[index] !== null) return;
      hellos[index] = buf.toString('hex');
      const out = Buffer.from((step.send || []).join(''), 'hex');
      const slice = step.slice || out.length || 1;
      for (let off = 0; off < out.length; off += slice) sock.write(out.subarray(off, off + slice));
      if (step.end === 'fin') sock.end();
      else if (step.end === 'rst') sock.resetAndDestroy();
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: server.address().port,
    hellos,
    close: () => {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

function runClient(args) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLIENT, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (status) => {
      let result = null;
      try {
        result = JSON.parse(stdout.trim().split('\n').pop());
      } catch {}
      resolve({ status, stdout, stderr, result });
    });
  });
}

async function play(script, args) {
  const server = await fakeServer(script);
  try {
    const out = await runClient(['--port', String(server.port), ...FAST, ...args]);
    return { ...out, hellos: server.hellos };
  } finally {
    server.close();
  }
}

function scriptOf(session, slice) {
  return session.connections.map((c) => ({
    send: c.server_sends.map((f) => f.hex),
    end: 'fin', // after FINAL, ERROR, or the drop the vector describes
    slice,
  }));
}

function argsOf(session) {
  const p = session.parameters;
  const args = ['--mode', session.mode, '-n', String(p.n)];
  if (p.client_id) args.push('--client-id', p.client_id);
  return args;
}

for (const session of sessions) {
  for (const slice of [undefined, 1]) {
    test(`sessions.json ${session.name}${slice ? ' (byte by byte)' : ''}`, async () => {
      const out = await play(scriptOf(session, slice), argsOf(session));
      assert.deepEqual(
        out.hellos,
        session.connections.map((c) => c.client_sends[0]),
        out.stderr,
      );
      assert.equal(out.status, session.result.exit_status, out.stderr);
      const r = out.result;
      assert.equal(r.received, session.values.length);
      if (session.result.sum) assert.equal(r.sum, session.result.sum);
      if (session.result.checksum) {
        assert.equal(r.checksum_computed, session.result.checksum);
        assert.equal(r.checksum_expected, session.result.checksum);
      }
      if (session.result.reason === 'final frame lost') assert.equal(r.final_frame_lost, true);
      assert.equal(r.ok, session.result.exit_status === 0);
    });
  }
}

const byName = Object.fromEntries(sessions.map((s) => [s.name, s]));
const complete = byName['stateless-complete'];
const [HELLO0, WELCOME, DATA0, DATA1, FINAL2] = [
  complete.connections[0].client_sends[0],
  ...complete.connections[0].server_sends.map((f) => f.hex),
];
const STATELESS3 = ['--mode', 'stateless', '-n', '3'];

test('retryable SERVER_BUSY: back off, then a new-stream HELLO again (no WELCOME seen)', async () => {
  const out = await play([{ send: ['05000200' + '1f'], end: 'fin' }, { send: [WELCOME, DATA0, DATA1, FINAL2], end: 'fin' }], STATELESS3);
  assert.equal(out.status, 0, out.stderr);
  assert.deepEqual(out.hellos, [HELLO0, HELLO0]);
  assert.equal(out.result.reconnects, 1);
  assert.equal(out.result.sum, '161');
});

test('unknown error code is final: exit 3', async () => {
  const out = await play([{ send: ['05000203e7'], end: 'fin' }], STATELESS3);
  assert.equal(out.status, 3, out.stderr);
  assert.equal(out.result.ok, false);
  assert.equal(out.hellos.length, 1);
});

test('WELCOME seen, no number: RESUME at next_index 0 with a (§6.4)', async () => {
  const out = await play([{ send: [WELCOME], end: 'rst' }, { send: [], end: 'fin' }], STATELESS3.concat('--max-retries', '2'));
  assert.equal(out.status, 4, out.stderr);
  assert.equal(out.hellos[1], '01000f010101000000030000000000000017');
});

test('gives up after --max-retries attempts without progress: exit 4', async () => {
  const out = await play([{ acceptOnly: true }], STATELESS3.concat('--max-retries', '3'));
  assert.equal(out.status, 4, out.stderr);
  assert.equal(out.result.reconnects, 2); // 3 attempts
});

test('silence after WELCOME is a drop; resume continues (§14.1)', async () => {
  const resumeWelcome = byName['stateless-resume'].connections[1].server_sends[0].hex;
  const out = await play(
    [{ send: [WELCOME, DATA0], end: 'hang' }, { send: [resumeWelcome, DATA1, FINAL2], end: 'fin' }],
    STATELESS3.concat('--silence-timeout', '0.3'),
  );
  assert.equal(out.status, 0, out.stderr);
  assert.match(out.stderr, /silence/);
  assert.equal(out.result.sum, '161');
});

test('index gap is a violation: reconnect and resume from the numbers received (§12.3)', async () => {
  const resumeWelcome = byName['stateless-resume'].connections[1].server_sends[0].hex;
  const out = await play(
    [{ send: [WELCOME, DATA0, FINAL2], end: 'fin' }, { send: [resumeWelcome, DATA1, FINAL2], end: 'fin' }],
    STATELESS3,
  );
  assert.equal(out.status, 0, out.stderr);
  assert.match(out.stderr, /INVALID_INDEX/);
  assert.equal(out.hellos[1], '01000f010101000000030000000100000017');
});

test('a stateless value that is not a·2^index: exit 1 (§6.3)', async () => {
  const out = await play([{ send: [WELCOME, '0300050000000018'], end: 'fin' }], STATELESS3);
  assert.equal(out.status, 1, out.stderr);
});

test('stateful checksum mismatch: FAILURE, exit 1 (§7.5)', async () => {
  const s = byName['stateful-complete'];
  const sends = s.connections[0].server_sends.map((f) => f.hex);
  sends[3] = sends[3].slice(0, -2) + '00'; // corrupt the checksum's last byte
  const out = await play([{ send: sends, end: 'fin' }], argsOf(s));
  assert.equal(out.status, 1, out.stderr);
  assert.equal(out.result.ok, false);
  assert.notEqual(out.result.checksum_expected, out.result.checksum_computed);
});

test('text output: the sum, and checksums with SUCCESS', async () => {
  const server = await fakeServer([{ send: [WELCOME, DATA0, DATA1, FINAL2], end: 'fin' }]);
  const out = await runClient(['--port', String(server.port), ...STATELESS3]);
  server.close();
  assert.equal(out.status, 0);
  assert.equal(out.stdout, '161\n');
  const s = byName['stateful-complete'];
  const server2 = await fakeServer([{ send: s.connections[0].server_sends.map((f) => f.hex), end: 'fin' }]);
  const out2 = await runClient(['--port', String(server2.port), ...argsOf(s)]);
  server2.close();
  assert.equal(out2.status, 0);
  assert.match(out2.stdout, /fab44cfb95287b3fd9778b517874bcb5a2dbfc24d5ce017ab9d892f60096990b\n.*fab44cfb.*\nSUCCESS\n$/);
});

test('usage errors: exit 2', async () => {
  for (const args of [[], ['--port', '1'], ['--port', '1', '--mode', 'x'], ['--port', '1', '--mode', 'stateless', '-n', '0'],
    ['--port', '1', '--mode', 'stateful', '--client-id', 'NOT-A-UUID'], ['--port', '1', '--mode', 'stateless', '--what']]) {
    const out = await runClient(args);
    assert.equal(out.status, 2, args.join(' '));
  }
});
