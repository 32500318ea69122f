// Command nsp-server is an NSP version 1 server (spec/PROTOCOL.md), written from spec/ alone.
// Its command line is that of spec Appendix B; run it with --help.
package main

import (
	"errors"
	"fmt"
	"math/big"
	"net"
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
  --interval S            seconds between numbers, 0..4294967.295 (default 1; 0 = as fast as
                          the connection accepts); announced in WELCOME in milliseconds
  --session-ttl S         seconds a disconnected stateful session is kept, 0..4294967.295
                          (default 30; below 30 for tests only)
  --store URL             memory:// (default; this process only) or redis://HOST:PORT/DB
                          (spec/STORE-REDIS.md, shareable between servers)
  --handshake-timeout S   seconds to wait for a complete HELLO, >0..4294967.295 (default 5)
  --max-connections N     connections served at once, 1..1000000 (default 1024); beyond it
                          SERVER_BUSY
  --log-level L           debug, info (default), warning or error; logs go to stderr
  -h, --help              this help

Seconds may be written as decimals or with an exponent (0.01, 1e-05).
SIGINT or SIGTERM: ERROR SHUTTING_DOWN on open connections, sessions released, exit 0.
Exit status: 0 after a clean shutdown, 1 when the port or the store cannot be opened,
2 for a usage error.
`

// Options is the parsed command line.
type Options struct {
	Port     int
	Store    string
	LogLevel int
	Config   Config
}

// usageError is a bad command line: one line on stderr, exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

var errHelp = errors.New("help requested")

var (
	decimalRe = regexp.MustCompile(`^-?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$`)
	integerRe = regexp.MustCompile(`^-?[0-9]+$`)
	// u32 milliseconds, the range of interval_ms and session_ttl_ms (§17).
	maxSeconds = new(big.Rat).SetFrac64(1<<32-1, 1000)
)

// parseSeconds parses decimal seconds (%g notation included) in [0 or >0, 4294967.295] and
// returns the exact value's whole milliseconds (rounded half to even) and nanoseconds.
func parseSeconds(opt, s string, positive bool) (uint32, time.Duration, error) {
	allowed := "0 to 4294967.295"
	if positive {
		allowed = "greater than 0, up to 4294967.295"
	}
	r, ok := new(big.Rat), decimalRe.MatchString(s)
	if ok {
		_, ok = r.SetString(s)
	}
	if !ok {
		return 0, 0, &usageError{fmt.Sprintf("%s: %q is not a number of seconds; allowed: %s", opt, s, allowed)}
	}
	if r.Sign() < 0 || positive && r.Sign() == 0 || r.Cmp(maxSeconds) > 0 {
		return 0, 0, &usageError{fmt.Sprintf("%s: %s is out of range; allowed: %s", opt, s, allowed)}
	}
	msec := roundHalfEven(new(big.Rat).Mul(r, big.NewRat(1000, 1)))
	nsec := roundHalfEven(new(big.Rat).Mul(r, big.NewRat(1_000_000_000, 1)))
	if positive && nsec == 0 {
		nsec = 1
	}
	return uint32(msec), time.Duration(nsec), nil
}

func roundHalfEven(r *big.Rat) int64 {
	q, m := new(big.Int).QuoRem(r.Num(), r.Denom(), new(big.Int)) // r ≥ 0: truncation
	twice := new(big.Int).Mul(m, big.NewInt(2))
	switch twice.Cmp(r.Denom()) {
	case 1:
		q.Add(q, big.NewInt(1))
	case 0:
		if q.Bit(0) == 1 {
			q.Add(q, big.NewInt(1))
		}
	}
	return q.Int64()
}

func parseInt(opt, s string, lo, hi int64) (int64, error) {
	allowed := fmt.Sprintf("an integer from %d to %d", lo, hi)
	if !integerRe.MatchString(s) {
		return 0, &usageError{fmt.Sprintf("%s: %q is not an integer; allowed: %s", opt, s, allowed)}
	}
	v, ok := new(big.Int).SetString(s, 10)
	if !ok || v.Cmp(big.NewInt(lo)) < 0 || v.Cmp(big.NewInt(hi)) > 0 {
		return 0, &usageError{fmt.Sprintf("%s: %s is out of range; allowed: %s", opt, s, allowed)}
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
			"--max-connections", "--log-level":
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
			cfg.IntervalMs, cfg.Interval, err = parseSeconds(name, value, false)
		case "--session-ttl":
			cfg.SessionTTLMs, _, err = parseSeconds(name, value, false)
		case "--handshake-timeout":
			_, cfg.HandshakeTimeout, err = parseSeconds(name, value, true)
		case "--max-connections":
			var m int64
			m, err = parseInt(name, value, 1, 1_000_000)
			cfg.MaxConnections = int(m)
		case "--log-level":
			levels := map[string]int{"debug": levelDebug, "info": levelInfo, "warning": levelWarning, "error": levelError}
			lvl, ok := levels[strings.ToLower(value)]
			if !ok {
				err = &usageError{fmt.Sprintf("%s: %q is not a level; allowed: debug, info, warning, error", name, value)}
			}
			o.LogLevel = lvl
		case "--store":
			if value == "memory" || value == "memory://" {
				o.Store = "memory://"
			} else if strings.HasPrefix(value, "redis://") {
				if _, _, _, rerr := redisAddress(value); rerr != nil {
					err = &usageError{fmt.Sprintf("%s: %v; allowed: memory:// or redis://HOST:PORT/DB", name, rerr)}
				}
				o.Store = value
			} else {
				err = &usageError{fmt.Sprintf("%s: %q is not a store URL; allowed: memory:// or redis://HOST:PORT/DB", name, value)}
			}
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
		fmt.Fprintf(os.Stderr, "nsp-server: %v\n", err)
		return 2
	}
	log := &Logger{level: opts.LogLevel}
	cfg := opts.Config
	if cfg.SessionTTLMs < 30000 {
		log.Warnf("--session-ttl below 30 s: for tests only (spec §16.4)")
	}

	var store Store
	if opts.Store == "memory://" {
		store = newMemoryStore(nil)
	} else {
		rs, err := openRedisStore(opts.Store, cfg.MaxConnections)
		if err != nil {
			fmt.Fprintf(os.Stderr, "nsp-server: cannot open the store %s: %v\n", opts.Store, err)
			return 1
		}
		store = rs
	}
	defer store.Close()

	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(opts.Port)))
	if err != nil {
		fmt.Fprintf(os.Stderr, "nsp-server: cannot listen on 127.0.0.1:%d: %v\n", opts.Port, err)
		return 1
	}
	srv, err := NewServer(cfg, store, log)
	if err != nil {
		fmt.Fprintf(os.Stderr, "nsp-server: %v\n", err)
		return 1
	}
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Infof("listening on %s (mode %s, interval %d ms, session TTL %d ms, store %s)",
		ln.Addr(), modeName(cfg), cfg.IntervalMs, cfg.SessionTTLMs, opts.Store)

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
