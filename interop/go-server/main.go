// Command nsp-server is an NSP version 1 server (spec/PROTOCOL.md), written from spec/ alone.
// Its command line is that of spec Appendix B; run it with --help.
package main

import (
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/signal"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const usageText = `usage: nsp-server --port P [options]

An NSP v1 server (spec/PROTOCOL.md): both variants on one port, on 127.0.0.1.

options:
  --port P                TCP port on 127.0.0.1, 0..65535 (0: the OS chooses); required
  --mode M                both (default), stateless or stateful; the other mode gets
                          UNSUPPORTED_MODE
  --interval S            seconds between numbers, 0..86400 (default 1; 0 = as fast as the
                          connection accepts); announced in WELCOME and paced in milliseconds
  --session-ttl S         seconds a disconnected stateful session is kept, 0..86400
                          (default 30; below 30 for tests only)
  --store URL             memory:// (default; this process only; no other spelling) or
                          redis://HOST[:PORT][/DB][?prefix=P&db=DB] (spec/STORE-REDIS.md,
                          shareable between servers; port 6379, db 0, prefix nsp:v1: by
                          default; a db=DB parameter wins over /DB)
  --handshake-timeout S   seconds to wait for a complete HELLO, 0.001..86400 (default 5)
  --max-connections N     connections open at once, 1..2147483647 (default 1024); beyond it
                          SERVER_BUSY
  --log-level L           debug, info (default), warning or error; logs go to stderr:
                          at info one line per connection event (accepted, HELLO, session
                          new or resumed, refused and why, ended and why, with the duration),
                          at debug also one per frame; at most 20 lines/s of each kind after
                          a burst of 50, then a line saying how many were suppressed
                          (store warnings too, as one kind)
  --log-format F          text (default) or json: every stderr line (start-up errors too) one
                          JSON object with time (seconds since the epoch), level, logger,
                          message and the event's fields; text from the peer is escaped
                          either way
  -h, --help              this help

Seconds are decimals or exponent notation (0.01, .5, 1e-05: spec §13.1), converted exactly to
whole milliseconds, ties rounded up (0.0025 is 3 ms).
SIGINT or SIGTERM: ERROR SHUTTING_DOWN on open connections, sessions released, exit 0
(also while the store is still being opened).
Exit status: 0 after a clean shutdown, 1 when the port or the store cannot be opened
(any unusable --store value), 2 for a usage error.
`

// Options is the parsed command line.
type Options struct {
	Port     int
	Store    string
	LogLevel int
	LogJSON  bool
	Config   Config
}

// usageError is a bad command line: one line on stderr, exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

var errHelp = errors.New("help requested")

// maxDurationMs is MAX_DURATION_MS of spec §13.1: no duration exceeds one day.
const maxDurationMs = 86_400_000

var (
	// The grammar of §13.1: DIGITS ["." [DIGITS]] [EXP] or "." DIGITS [EXP]; ASCII only.
	durationRe = regexp.MustCompile(`^(?:([0-9]+)(?:\.([0-9]*))?|\.([0-9]+))(?:[eE]([+-]?[0-9]+))?$`)
	integerRe  = regexp.MustCompile(`^[0-9]+$`)
)

// durationMs converts seconds written as text to whole milliseconds by the rule of §13.1: the
// exact decimal value times 1000, rounded to the nearest integer, ties up. ok is false when the
// text is not the grammar; a value beyond maxDurationMs comes back as maxDurationMs+1.
func durationMs(s string) (ms int64, ok bool) {
	m := durationRe.FindStringSubmatch(s)
	if m == nil {
		return 0, false
	}
	digits, frac := m[1]+m[2], m[2]
	if m[1] == "" {
		digits, frac = m[3], m[3]
	}
	exp := int64(0)
	if m[4] != "" {
		e, err := strconv.ParseInt(m[4], 10, 64)
		if err != nil { // an exponent beyond int64: a huge or a vanishing value
			if strings.HasPrefix(m[4], "-") {
				e = -1 << 40
			} else {
				e = 1 << 40
			}
		}
		exp = e
	}
	digits = strings.TrimLeft(digits, "0")
	if digits == "" {
		return 0, true
	}
	// value = digits × 10^(exp − len(frac)) seconds; in milliseconds, 10^(exp − len(frac) + 3).
	scale := exp - int64(len(frac)) + 3
	magnitude := int64(len(digits)) + scale // value < 10^magnitude ms
	if magnitude > 12 {
		return maxDurationMs + 1, true
	}
	if magnitude < -1 { // below 0.01 ms: rounds to 0
		return 0, true
	}
	v, _ := new(big.Int).SetString(digits, 10)
	ten := big.NewInt(10)
	if scale >= 0 {
		v.Mul(v, new(big.Int).Exp(ten, big.NewInt(scale), nil))
		return v.Int64(), true
	}
	den := new(big.Int).Exp(ten, big.NewInt(-scale), nil)
	// floor(v/den + 1/2) = floor((2v + den) / 2den): ties up.
	num := new(big.Int).Add(new(big.Int).Lsh(v, 1), den)
	q := new(big.Int).Quo(num, new(big.Int).Lsh(den, 1))
	if q.Cmp(big.NewInt(maxDurationMs)) > 0 {
		return maxDurationMs + 1, true
	}
	return q.Int64(), true
}

// parseDuration checks a seconds option against [minMs, 86,400,000] ms.
func parseDuration(opt, s string, minMs int64) (int64, error) {
	allowed := fmt.Sprintf("seconds, %s to 86400 (%d to 86400000 ms), e.g. 0.5 or 1e-05", strconv.FormatFloat(float64(minMs)/1000, 'f', -1, 64), minMs)
	ms, ok := durationMs(s)
	if !ok {
		return 0, &usageError{fmt.Sprintf("%s: %q is not a number of seconds; allowed: %s", opt, s, allowed)}
	}
	if ms < minMs || ms > maxDurationMs {
		return 0, &usageError{fmt.Sprintf("%s: %q is out of range; allowed: %s", opt, s, allowed)}
	}
	return ms, nil
}

// parseInt checks an option of ASCII decimal digits against [lo, hi].
func parseInt(opt, s string, lo, hi int64) (int64, error) {
	allowed := fmt.Sprintf("an integer from %d to %d", lo, hi)
	if !integerRe.MatchString(s) {
		return 0, &usageError{fmt.Sprintf("%s: %q is not an integer; allowed: %s", opt, s, allowed)}
	}
	v, _ := new(big.Int).SetString(s, 10)
	if v.Cmp(big.NewInt(lo)) < 0 || v.Cmp(big.NewInt(hi)) > 0 {
		return 0, &usageError{fmt.Sprintf("%s: %q is out of range; allowed: %s", opt, s, allowed)}
	}
	return v.Int64(), nil
}

// parseArgs reads the command line of Appendix B. Every value is checked here, before anything
// is opened.
func parseArgs(args []string) (*Options, error) {
	o := &Options{Store: "memory://", LogLevel: levelInfo}
	cfg := &o.Config
	cfg.ServeStateless, cfg.ServeStateful = true, true
	cfg.Interval, cfg.IntervalMs = time.Second, 1000
	cfg.SessionTTLMs = 30000
	cfg.HandshakeTimeout = 5 * time.Second
	cfg.MaxConnections = 1024
	cfg.WriteStall = 10 * time.Second
	cfg.RefreshPeriod = time.Second
	cfg.ShutdownGrace = 2 * time.Second
	seen := map[string]bool{}
	for i := 0; i < len(args); i++ {
		arg := args[i]
		if arg == "-h" || arg == "--help" {
			return nil, errHelp
		}
		name, value, hasValue := strings.Cut(arg, "=")
		switch name {
		case "--port", "--mode", "--interval", "--session-ttl", "--store", "--handshake-timeout",
			"--max-connections", "--log-level", "--log-format":
		default:
			return nil, &usageError{fmt.Sprintf("unknown option %q (see --help)", arg)}
		}
		if !hasValue {
			if i+1 >= len(args) {
				return nil, &usageError{fmt.Sprintf("%s needs a value (see --help)", name)}
			}
			i++
			value = args[i]
		}
		seen[name] = true
		var err error
		switch name {
		case "--port":
			var p int64
			p, err = parseInt(name, value, 0, 65535)
			o.Port = int(p)
		case "--mode":
			switch value {
			case "both":
				cfg.ServeStateless, cfg.ServeStateful = true, true
			case "stateless":
				cfg.ServeStateless, cfg.ServeStateful = true, false
			case "stateful":
				cfg.ServeStateless, cfg.ServeStateful = false, true
			default:
				err = &usageError{fmt.Sprintf("%s: %q is not a mode; allowed: both, stateless, stateful", name, value)}
			}
		case "--interval":
			var ms int64
			ms, err = parseDuration(name, value, 0)
			cfg.IntervalMs = uint32(ms)
			cfg.Interval = time.Duration(ms) * time.Millisecond // §13: pace by what is announced
		case "--session-ttl":
			var ms int64
			ms, err = parseDuration(name, value, 0)
			cfg.SessionTTLMs = uint32(ms)
		case "--handshake-timeout":
			var ms int64
			ms, err = parseDuration(name, value, 1)
			cfg.HandshakeTimeout = time.Duration(ms) * time.Millisecond
		case "--max-connections":
			var m int64
			m, err = parseInt(name, value, 1, 1<<31-1)
			cfg.MaxConnections = int(m)
		case "--log-level":
			levels := map[string]int{"debug": levelDebug, "info": levelInfo, "warning": levelWarning, "error": levelError}
			lvl, ok := levels[strings.ToLower(value)]
			if !ok {
				err = &usageError{fmt.Sprintf("%s: %q is not a level; allowed: debug, info, warning, error", name, value)}
			}
			o.LogLevel = lvl
		case "--log-format":
			switch value {
			case "text":
				o.LogJSON = false
			case "json":
				o.LogJSON = true
			default:
				err = &usageError{fmt.Sprintf("%s: %q is not a log format; allowed: text, json", name, value)}
			}
		case "--store":
			// Checked when the store is opened: every unusable value is exit status 1 (App. B).
			o.Store = value
		}
		if err != nil {
			return nil, err
		}
	}
	if !seen["--port"] {
		return nil, &usageError{"--port is required (see --help)"}
	}
	return o, nil
}

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	opts, err := parseArgs(args)
	if errors.Is(err, errHelp) {
		fmt.Print(usageText)
		return 0
	}
	if err != nil {
		NewLogger(levelError, jsonRequested(args)).StartupError(err.Error())
		return 2
	}
	log := NewLogger(opts.LogLevel, opts.LogJSON)
	cfg := opts.Config
	// Signals are handled from here on: one that arrives while the store is still being
	// opened (a frozen Redis) ends the run cleanly too, exit 0 as Appendix B says.
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	if cfg.SessionTTLMs < 30000 {
		log.Warnf("--session-ttl below 30 s: for tests only (spec §16.4)")
	}

	var store Store
	switch {
	case opts.Store == "memory://": // the one spelling (App. B); memory:, memory://x are refused
		store = newMemoryStore(nil)
	case strings.HasPrefix(opts.Store, "redis://"):
		type opened struct {
			store *redisStore
			err   error
		}
		result := make(chan opened, 1)
		log.Debugf("opening session store %s", redactStore(opts.Store))
		go func() {
			rs, err := openRedisStore(opts.Store, cfg.MaxConnections)
			result <- opened{rs, err}
		}()
		var got opened
		select {
		case sig := <-signals:
			log.Infof("%v while opening the store: exiting", sig)
			return 0
		case got = <-result:
		}
		if got.err != nil {
			log.StartupError(fmt.Sprintf("cannot open the store %q: %v", redactStore(opts.Store), got.err))
			return 1
		}
		store = got.store
	default:
		log.StartupError(fmt.Sprintf("cannot open the store %q: not memory:// or redis://HOST:PORT/DB[?prefix=P]", redactStore(opts.Store)))
		return 1
	}
	defer store.Close()

	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(opts.Port)))
	if err != nil {
		log.StartupError(fmt.Sprintf("cannot listen on 127.0.0.1:%d: %v", opts.Port, err))
		return 1
	}
	srv, err := NewServer(cfg, store, log)
	if err != nil {
		log.StartupError(err.Error())
		return 1
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Infof("listening on %s (mode %s, interval %d ms, session TTL %d ms, store %s)",
		ln.Addr(), modeName(cfg), cfg.IntervalMs, cfg.SessionTTLMs, redactStore(opts.Store))

	status := 0
	select {
	case sig := <-signals:
		log.Infof("%v: shutting down", sig)
	case err := <-served:
		log.Errorf("accept loop stopped: %v", err)
		status = 1
	}
	ln.Close()
	if status == 0 {
		<-served
	}
	go func() { // a second signal while draining: stop at once
		sig := <-signals
		log.Errorf("%v again: exiting without waiting", sig)
		os.Exit(1)
	}()
	srv.Shutdown()
	log.Infof("stopped")
	return status
}

// jsonRequested says whether the command line asks for --log-format json, read as parseArgs
// reads it (the last --log-format wins), so that a usage error is a JSON line when it does.
func jsonRequested(args []string) bool {
	asJSON := false
	for i := 0; i < len(args); i++ {
		name, value, hasValue := strings.Cut(args[i], "=")
		if !strings.HasPrefix(name, "--") || name == "--help" {
			continue
		}
		if !hasValue {
			if i+1 >= len(args) {
				break
			}
			i++
			value = args[i]
		}
		if name == "--log-format" && (value == "json" || value == "text") {
			asJSON = value == "json"
		}
	}
	return asJSON
}

// redactStore is the --store URL as it may be logged: a password in it is shown as xxxxx.
func redactStore(store string) string {
	u, err := url.Parse(store)
	if err != nil || u.User == nil {
		return escapePeer(store)
	}
	return escapePeer(u.Redacted())
}

func modeName(cfg Config) string {
	switch {
	case cfg.ServeStateless && cfg.ServeStateful:
		return "both"
	case cfg.ServeStateless:
		return "stateless"
	default:
		return "stateful"
	}
}
