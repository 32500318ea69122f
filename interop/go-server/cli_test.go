package main

import (
	"strings"
	"testing"
	"time"
)

// TestCommandLineValueVectors runs spec/vectors/cli_values.json: every duration text and its
// milliseconds (§13.1, ties up), and every server option's accepted and refused texts.
func TestCommandLineValueVectors(t *testing.T) {
	var doc struct {
		MaxDurationMs int64 `json:"max_duration_ms"`
		Durations     []struct {
			Text string
			Ms   *int64
		}
		Options []struct {
			Option   string
			Text     string
			Accepted bool
		}
	}
	loadVectors(t, "cli_values.json", &doc)
	if doc.MaxDurationMs != maxDurationMs {
		t.Fatalf("MAX_DURATION_MS %d, vectors say %d", maxDurationMs, doc.MaxDurationMs)
	}
	for _, d := range doc.Durations {
		ms, ok := durationMs(d.Text)
		switch {
		case d.Ms == nil && ok:
			t.Errorf("%q parsed as %d ms; the grammar refuses it", d.Text, ms)
		case d.Ms != nil && !ok:
			t.Errorf("%q refused; it is %d ms", d.Text, *d.Ms)
		case d.Ms != nil && *d.Ms <= maxDurationMs && ms != *d.Ms:
			t.Errorf("%q is %d ms, want %d", d.Text, ms, *d.Ms)
		case d.Ms != nil && *d.Ms > maxDurationMs && ms <= maxDurationMs:
			t.Errorf("%q is %d ms, want beyond the maximum (%d)", d.Text, ms, *d.Ms)
		}
	}
	count := 0
	for _, o := range doc.Options {
		if !strings.HasPrefix(o.Option, "server ") {
			continue
		}
		name := strings.TrimPrefix(o.Option, "server ")
		count++
		_, err := parseArgs([]string{"--port", "1", name, o.Text})
		if o.Accepted && err != nil {
			t.Errorf("%s %q refused: %v", name, o.Text, err)
		}
		if !o.Accepted {
			ue, ok := err.(*usageError)
			if !ok || !strings.HasPrefix(ue.msg, name+": ") || !strings.Contains(ue.msg, "allowed") ||
				strings.Contains(ue.msg, "\n") {
				t.Errorf("%s %q: %v, want a one-line usage error naming option and range", name, o.Text, err)
			}
		}
	}
	if count < 100 {
		t.Fatalf("only %d server option vectors", count)
	}
}

func TestCommandLine(t *testing.T) {
	ok := []struct {
		args  []string
		check func(o *Options) bool
	}{
		{[]string{"--port", "0"}, func(o *Options) bool {
			c := o.Config
			return o.Port == 0 && c.IntervalMs == 1000 && c.Interval == time.Second && c.SessionTTLMs == 30000 &&
				c.HandshakeTimeout == 5*time.Second && c.MaxConnections == 1024 && c.ServeStateful && c.ServeStateless &&
				o.Store == "memory://"
		}},
		// Pacing follows the announced milliseconds (§13): 1e-05 s is 0 ms, so no pause at all.
		{[]string{"--port=9000", "--interval", "1e-05"}, func(o *Options) bool {
			return o.Port == 9000 && o.Config.IntervalMs == 0 && o.Config.Interval == 0
		}},
		{[]string{"--port", "1", "--interval", "0.0025"}, func(o *Options) bool {
			return o.Config.IntervalMs == 3 && o.Config.Interval == 3*time.Millisecond
		}},
		{[]string{"--port", "1", "--interval", "86400"}, func(o *Options) bool { return o.Config.IntervalMs == 86400000 }},
		{[]string{"--port", "1", "--session-ttl", "0", "--mode", "stateful"}, func(o *Options) bool {
			return o.Config.SessionTTLMs == 0 && !o.Config.ServeStateless
		}},
		{[]string{"--port", "1", "--store", "redis://127.0.0.1:6379/2?prefix=t%3Ax%3A"}, func(o *Options) bool {
			t, err := parseRedisURL(o.Store)
			return err == nil && t.prefix == "t:x:" && t.db == 2 && t.addr == "127.0.0.1:6379"
		}},
		{[]string{"--port", "1", "--store", "redis://localhost"}, func(o *Options) bool {
			t, err := parseRedisURL(o.Store)
			return err == nil && t.prefix == "nsp:v1:" && t.db == 0 && t.addr == "localhost:6379"
		}},
		{[]string{"--port", "1", "--store", "mysql://x"}, func(o *Options) bool { return o.Store == "mysql://x" }}, // exit 1 at open
		{[]string{"--port", "1", "--handshake-timeout", ".5", "--max-connections", "007", "--log-level", "debug"}, func(o *Options) bool {
			return o.Config.HandshakeTimeout == 500*time.Millisecond && o.Config.MaxConnections == 7 && o.LogLevel == levelDebug
		}},
		{[]string{"--port", "1", "--log-format", "json"}, func(o *Options) bool { return o.LogJSON && o.LogLevel == levelInfo }},
		{[]string{"--port", "1", "--log-format=text"}, func(o *Options) bool { return !o.LogJSON }},
		{[]string{"--port", "1"}, func(o *Options) bool { return !o.LogJSON }}, // text by default
	}
	for _, c := range ok {
		o, err := parseArgs(c.args)
		if err != nil || !c.check(o) {
			t.Errorf("%v: %+v %v", c.args, o, err)
		}
	}
	bad := []struct {
		args []string
		want string // the message names the option and the allowed range
	}{
		{[]string{}, "--port is required"},
		{[]string{"--port", "65536"}, `--port: "65536" is out of range; allowed: an integer from 0 to 65535`},
		{[]string{"--port", "-1"}, `--port: "-1" is not an integer`},
		{[]string{"--port"}, "--port needs a value"},
		{[]string{"--port", "1", "--interval", "86401"}, `--interval: "86401" is out of range; allowed: seconds, 0 to 86400`},
		{[]string{"--port", "1", "--handshake-timeout", "0.0004"}, `--handshake-timeout: "0.0004" is out of range; allowed: seconds, 0.001 to 86400`},
		{[]string{"--port", "1", "--max-connections", "2147483648"}, `--max-connections: "2147483648" is out of range; allowed: an integer from 1 to 2147483647`},
		{[]string{"--port", "1", "--mode", "all"}, `--mode: "all" is not a mode`},
		{[]string{"--port", "1", "--log-level", "loud"}, `--log-level: "loud" is not a level`},
		{[]string{"--port", "1", "--log-format", "xml"}, `--log-format: "xml" is not a log format; allowed: text, json`},
		{[]string{"--port", "1", "--log-format", "JSON "}, `--log-format: "JSON " is not a log format; allowed: text, json`},
		{[]string{"--port", "1", "--log-format"}, "--log-format needs a value"},
		{[]string{"--port", "1", "--bogus"}, `unknown option "--bogus"`},
	}
	for _, c := range bad {
		_, err := parseArgs(c.args)
		ue, isUsage := err.(*usageError)
		if !isUsage || !strings.HasPrefix(ue.msg, c.want) || strings.Contains(ue.msg, "\n") {
			t.Errorf("%v: %v, want a usage error starting %q", c.args, err, c.want)
		}
	}
	if _, err := parseArgs([]string{"--help"}); err != errHelp {
		t.Errorf("--help: %v", err)
	}
	// Appendix B (1.2): the path is empty, "/" or "/DB"; one db=DB wins over it; DB is ASCII
	// decimal digits; anything else is refused.
	for raw, db := range map[string]int{
		"redis://h": 0, "redis://h/": 0, "redis://h/0": 0, "redis://h/15": 15, "redis://h/007": 7,
		"redis://h/0?db=3": 3, "redis://h/2?prefix=p&db=5": 5, "redis://h?db=4": 4,
	} {
		if got, err := parseRedisURL(raw); err != nil || got.db != db {
			t.Errorf("%s: %+v %v, want database %d", raw, got, err, db)
		}
	}
	for _, bad := range []string{
		"redis://h:99999/0", "redis://h/x", "redis:///0", "redis://h/abc", "redis://h/-1", "redis://h/1x",
		"redis://h/0/x", "redis://h/+1", "redis://h/%31", "redis://h/0?db=", "redis://h/0?db=x", "redis://h/0?db=-1",
		"redis://h/0?db=1&db=2", "redis://h/0?prefix=a&prefix=b", "redis://h/9999999999",
	} {
		if _, err := parseRedisURL(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

func TestStoreURLIsLoggedWithoutItsPassword(t *testing.T) {
	for in, want := range map[string]string{
		"redis://user:s3cret@127.0.0.1:6379/0": "redis://user:xxxxx@127.0.0.1:6379/0",
		"redis://127.0.0.1/2?prefix=p":         "redis://127.0.0.1/2?prefix=p",
		"memory://":                            "memory://",
	} {
		if got := redactStore(in); got != want {
			t.Errorf("%s logged as %s, want %s", in, got, want)
		}
	}
}
