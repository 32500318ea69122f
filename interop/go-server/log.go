package main

// Logging on stderr: levelled lines as text or as one JSON object per line, connection life-cycle
// lines rate-limited per kind, and every string from the peer escaped (issue 11 point 8).

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

const (
	levelDebug = iota
	levelInfo
	levelWarning
	levelError
)

var levelNames = [...]string{"debug", "info", "warning", "error"}

// logLogger is the "logger" of every JSON line (the component that wrote it).
const logLogger = "nsp-server"

// Rate limits (token buckets, one per kind of connection line): a flood of connections costs at
// most about limitRate lines per second per kind after a burst of limitBurst, plus one line per
// kind and period saying how many were suppressed. Frame lines (debug) have their own, larger
// bucket. Store warnings (kind storeKind) are limited like connection lines: a store that is
// down fails once per connection and per refresh period.
const (
	limitRate       = 20.0
	limitBurst      = 50.0
	frameLimitRate  = 200.0
	frameLimitBurst = 500.0
)

// storeKind is the rate-limit kind (and the "event") of the warnings about a failed store
// operation.
const storeKind = "store"

// field is one key and value of a log line; values are strings, integers, floats, booleans or
// nil (JSON null). Strings from the peer must have been through escapePeer.
type field struct {
	key string
	val interface{}
}

// bucket is a token bucket for one kind of line.
type bucket struct {
	tokens     float64
	last       time.Time
	suppressed int
}

// Logger writes levelled lines on stderr (or out, in tests). The zero value logs at debug in
// text on stderr; set level and json before use. Safe for concurrent use.
type Logger struct {
	level int
	json  bool
	out   io.Writer        // nil: os.Stderr
	now   func() time.Time // nil: time.Now

	mu      sync.Mutex
	buckets map[string]*bucket
}

// NewLogger returns a logger at level (levelDebug … levelError), JSON lines when asJSON.
func NewLogger(level int, asJSON bool) *Logger {
	return &Logger{level: level, json: asJSON}
}

// Enabled says whether a line at level would be written; callers decide once (per connection)
// whether to build debug lines at all.
func (l *Logger) Enabled(level int) bool { return level >= l.level }

func (l *Logger) clock() time.Time {
	if l.now != nil {
		return l.now()
	}
	return time.Now()
}

// Log writes one line with its fields; nothing is formatted when level is below the logger's.
func (l *Logger) Log(level int, msg string, fields ...field) {
	if level < l.level {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.write(l.clock(), level, msg, fields)
}

// Limited writes a line of the given kind unless that kind's bucket is empty; the first line
// let through after some were suppressed is preceded by a line saying how many.
func (l *Logger) Limited(level int, kind string, msg string, fields ...field) {
	if level < l.level {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.clock()
	b := l.take(kind, now)
	if b == nil {
		return
	}
	if b.suppressed > 0 {
		l.reportSuppressed(now, level, kind, b)
	}
	l.write(now, level, msg, fields)
}

// FlushSuppressed reports every kind with suppressed lines (called once a second and at exit),
// so that the count appears even when the flood has stopped.
func (l *Logger) FlushSuppressed() {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.clock()
	kinds := make([]string, 0, len(l.buckets))
	for k, b := range l.buckets {
		if b.suppressed > 0 {
			kinds = append(kinds, k)
		}
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		l.reportSuppressed(now, kindLevel(k), k, l.buckets[k])
	}
}

// kindLevel is the level of a kind's lines, at which its "suppressed" line is written too.
func kindLevel(kind string) int {
	switch kind {
	case "frame":
		return levelDebug
	case storeKind:
		return levelWarning
	}
	return levelInfo
}

func (l *Logger) reportSuppressed(now time.Time, level int, kind string, b *bucket) {
	rate := limitRate
	if kind == "frame" {
		rate = frameLimitRate
	}
	l.write(now, level, fmt.Sprintf("%d %q lines suppressed (over %g lines/s)", b.suppressed, kind, rate),
		[]field{{"event", "suppressed"}, {"kind", kind}, {"count", b.suppressed}})
	b.suppressed = 0
}

// take spends one token of kind's bucket; nil (and the line counted as suppressed) when empty.
// Called with l.mu held.
func (l *Logger) take(kind string, now time.Time) *bucket {
	rate, burst := limitRate, limitBurst
	if kind == "frame" {
		rate, burst = frameLimitRate, frameLimitBurst
	}
	if l.buckets == nil {
		l.buckets = make(map[string]*bucket)
	}
	b := l.buckets[kind]
	if b == nil {
		b = &bucket{tokens: burst, last: now}
		l.buckets[kind] = b
	}
	if dt := now.Sub(b.last).Seconds(); dt > 0 {
		b.tokens += dt * rate
		if b.tokens > burst {
			b.tokens = burst
		}
	}
	b.last = now
	if b.tokens < 1 {
		b.suppressed++
		return nil
	}
	b.tokens--
	return b
}

// write formats and writes one line. Called with l.mu held.
func (l *Logger) write(now time.Time, level int, msg string, fields []field) {
	var line []byte
	if l.json {
		line = appendJSONLine(nil, now, level, msg, fields)
	} else {
		line = append(line, now.Format("2006-01-02 15:04:05.000")...)
		line = append(line, ' ')
		line = append(line, strings.ToUpper(levelNames[level])...)
		line = append(line, ' ')
		line = append(line, logLogger...)
		line = append(line, ": "...)
		// Our own messages hold no control characters, and peer text has been escaped: this
		// escapes anything that slipped through all the same, so none reaches a terminal.
		line = append(line, escapeControls(msg)...)
		line = append(line, '\n')
	}
	w := l.out
	if w == nil {
		w = os.Stderr
	}
	_, _ = w.Write(line)
}

// appendJSONLine appends {"time": seconds since the epoch, "level", "logger", "message", fields…}.
func appendJSONLine(dst []byte, now time.Time, level int, msg string, fields []field) []byte {
	dst = append(dst, `{"time": `...)
	dst = strconv.AppendFloat(dst, float64(now.UnixMicro())/1e6, 'f', 6, 64)
	dst = append(dst, `, "level": "`...)
	dst = append(dst, levelNames[level]...)
	dst = append(dst, `", "logger": "`+logLogger+`", "message": `...)
	dst = appendJSONString(dst, msg)
	for _, f := range fields {
		dst = append(dst, ", "...)
		dst = appendJSONString(dst, f.key)
		dst = append(dst, ": "...)
		switch v := f.val.(type) {
		case string:
			dst = appendJSONString(dst, v)
		default:
			b, err := json.Marshal(v)
			if err != nil {
				b = []byte("null")
			}
			dst = append(dst, b...)
		}
	}
	return append(dst, "}\n"...)
}

// appendJSONString appends s as a JSON string in which every character that is not printable
// (C0 and C1 controls, DEL, format characters, invalid UTF-8) is a \u escape.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == '"' || r == '\\':
			dst = append(dst, '\\', byte(r))
		case r == utf8.RuneError && size == 1:
			dst = append(dst, `\ufffd`...)
		case r < 0x80 && r >= 0x20 && r != 0x7f:
			dst = append(dst, byte(r))
		case r >= 0x80 && strconv.IsPrint(r):
			dst = append(dst, s[i:i+size]...)
		case r > 0xffff:
			r1, r2 := utf16Pair(r)
			dst = append(dst, fmt.Sprintf(`\u%04x\u%04x`, r1, r2)...)
		default:
			dst = append(dst, fmt.Sprintf(`\u%04x`, r)...)
		}
		i += size
	}
	return append(dst, '"')
}

func utf16Pair(r rune) (rune, rune) {
	r -= 0x10000
	return 0xd800 + (r>>10)&0x3ff, 0xdc00 + r&0x3ff
}

// escapePeer shows a string that came from the peer (or from anywhere outside this process)
// safely: printable characters as they are, everything else (terminal control sequences, line
// breaks, format characters, invalid UTF-8) as Go escapes; backslashes and quotes are escaped
// too, so that an escape in the text cannot pass for one of ours.
func escapePeer(s string) string {
	q := strconv.Quote(s)
	return q[1 : len(q)-1]
}

// escapeControls escapes only what is not printable, leaving quotes and backslashes as they are
// (for our own messages, in which peer text is already escaped).
func escapeControls(s string) string {
	clean := true
	for _, r := range s {
		if !strconv.IsPrint(r) || r == utf8.RuneError {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			fmt.Fprintf(&b, `\x%02x`, s[i])
		} else if strconv.IsPrint(r) {
			b.WriteString(s[i : i+size])
		} else {
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		}
		i += size
	}
	return b.String()
}

// StoreWarning writes a warning about a store operation that failed (op: "get", "complete",
// "release", "refresh" …), rate-limited as kind storeKind with the "suppressed N" line of the
// connection log. msg is the whole message; the JSON line also has the event, op and error.
func (l *Logger) StoreWarning(op string, err error, msg string, fields ...field) {
	all := make([]field, 0, 3+len(fields))
	all = append(all, field{"event", storeKind}, field{"op", op}, field{"error", err.Error()})
	l.Limited(levelWarning, storeKind, msg, append(all, fields...)...)
}

// StartupError writes why the server does not start (a usage error, a store or port that cannot
// be opened): "nsp-server: msg" in text, as a command line's error line, or an error line of the
// JSON log (event "startup") with --log-format json. Written whatever the level.
func (l *Logger) StartupError(msg string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.json {
		l.write(l.clock(), levelError, msg, []field{{"event", "startup"}})
		return
	}
	w := l.out
	if w == nil {
		w = os.Stderr
	}
	_, _ = w.Write([]byte(logLogger + ": " + escapeControls(msg) + "\n"))
}

// Printf-style helpers for the server-wide lines (not rate-limited: they are not per
// connection; the store warnings are, through StoreWarning).
func (l *Logger) Debugf(f string, a ...interface{}) { l.logf(levelDebug, f, a...) }
func (l *Logger) Infof(f string, a ...interface{})  { l.logf(levelInfo, f, a...) }
func (l *Logger) Warnf(f string, a ...interface{})  { l.logf(levelWarning, f, a...) }
func (l *Logger) Errorf(f string, a ...interface{}) { l.logf(levelError, f, a...) }

func (l *Logger) logf(level int, format string, args ...interface{}) {
	if level < l.level {
		return
	}
	l.Log(level, fmt.Sprintf(format, args...))
}

// The connection life cycle (issue 11 point 8): at info, rate-limited per kind, "accepted",
// "hello", "session" (new, resumed or reopened, with the next index), "refused" (the ERROR sent
// before WELCOME) and "ended" (why, with the duration); at debug, one "frame" line per frame
// (WELCOME, DATA, FINAL, ERROR), built only when the connection was accepted with debug on.

// info writes a life-cycle line of kind (its "event") for this connection.
func (cn *connection) info(kind, msg string, fields ...field) {
	all := make([]field, 0, 3+len(fields))
	all = append(all, field{"conn", cn.id}, field{"peer", cn.peer}, field{"event", kind})
	cn.s.log.Limited(levelInfo, kind, fmt.Sprintf("[conn %d] %s", cn.id, msg), append(all, fields...)...)
}

// frame writes a debug line for a frame sent; only called when cn.debug.
func (cn *connection) frame(name, detail string, fields ...field) {
	all := make([]field, 0, 5+len(fields))
	all = append(all, field{"conn", cn.id}, field{"peer", cn.peer}, field{"event", "frame"},
		field{"direction", "out"}, field{"frame", name})
	cn.s.log.Limited(levelDebug, "frame", fmt.Sprintf("[conn %d] -> %s %s", cn.id, name, detail), append(all, fields...)...)
}

// frameNumber writes the debug line of DATA (or FINAL, with its checksum in hex for stateful).
func (cn *connection) frameNumber(index uint32, final bool, value, checksum string) {
	if !final {
		cn.frame("DATA", fmt.Sprintf("index=%d value=%s", index, value), field{"index", index}, field{"value", value})
		return
	}
	detail := fmt.Sprintf("index=%d value=%s", index, value)
	fields := []field{{"index", index}, {"value", value}}
	if checksum != "" {
		detail += " checksum=" + checksum
		fields = append(fields, field{"checksum", checksum})
	}
	cn.frame("FINAL", detail, fields...)
}

// statelessValueText is a·2^index in decimal, or written as a product when it would be long.
func statelessValueText(a uint32, index uint32) string {
	if index <= 55 {
		return strconv.FormatUint(uint64(a)<<index, 10)
	}
	return fmt.Sprintf("%d*2^%d", a, index)
}

func modeWord(mode uint8) string {
	switch mode {
	case modeStateless:
		return "stateless"
	case modeStateful:
		return "stateful"
	}
	return strconv.Itoa(int(mode))
}

// logHello writes the HELLO summary (info) and, at debug, the frame received.
func (cn *connection) logHello(h *Hello) {
	what := "new stream"
	if h.Resume {
		what = fmt.Sprintf("resume from index %d", h.NextIndex)
	}
	var who string
	var clientID interface{}
	if h.Mode == modeStateful {
		id := escapePeer(h.ClientID)
		who, clientID = ", client id "+id, id
	} else if h.Resume {
		who = fmt.Sprintf(", a=%d", h.A)
	}
	cn.info("hello", fmt.Sprintf("HELLO %s n=%d %s%s", modeWord(h.Mode), h.N, what, who),
		field{"mode", modeWord(h.Mode)}, field{"n", h.N}, field{"resume", h.Resume},
		field{"next_index", h.NextIndex}, field{"client_id", clientID})
	if cn.debug {
		cn.s.log.Limited(levelDebug, "frame", fmt.Sprintf("[conn %d] <- HELLO mode=%s resume=%v n=%d next_index=%d a=%d client_id=%q",
			cn.id, modeWord(h.Mode), h.Resume, h.N, h.NextIndex, h.A, escapePeer(h.ClientID)),
			field{"conn", cn.id}, field{"peer", cn.peer}, field{"event", "frame"}, field{"direction", "in"}, field{"frame", "HELLO"})
	}
}

// noteError records the ERROR about to be sent: before WELCOME it is a refusal (logged now);
// either way it is why the connection ends.
func (cn *connection) noteError(code Code, msg string) {
	text := fmt.Sprintf("ERROR %v %q", code, escapePeer(msg))
	if !cn.welcomed {
		cn.info("refused", "refused: "+text, field{"code", code.String()}, field{"error_message", escapePeer(msg)})
	}
	if code == ShuttingDown {
		cn.setEnd("shutdown", "server shutting down ("+text+")")
	} else {
		cn.setEnd("error", text)
	}
	cn.endCode, cn.hasCode = code, true
}

// setEnd records why the connection ends; the first reason given is the one logged.
func (cn *connection) setEnd(why, text string) {
	if cn.endWhy == "" {
		cn.endWhy, cn.endText = why, text
	}
}

// logEnded writes the "ended" line: reason, the ERROR code sent if any, the duration.
func (cn *connection) logEnded() {
	why, text := cn.endWhy, cn.endText
	if why == "" {
		why, text = "closed", "closed"
	}
	secs := time.Since(cn.start).Seconds()
	fields := []field{{"reason", why}, {"seconds", float64(int64(secs*1000+0.5)) / 1000}}
	if cn.hasCode {
		fields = append(fields, field{"code", cn.endCode.String()})
	}
	if cn.welcomed {
		fields = append(fields, field{"next_index", cn.written})
	}
	cn.info("ended", fmt.Sprintf("ended after %.3f s: %s", secs, text), fields...)
}
