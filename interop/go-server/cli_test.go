package main

import (
	"strings"
	"testing"
	"time"
)

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
		{[]string{"--port=9000", "--interval", "1e-05"}, func(o *Options) bool {
			return o.Port == 9000 && o.Config.IntervalMs == 0 && o.Config.Interval == 10*time.Microsecond
		}},
		{[]string{"--port", "1", "--interval", "0.0005"}, func(o *Options) bool { return o.Config.IntervalMs == 0 }},
		{[]string{"--port", "1", "--interval", "0.0015"}, func(o *Options) bool { return o.Config.IntervalMs == 2 }},
		{[]string{"--port", "1", "--interval", "4294967.295"}, func(o *Options) bool { return o.Config.IntervalMs == 1<<32-1 }},
		{[]string{"--port", "1", "--session-ttl", "0", "--mode", "stateful"}, func(o *Options) bool {
			return o.Config.SessionTTLMs == 0 && !o.Config.ServeStateless
		}},
		{[]string{"--port", "1", "--store", "redis://127.0.0.1:6379/2"}, func(o *Options) bool { return o.Store == "redis://127.0.0.1:6379/2" }},
		{[]string{"--port", "1", "--store", "memory"}, func(o *Options) bool { return o.Store == "memory://" }},
		{[]string{"--port", "1", "--handshake-timeout", ".5", "--max-connections", "1", "--log-level", "debug"}, func(o *Options) bool {
			return o.Config.HandshakeTimeout == 500*time.Millisecond && o.Config.MaxConnections == 1 && o.LogLevel == levelDebug
		}},
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
		{[]string{"--port", "65536"}, "--port: 65536 is out of range; allowed: an integer from 0 to 65535"},
		{[]string{"--port", "-1"}, "--port: -1 is out of range"},
		{[]string{"--port", "x"}, `--port: "x" is not an integer`},
		{[]string{"--port"}, "--port needs a value"},
		{[]string{"--port", "1", "--interval", "-1"}, "--interval: -1 is out of range; allowed: 0 to 4294967.295"},
		{[]string{"--port", "1", "--interval", "4294967.296"}, "--interval: 4294967.296 is out of range"},
		{[]string{"--port", "1", "--interval", "nan"}, `--interval: "nan" is not a number`},
		{[]string{"--port", "1", "--interval", "1/2"}, `--interval: "1/2" is not a number`},
		{[]string{"--port", "1", "--interval", "0x10"}, `--interval: "0x10" is not a number`},
		{[]string{"--port", "1", "--session-ttl", "1e10"}, "--session-ttl: 1e10 is out of range"},
		{[]string{"--port", "1", "--handshake-timeout", "0"}, "--handshake-timeout: 0 is out of range; allowed: greater than 0"},
		{[]string{"--port", "1", "--max-connections", "0"}, "--max-connections: 0 is out of range; allowed: an integer from 1 to 1000000"},
		{[]string{"--port", "1", "--max-connections", "99999999999999999999"}, "--max-connections: 99999999999999999999 is out of range"},
		{[]string{"--port", "1", "--mode", "all"}, `--mode: "all" is not a mode`},
		{[]string{"--port", "1", "--log-level", "loud"}, `--log-level: "loud" is not a level`},
		{[]string{"--port", "1", "--store", "mysql://x"}, `--store: "mysql://x" is not a store URL`},
		{[]string{"--port", "1", "--store", "redis://h:99999/0"}, "--store: bad port"},
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
}
