#!/usr/bin/env node
'use strict';
// Sends every server-side case of spec/vectors/invalid_frames.json to a running
// server and checks the code of the ERROR it answers (PROTOCOL.md §5.3, §21.2).
// usage: node tools/probe-server.js --port PORT [--host 127.0.0.1] [--timeout S]

const fs = require('fs');
const net = require('net');
const path = require('path');
const { FrameDecoder, Type, decodeError, codeName } = require('../lib/frames');

const args = process.argv.slice(2);
const opt = (name, dflt) => (args.includes(name) ? args[args.indexOf(name) + 1] : dflt);
const port = Number(opt('--port'));
const host = opt('--host', '127.0.0.1');
const timeoutMs = Number(opt('--timeout', '8')) * 1000;
if (!port) {
  process.stderr.write('usage: node tools/probe-server.js --port PORT [--host H] [--timeout S]\n');
  process.exit(2);
}

const vectors = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', '..', 'spec', 'vectors', 'invalid_frames.json'), 'utf8'));

/** Resolves with the ERROR code the server sent, or a string saying what happened instead. */
function probe(c) {
  return new Promise((resolve) => {
    const sock = net.connect({ host, port });
    const decoder = new FrameDecoder();
    const done = (r) => {
      clearTimeout(timer);
      sock.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => done('no ERROR before the timeout'), timeoutMs);
    sock.on('connect', () => {
      sock.write(Buffer.from(c.context.received + c.hex, 'hex'));
      if (c.eof) sock.end(); // half-close so an ERROR can still be read
    });
    sock.on('data', (chunk) => {
      try {
        for (const f of decoder.frames(chunk)) {
          if (f.type === Type.ERROR) return done(decodeError(f.payload).code);
        }
      } catch (err) {
        done(`undecodable reply: ${err.message}`);
      }
    });
    sock.on('error', (err) => done(`socket error ${err.code}`));
    sock.on('close', () => done('closed without ERROR'));
  });
}

(async () => {
  let failures = 0;
  const cases = vectors.cases.filter((c) => c.decoder === 'server');
  await Promise.all(
    cases.map(async (c) => {
      const got = await probe(c);
      const ok = got === c.error.code;
      if (!ok) failures++;
      const shown = typeof got === 'number' ? `${codeName(got)} (${got})` : got;
      process.stdout.write(`${ok ? 'ok  ' : 'FAIL'} ${c.name}: expected ${c.error.name}, got ${shown}\n`);
    }),
  );
  process.stdout.write(`${cases.length - failures}/${cases.length} server-side vectors answered as specified\n`);
  process.exit(failures ? 1 : 0);
})();
