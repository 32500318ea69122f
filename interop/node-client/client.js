#!/usr/bin/env node
'use strict';
// NSP v1 client (spec/PROTOCOL.md), Node.js standard library only.
// Results go to stdout (text, or one JSON object with --json); logs to stderr.

const crypto = require('crypto');

const { Mode, isValidClientId } = require('./lib/frames');
const { runStream, Exit } = require('./lib/stream');
const { BACKOFF_DEFAULTS } = require('./lib/backoff');
const { seededRandom, secureRandom, randomInt } = require('./lib/random');
const { MAX_DURATION_MS, secondsToMs } = require('./lib/durations');
const { escapePeerText } = require('./lib/text');

const USAGE = `usage: node client.js --port PORT --mode stateless|stateful [-n N] [options]

  --port PORT             server port, 1..65535 (required)
  --host HOST             server address (default 127.0.0.1)
  --mode MODE             stateless or stateful (required)
  -n N                    numbers to receive, 1..65535; required in stateless mode,
                          stateful default: uniform random (§7.1)
  --client-id UUID        stateful: session id (default: a random v4 UUID); any UUID
                          spelling, sent lower-case canonical; ignored in stateless mode
  --json                  print one JSON result object instead of text
  --events                write JSON progress events to stderr
  --seed N                seed the client's own randomness (jitter, random n)
durations S are seconds, 0.001..86400, in whole milliseconds (PROTOCOL.md §13.1):
  --backoff-initial S     INITIAL_BACKOFF (default ${BACKOFF_DEFAULTS.initial})
  --backoff-max S         MAX_BACKOFF, a cap on every delay (default ${BACKOFF_DEFAULTS.max})
  --max-retries K         attempts without progress before giving up, 1..2147483647 (default ${BACKOFF_DEFAULTS.maxAttemptsWithoutProgress})
  --min-silence S         floor of the silence timeout max(3 x interval, S) (default 2)
  --silence-timeout S     fixed silence timeout, overriding the formula
  --connect-timeout S     connect timeout, and handshake timeout unless given (default 5)
  --handshake-timeout S   WELCOME/ERROR timeout after connecting (default: --connect-timeout)
  --log-level LEVEL       debug, info, warning or error (default info)
  -h, --help              this help

exit status: 0 verified, 1 verification failed, 2 usage error,
             3 rejected by the server, 4 gave up, 130 interrupted (SIGINT),
             143 terminated (SIGTERM)`;

class UsageError extends Error {}

// Issue 11: a value we cannot honour is refused at start-up in one line that names the
// option, the value (escaped: it may hold control characters) and the allowed range.
const refuse = (name, v, range) => new UsageError(`${name} ${escapePeerText(v)}: allowed: ${range}`);

// Appendix A.2, §13.1: a duration is seconds, converted exactly to whole milliseconds
// (ties up), which must be 1..MAX_DURATION_MS; so every timer stays within Node's range.
const seconds = (v, name) => {
  const ms = secondsToMs(v);
  if (ms === null || ms < 1 || ms > MAX_DURATION_MS) {
    throw refuse(name, v, `seconds from 0.001 to ${MAX_DURATION_MS / 1000}, in whole milliseconds (PROTOCOL.md §13.1)`);
  }
  return ms / 1000;
};
// Appendix A.1: ASCII decimal digits only (no sign, prefix, '_' or spaces); leading zeros are fine.
const integer = (lo, hi) => (v, name) => {
  if (!/^[0-9]+$/.test(v) || BigInt(v) < BigInt(lo) || BigInt(v) > BigInt(hi)) {
    throw refuse(name, v, `decimal integer ${lo}..${hi}`);
  }
  return Number(v);
};

/**
 * Appendix A.1: the lower-case canonical form, and (MAY) other spellings of a UUID:
 * upper case, braces, a urn:uuid: prefix, no dashes. Returns the canonical form.
 */
function canonicalUuid(v, name) {
  const m = /^(?:urn:uuid:)?(\{)?([0-9a-f]{8})-?([0-9a-f]{4})-?([0-9a-f]{4})-?([0-9a-f]{4})-?([0-9a-f]{12})(\})?$/i.exec(v);
  const dashes = (v.match(/-/g) || []).length;
  if (!m || Boolean(m[1]) !== Boolean(m[7]) || (dashes !== 0 && dashes !== 4)) {
    throw refuse(name, v, 'a UUID');
  }
  const id = m.slice(2, 7).join('-').toLowerCase();
  if (!isValidClientId(id)) throw refuse(name, v, 'a UUID');
  return id;
}

// name -> [key, parser]; flags have no parser.
const OPTIONS = {
  '--port': ['port', integer(1, 65535)],
  '--host': ['host', (v) => v],
  '--mode': [
    'mode',
    (v, name) => {
      if (v === 'stateless') return Mode.STATELESS;
      if (v === 'stateful') return Mode.STATEFUL;
      throw refuse(name, v, 'stateless or stateful');
    },
  ],
  '-n': ['n', integer(1, 65535)],
  '--client-id': ['clientId', canonicalUuid],
  '--json': ['json'],
  '--events': ['events'],
  '--seed': ['seed', (v, name) => {
    if (!/^-?[0-9]+$/.test(v)) throw refuse(name, v, 'a decimal integer');
    return BigInt(v);
  }],
  '--backoff-initial': ['backoffInitial', seconds],
  '--backoff-max': ['backoffMax', seconds],
  '--max-retries': ['maxRetries', integer(1, 2 ** 31 - 1)],
  '--min-silence': ['minSilence', seconds],
  '--silence-timeout': ['silenceTimeout', seconds],
  '--connect-timeout': ['connectTimeout', seconds],
  '--handshake-timeout': ['handshakeTimeout', seconds],
  '--log-level': [
    'logLevel',
    (v, name) => {
      if (!Object.hasOwn(LEVELS, v)) throw refuse(name, v, Object.keys(LEVELS).join(', '));
      return v;
    },
  ],
};
const LEVELS = { debug: 10, info: 20, warning: 30, error: 40 };

function parseArgs(argv) {
  const opts = {
    host: '127.0.0.1',
    json: false,
    events: false,
    backoffInitial: BACKOFF_DEFAULTS.initial,
    backoffMax: BACKOFF_DEFAULTS.max,
    maxRetries: BACKOFF_DEFAULTS.maxAttemptsWithoutProgress,
    minSilence: 2,
    silenceTimeout: null,
    connectTimeout: 5,
    handshakeTimeout: null, // A.2: --connect-timeout sets both unless this is given
    logLevel: 'info',
  };
  for (let i = 0; i < argv.length; i++) {
    let arg = argv[i];
    if (arg === '-h' || arg === '--help') return null;
    let value;
    const eq = arg.startsWith('--') ? arg.indexOf('=') : -1;
    if (eq > 0) [arg, value] = [arg.slice(0, eq), arg.slice(eq + 1)];
    if (!Object.hasOwn(OPTIONS, arg)) throw new UsageError(`unknown option ${escapePeerText(arg)}`);
    const [key, parse] = OPTIONS[arg];
    if (!parse) {
      if (value !== undefined) throw new UsageError(`${arg} takes no value`);
      opts[key] = true;
      continue;
    }
    if (value === undefined) {
      if (i + 1 >= argv.length) throw new UsageError(`${arg} needs a value`);
      value = argv[++i];
    }
    opts[key] = parse(value, arg);
  }
  if (opts.port === undefined) throw new UsageError('--port is required');
  if (opts.mode === undefined) throw new UsageError('--mode is required');
  if (opts.mode === Mode.STATELESS && opts.n === undefined) throw new UsageError('-n is required in stateless mode');
  opts.handshakeTimeout ??= opts.connectTimeout;
  return opts;
}

function makeLogger(level) {
  const threshold = LEVELS[level];
  const emit = (lvl, label) => (msg) => {
    if (LEVELS[lvl] >= threshold) process.stderr.write(`nsp-client ${label}: ${msg}\n`);
  };
  return { debug: emit('debug', 'debug'), info: emit('info', 'info'), warn: emit('warning', 'warning'), error: emit('error', 'error') };
}

/** Appendix A.3: the text form of the A.4 object. */
function formatText(result) {
  const verdict = result.ok ? 'SUCCESS' : `FAILURE ${result.error}`;
  if (result.mode === 'stateless') return result.ok ? `${result.sum}\n` : `${verdict}\n`;
  return [
    `client_id ${result.client_id}`,
    `checksum_expected ${result.checksum_expected ?? '-'}`,
    `checksum_computed ${result.checksum_computed ?? '-'}`,
    verdict,
  ].join('\n') + '\n';
}

function output(opts, result, exitCode) {
  const text = opts.json ? JSON.stringify(result) + '\n' : formatText(result);
  // Exit only once stdout has taken the whole result (a sum can be ~20 kB). A stdout that
  // cannot be written (§12.4, A.5): a reader that left (EPIPE) leaves the status to tell the
  // outcome; any other error (a full disk) is one line on stderr, a failure keeps its status
  // and a success nobody received is 1.
  process.stdout.on('error', () => {}); // reported to the write's callback below
  process.stdout.write(text, (err) => {
    if (err && err.code !== 'EPIPE') {
      process.stderr.write(`nsp-client: cannot write the result to stdout: ${err.message}\n`);
      if (exitCode === Exit.OK) exitCode = Exit.VERIFY_FAILED;
    }
    process.exit(exitCode);
  });
}

async function main() {
  let finished = false;
  const interrupted = (word, status) => () => {
    if (finished) return; // the result is being written
    // A.3, A.5: status 130 and nothing on stdout after an interrupt; SIGTERM likewise with 143
    // (128 + 15), as the reference client does.
    process.stderr.write(`${word}\n`);
    process.exit(status);
  };
  process.once('SIGINT', interrupted('interrupted', Exit.INTERRUPTED));
  process.once('SIGTERM', interrupted('terminated', Exit.TERMINATED));

  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`nsp-client: ${err.message} (--help for usage)\n`);
    process.exit(Exit.USAGE);
  }
  if (opts === null) {
    process.stdout.write(USAGE + '\n');
    process.exit(Exit.OK);
  }

  const log = makeLogger(opts.logLevel);
  log.debug(`argv: ${process.argv.slice(2).join(' ')}`);
  const events = { emit: opts.events ? (e) => process.stderr.write(JSON.stringify(e) + '\n') : () => {} };
  const random = opts.seed === undefined ? secureRandom : seededRandom(opts.seed);
  if (opts.n === undefined) {
    opts.n = randomInt(random, 1, 65535); // stateful only (§7.1, A.1): drawn unless fixed
    log.info(`drew n = ${opts.n}`);
  }
  if (opts.mode === Mode.STATEFUL) opts.clientId ??= crypto.randomUUID(); // CSPRNG, v4, lower-case
  else if (opts.clientId !== undefined) log.debug('--client-id ignored in stateless mode');

  const { exitCode, result } = await runStream(opts, { log, events, random });
  finished = true;
  output(opts, result, exitCode);
}

if (require.main === module) main();

module.exports = { parseArgs, UsageError };
