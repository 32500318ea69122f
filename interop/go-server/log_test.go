package main

// The log (issue 11 point 8): JSON lines, peer text escaped, the per-kind rate limit, and the
// connection life cycle as a server writes it.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"
)

// syncBuffer is an io.Writer the server's goroutines may share with the test.
type syncBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{} // signalled (without blocking) after each write
}

func newSyncBuffer() *syncBuffer { return &syncBuffer{changed: make(chan struct{}, 1)} }

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n, err := b.buf.Write(p)
	select {
	case b.changed <- struct{}{}:
	default:
	}
	return n, err
}

// waitFor returns once text has been written (the event, not a sleep), failing after 20 s.
func (b *syncBuffer) waitFor(t *testing.T, text string) {
	t.Helper()
	deadline := time.NewTimer(20 * time.Second)
	defer deadline.Stop()
	for !strings.Contains(b.String(), text) {
		select {
		case <-b.changed:
		case <-deadline.C:
			t.Fatalf("%q never logged; log:\n%s", text, b.String())
		}
	}
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// jsonLines parses every line as one JSON object (a line that is not is a failure).
func jsonLines(t *testing.T, text string) []map[string]interface{} {
	t.Helper()
	var out []map[string]interface{}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]interface{}
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("not one JSON object: %q: %v", sc.Text(), err)
		}
		for _, k := range []string{"time", "level", "logger", "message"} {
			if _, ok := m[k]; !ok {
				t.Fatalf("line without %q: %q", k, sc.Text())
			}
		}
		out = append(out, m)
	}
	return out
}

// noTerminalControl fails if any byte or character a terminal would act on is in text.
func noTerminalControl(t *testing.T, text string) {
	t.Helper()
	for i, r := range text {
		if r == '\n' {
			continue
		}
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || unicode.Is(unicode.Cf, r) || r == unicode.ReplacementChar && !strings.HasPrefix(text[i:], "\ufffd") {
			t.Fatalf("control character %U at %d in %q", r, i, text)
		}
	}
}

const hostile = "\x1b]0;owned\x07\x1b[2J\nINFO nsp-server: all good\r\u009b31m\u202egnp.exe\xff\xfe\x00"

func TestPeerTextIsEscapedInBothFormats(t *testing.T) {
	for _, asJSON := range []bool{false, true} {
		var out bytes.Buffer
		l := &Logger{level: levelInfo, json: asJSON, out: &out}
		l.Log(levelInfo, "client id "+escapePeer(hostile), field{"client_id", escapePeer(hostile)})
		// Even text that was not escaped first never reaches the output raw.
		l.Log(levelInfo, "raw "+hostile, field{"raw", hostile})
		text := out.String()
		if n := strings.Count(text, "\n"); n != 2 {
			t.Fatalf("json=%v: %d lines, want 2 (a forged line break got through): %q", asJSON, n, text)
		}
		noTerminalControl(t, text)
		if asJSON {
			lines := jsonLines(t, text)
			if got := lines[0]["client_id"]; got != escapePeer(hostile) {
				t.Errorf("client_id field %q, want %q", got, escapePeer(hostile))
			}
		}
	}
	// escapePeer keeps printable text as it is and makes the rest visible.
	if got := escapePeer("abc-é"); got != "abc-é" {
		t.Errorf("printable text changed: %q", got)
	}
	if got := escapePeer("\x1b[2J"); got != `\x1b[2J` {
		t.Errorf("escape shown as %q", got)
	}
}

func TestRateLimitPerKindSaysHowManyWereSuppressed(t *testing.T) {
	var out bytes.Buffer
	now := time.Unix(1000, 0)
	l := &Logger{level: levelInfo, json: true, out: &out, now: func() time.Time { return now }}
	for i := 0; i < 3*int(limitBurst); i++ {
		l.Limited(levelInfo, "accepted", "a flood", field{"event", "accepted"})
	}
	l.Limited(levelInfo, "ended", "another kind", field{"event", "ended"}) // its own bucket
	lines := jsonLines(t, out.String())
	if len(lines) != int(limitBurst)+1 {
		t.Fatalf("%d lines for a burst of %d, want %d", len(lines), 3*int(limitBurst), int(limitBurst)+1)
	}
	if lines[len(lines)-1]["event"] != "ended" {
		t.Fatalf("another kind was suppressed with the flood: %v", lines[len(lines)-1])
	}
	// One second later the bucket holds limitRate tokens: the next line is let through, after a
	// line counting what was suppressed.
	out.Reset()
	now = now.Add(time.Second)
	l.Limited(levelInfo, "accepted", "after the flood", field{"event", "accepted"})
	lines = jsonLines(t, out.String())
	if len(lines) != 2 || lines[0]["event"] != "suppressed" || lines[0]["kind"] != "accepted" ||
		lines[0]["count"] != float64(2*int(limitBurst)) || lines[1]["message"] != "after the flood" {
		t.Fatalf("after a flood of %d: %v", 2*int(limitBurst), lines)
	}
	// FlushSuppressed reports a count even when no later line of the kind comes.
	out.Reset()
	for i := 0; i < 2*int(limitRate); i++ {
		l.Limited(levelInfo, "accepted", "flood again")
	}
	out.Reset()
	l.FlushSuppressed()
	lines = jsonLines(t, out.String())
	// The bucket held limitRate−1 tokens after the line above.
	if len(lines) != 1 || lines[0]["count"] != float64(int(limitRate)+1) {
		t.Fatalf("flush: %v", lines)
	}
	out.Reset()
	l.FlushSuppressed()
	if out.Len() != 0 {
		t.Fatalf("a second flush reported again: %q", out.String())
	}
}

// lifeCycle runs conversations against a server logging JSON at level into a buffer and
// returns the lines, once the server has stopped.
func lifeCycle(t *testing.T, level int, intervalMs uint32, talk func(ts *testServer, log *syncBuffer)) []map[string]interface{} {
	t.Helper()
	buf := newSyncBuffer()
	cfg := testConfig()
	cfg.Interval, cfg.IntervalMs = time.Duration(intervalMs)*time.Millisecond, intervalMs
	ts := serveWith(t, cfg, newMemoryStore(nil), &Logger{level: level, json: true, out: buf})
	talk(ts, buf)
	ts.stop() // every connection goroutine has ended: every "ended" line is written
	return jsonLines(t, buf.String())
}

// readToEOF reads frames until the server closes; it returns their type bytes.
func readToEOF(t *testing.T, c net.Conn) []byte {
	t.Helper()
	var types []byte
	for {
		var head [3]byte
		if _, err := readFull(c, head[:]); err != nil {
			return types
		}
		types = append(types, head[0])
		if _, err := readFull(c, make([]byte, int(head[1])<<8|int(head[2]))); err != nil {
			t.Fatalf("frame body: %v", err)
		}
	}
}

func readFull(c net.Conn, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := c.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func events(lines []map[string]interface{}, conn float64) []map[string]interface{} {
	var got []map[string]interface{}
	for _, l := range lines {
		if l["conn"] == conn {
			got = append(got, l)
		}
	}
	return got
}

func TestServerLogsTheConnectionLifeCycle(t *testing.T) {
	// At 200 ms per number, the first connection is cut long before its FINAL (400 ms); the
	// resume at index 2 gets FINAL at once.
	lines := lifeCycle(t, levelInfo, 200, func(ts *testServer, log *syncBuffer) {
		// 1: a new stateful session, cut after WELCOME.
		c := ts.dial(t)
		_, _ = c.Write(hello(modeStateful, false, 3, 0, 0, testID))
		readFrame(t, c)
		c.Close()
		log.waitFor(t, `"message": "[conn 1] ended`) // before the shutdown could end it
		// 2: refused: SESSION_MISMATCH (n differs).
		c = ts.dial(t)
		_, _ = c.Write(hello(modeStateful, true, 6, 1, 0, testID))
		expectError(t, c, SessionMismatch)
		// 3: resumed at 2, to FINAL.
		c = ts.dial(t)
		_, _ = c.Write(hello(modeStateful, true, 3, 2, 0, testID))
		if types := readToEOF(t, c); !bytes.Equal(types, []byte{typeWelcome, typeFinal}) {
			t.Fatalf("resume: frames %x, want WELCOME, FINAL", types)
		}
		// 4: a HELLO with a hostile client id: refused, escaped.
		c = ts.dial(t)
		_, _ = c.Write(hello(modeStateful, false, 5, 0, 0, hostile[:36]))
		expectError(t, c, InvalidClientID)
	})
	for _, l := range lines {
		if l["event"] == "frame" {
			t.Fatalf("a frame line at info: %v", l)
		}
		noTerminalControl(t, l["message"].(string))
	}
	want := []struct {
		conn   float64
		events []string
		check  func(ls []map[string]interface{}) bool
	}{
		{1, []string{"accepted", "hello", "session", "ended"}, func(ls []map[string]interface{}) bool {
			return ls[1]["resume"] == false && ls[1]["client_id"] == testID && ls[1]["mode"] == "stateful" &&
				ls[2]["state"] == "new" && ls[3]["reason"] == "client_closed" && ls[3]["seconds"] != nil
		}},
		{2, []string{"accepted", "hello", "refused", "ended"}, func(ls []map[string]interface{}) bool {
			return ls[2]["code"] == "SESSION_MISMATCH" && ls[3]["reason"] == "error" && ls[3]["code"] == "SESSION_MISMATCH"
		}},
		{3, []string{"accepted", "hello", "session", "ended"}, func(ls []map[string]interface{}) bool {
			return ls[1]["resume"] == true && ls[2]["state"] == "resumed" && ls[2]["next_index"] == float64(2) &&
				ls[3]["reason"] == "final" && ls[3]["next_index"] == float64(3)
		}},
		{4, []string{"accepted", "refused", "ended"}, func(ls []map[string]interface{}) bool {
			return ls[1]["code"] == "INVALID_CLIENT_ID" && ls[2]["code"] == "INVALID_CLIENT_ID"
		}},
	}
	for _, w := range want {
		ls := events(lines, w.conn)
		var names []string
		for _, l := range ls {
			names = append(names, l["event"].(string))
			if !strings.HasPrefix(l["peer"].(string), "127.0.0.1:") || l["level"] != "info" {
				t.Errorf("conn %v: %v", w.conn, l)
			}
		}
		if strings.Join(names, " ") != strings.Join(w.events, " ") || !w.check(ls) {
			t.Errorf("conn %v: events %v, want %v; lines %v", w.conn, names, w.events, ls)
		}
	}
}

func TestFramesAtDebugOnly(t *testing.T) {
	talk := func(ts *testServer, _ *syncBuffer) {
		c := ts.dial(t)
		_, _ = c.Write(hello(modeStateless, true, 4, 1, 3, ""))
		readToEOF(t, c)
	}
	var frames []string
	for _, l := range lifeCycle(t, levelDebug, 0, talk) {
		if l["event"] == "frame" && l["direction"] == "out" {
			frames = append(frames, l["message"].(string))
		}
	}
	want := []string{
		"[conn 1] -> WELCOME mode=stateless n=4 next_index=1 interval_ms=0 a=3 session_ttl_ms=0",
		"[conn 1] -> DATA index=1 value=6", "[conn 1] -> DATA index=2 value=12", "[conn 1] -> FINAL index=3 value=24",
	}
	if strings.Join(frames, "\n") != strings.Join(want, "\n") {
		t.Errorf("frame lines\n%s\nwant\n%s", strings.Join(frames, "\n"), strings.Join(want, "\n"))
	}
	if got := statelessValueText(255, 65534); got != "255*2^65534" {
		t.Errorf("a long value written as %q", got)
	}
}

// downStore is a store whose every lookup fails, as a Redis that is down.
type downStore struct{ *memoryStore }

func (downStore) Get(string) (*Record, error) { return nil, errors.New("connection refused") }

func TestStoreWarningsAreRateLimitedWithASuppressedCount(t *testing.T) {
	// A store that is down: every stateful HELLO is STORE_UNAVAILABLE and logs a store warning.
	// The clock stands still, so the bucket never refills: limitBurst warnings, then one line
	// (at warning, as the lines it counts) saying how many more were suppressed.
	const hellos = int(limitBurst) + 7
	buf := newSyncBuffer()
	now := time.Unix(1000, 0)
	log := &Logger{level: levelInfo, json: true, out: buf, now: func() time.Time { return now }}
	ts := serveWith(t, testConfig(), downStore{newMemoryStore(nil)}, log)
	for i := 0; i < hellos; i++ {
		c := ts.dial(t)
		_, _ = c.Write(hello(modeStateful, false, 3, 0, 0, testID))
		expectError(t, c, StoreUnavailable)
	}
	ts.stop() // Shutdown flushes the suppressed counts
	var warnings, suppressed []map[string]interface{}
	for _, l := range jsonLines(t, buf.String()) {
		switch {
		case l["event"] == storeKind:
			warnings = append(warnings, l)
		case l["event"] == "suppressed" && l["kind"] == storeKind:
			suppressed = append(suppressed, l)
		}
	}
	if len(warnings) != int(limitBurst) {
		t.Fatalf("%d store warnings for %d failures, want %d", len(warnings), hellos, int(limitBurst))
	}
	w := warnings[0]
	if w["level"] != "warning" || w["op"] != "get" || w["error"] != "connection refused" || w["conn"] == nil ||
		!strings.Contains(w["message"].(string), "store get failed") {
		t.Errorf("store warning %v", w)
	}
	if len(suppressed) != 1 || suppressed[0]["count"] != float64(hellos-int(limitBurst)) ||
		suppressed[0]["level"] != "warning" {
		t.Errorf("suppressed lines %v, want one counting %d", suppressed, hellos-int(limitBurst))
	}
}

func TestStartupErrorsInBothFormats(t *testing.T) {
	var out bytes.Buffer
	(&Logger{level: levelError, out: &out}).StartupError(`cannot listen on 127.0.0.1:1: in use`)
	if got := out.String(); got != "nsp-server: cannot listen on 127.0.0.1:1: in use\n" {
		t.Errorf("text: %q", got)
	}
	out.Reset()
	// Written whatever the level, as the one JSON line it is.
	(&Logger{level: levelError, json: true, out: &out}).StartupError("bad \x1b[2J value")
	lines := jsonLines(t, out.String())
	if len(lines) != 1 || lines[0]["level"] != "error" || lines[0]["event"] != "startup" ||
		lines[0]["message"] != "bad \x1b[2J value" {
		t.Errorf("json: %q", out.String())
	}
	noTerminalControl(t, out.String())
	for args, want := range map[string]bool{
		"--port 1 --log-format json":                   true,
		"--log-format=json --port x":                   true,
		"--port 1":                                     false,
		"--log-format json --log-format text":          false,
		"--log-format xml --port 1":                    false,
		"--store --log-format --port 1":                false, // "--log-format" is --store's value
		"--port 1 --log-format json --interval -1 x y": true,
	} {
		if got := jsonRequested(strings.Fields(args)); got != want {
			t.Errorf("jsonRequested(%s) = %v", args, got)
		}
	}
}
