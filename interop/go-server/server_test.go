package main

// The server over real loopback connections: the conversations of spec/vectors/sessions.json
// byte for byte, and the behaviours of §5.2, §14.2, §16.4, §16.5 and §17.

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

func testConfig() Config {
	return Config{
		ServeStateless: true, ServeStateful: true,
		Interval: 0, IntervalMs: 1000, SessionTTLMs: 30000,
		HandshakeTimeout: 5 * time.Second, MaxConnections: 64,
		WriteStall: 10 * time.Second, RefreshPeriod: time.Second, ShutdownGrace: 2 * time.Second,
	}
}

type testServer struct {
	srv  *Server
	ln   net.Listener
	done chan error
}

// serveWith starts a server with this config, store and logger on a loopback port; the caller
// stops it (ts.stop).
func serveWith(t *testing.T, cfg Config, store Store, log *Logger) *testServer {
	t.Helper()
	srv, err := NewServer(cfg, store, log)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{srv: srv, ln: ln, done: make(chan error, 1)}
	go func() { ts.done <- srv.Serve(ln) }()
	return ts
}

func startServer(t *testing.T, cfg Config, store Store) *testServer {
	t.Helper()
	ts := serveWith(t, cfg, store, &Logger{level: levelError})
	t.Cleanup(ts.stop)
	return ts
}

func (ts *testServer) stop() {
	if ts.ln == nil {
		return
	}
	ts.ln.Close()
	<-ts.done
	ts.srv.Shutdown()
	ts.ln = nil
}

func (ts *testServer) dial(t *testing.T) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", ts.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}

// readFrame reads one whole frame.
func readFrame(t *testing.T, c net.Conn) []byte {
	t.Helper()
	head := make([]byte, 3)
	if _, err := io.ReadFull(c, head); err != nil {
		t.Fatalf("reading a frame header: %v", err)
	}
	frame := make([]byte, 3+int(binary.BigEndian.Uint16(head[1:])))
	copy(frame, head)
	if _, err := io.ReadFull(c, frame[3:]); err != nil {
		t.Fatalf("reading a frame: %v", err)
	}
	return frame
}

func expectError(t *testing.T, c net.Conn, code Code) {
	t.Helper()
	f := readFrame(t, c)
	if f[0] != typeError || Code(binary.BigEndian.Uint16(f[3:5])) != code {
		t.Fatalf("got frame %x, want ERROR %v", f, code)
	}
	if b, err := io.ReadAll(c); err != nil || len(b) != 0 {
		t.Fatalf("after ERROR: %x, %v; want EOF", b, err)
	}
}

func hello(mode byte, resume bool, n, next, a uint32, id string) []byte {
	var p []byte
	flags := byte(0)
	if resume {
		flags = flagResume
	}
	p = append(p, protoVersion, mode, flags)
	p = appendU32(p, n)
	p = appendU32(p, next)
	if mode == modeStateless {
		p = appendU32(p, a)
	} else {
		p = append(p, id...)
	}
	return append(appendHeader(nil, typeHello, len(p)), p...)
}

const testID = "3f2c8a4e-9b1d-4c7e-a5f0-6d8e2b7c1a90"

func TestSessionVectors(t *testing.T) {
	var doc struct {
		Sessions []struct {
			Name       string
			Mode       string
			Parameters struct {
				N    uint32
				A    uint32
				Seed string
			}
			Connections []struct {
				ClientSends []string                     `json:"client_sends"`
				ServerSends []struct{ Type, Hex string } `json:"server_sends"`
				End         string
			}
		}
	}
	loadVectors(t, "sessions.json", &doc)
	for _, sess := range doc.Sessions {
		sess := sess
		t.Run(sess.Name, func(t *testing.T) {
			for _, conn := range sess.Connections {
				for i, f := range conn.ServerSends {
					if f.Type == "FINAL" && i < len(conn.ServerSends)-1 {
						t.Skip("a broken server's bytes after FINAL: a client-side vector (§5.5)")
					}
				}
			}
			// Two servers on one memory store: A paces at one number an hour (so a connection
			// the vector drops never gets further), B at once; both announce 1000 ms.
			store := newMemoryStore(nil)
			defer store.Close()
			slow, fast := testConfig(), testConfig()
			slow.Interval = time.Hour
			a, b := startServer(t, slow, store), startServer(t, fast, store)
			for _, ts := range []*testServer{a, b} {
				if sess.Parameters.Seed != "" {
					seed := mustU64(t, sess.Parameters.Seed)
					ts.srv.newSeed = func() (uint64, error) { return seed, nil }
				}
				pa := sess.Parameters.A
				ts.srv.newA = func() (uint32, error) { return pa, nil }
			}
			for i, conn := range sess.Connections {
				var want []byte
				for _, f := range conn.ServerSends {
					want = append(want, mustHex(t, f.Hex)...)
				}
				dropped := strings.HasPrefix(conn.End, "dropped (")
				ts := b
				if dropped {
					ts = a
				}
				c := ts.dial(t)
				for _, h := range conn.ClientSends {
					if _, err := c.Write(mustHex(t, h)); err != nil {
						t.Fatal(err)
					}
				}
				got := make([]byte, len(want))
				if _, err := io.ReadFull(c, got); err != nil {
					t.Fatalf("connection %d: %v after %x", i, err, got)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("connection %d:\n got %x\nwant %x", i, got, want)
				}
				if dropped {
					c.Close()
					continue
				}
				rest, err := io.ReadAll(c)
				if strings.HasPrefix(conn.End, "dropped while FINAL") && err == nil && len(rest) > 0 && rest[0] == typeFinal {
					continue // the FINAL the vector's client never got: the server did write it
				}
				if err != nil || len(rest) != 0 {
					t.Fatalf("connection %d: after the last frame %x, %v; want EOF", i, rest, err)
				}
			}
			if n, _ := store.Count(); n != 0 && sess.Mode == "stateful" {
				// completed sessions are deleted at once (§16.6); the last connection ended so
				t.Fatalf("%d session(s) left in the store", n)
			}
		})
	}
}

func TestStatelessResumeAtLastIndexSendsOnlyFinal(t *testing.T) {
	ts := startServer(t, testConfig(), newMemoryStore(nil))
	c := ts.dial(t)
	c.Write(hello(modeStateless, true, 65535, 65534, 255, ""))
	w := readFrame(t, c)
	if w[0] != typeWelcome || binary.BigEndian.Uint32(w[10:14]) != 65534 || binary.BigEndian.Uint32(w[18:22]) != 255 {
		t.Fatalf("WELCOME %x", w)
	}
	f := readFrame(t, c)
	want := append([]byte{0x04, 0x20, 0x05, 0x00, 0x00, 0xff, 0xfe, 0x3f, 0xc0}, make([]byte, 8191)...)
	if !bytes.Equal(f, want) {
		t.Fatalf("largest FINAL differs (%d bytes)", len(f))
	}
}

func TestHandshakeTimeout(t *testing.T) {
	cfg := testConfig()
	cfg.HandshakeTimeout = 100 * time.Millisecond
	ts := startServer(t, cfg, newMemoryStore(nil))
	c := ts.dial(t)
	c.Write([]byte{0x01, 0x00}) // a trickle that never completes a frame
	expectError(t, c, HandshakeTimeout)
}

func TestUnsupportedModeWhenNotServed(t *testing.T) {
	cfg := testConfig()
	cfg.ServeStateful = false
	ts := startServer(t, cfg, newMemoryStore(nil))
	c := ts.dial(t)
	c.Write(hello(modeStateful, false, 3, 0, 0, testID))
	expectError(t, c, UnsupportedMode)
}

func TestServerBusyBeyondMaxConnections(t *testing.T) {
	cfg := testConfig()
	cfg.MaxConnections = 1
	ts := startServer(t, cfg, newMemoryStore(nil))
	first := ts.dial(t) // held in the handshake
	first.Write([]byte{0x01})
	second := ts.dial(t)
	second.Write(hello(modeStateless, false, 3, 0, 0, "")) // unread: the server must not RST it away
	expectError(t, second, ServerBusy)
}

func TestBytesAfterHelloWhileStreaming(t *testing.T) {
	cfg := testConfig()
	cfg.Interval = 20 * time.Millisecond
	store := newMemoryStore(nil)
	ts := startServer(t, cfg, store)
	c := ts.dial(t)
	c.Write(hello(modeStateful, false, 1000, 0, 0, testID))
	if w := readFrame(t, c); w[0] != typeWelcome {
		t.Fatalf("got %x", w)
	}
	readFrame(t, c)
	c.Write([]byte{0x00})
	for {
		f := readFrame(t, c)
		if f[0] == typeData {
			continue
		}
		if f[0] != typeError || Code(binary.BigEndian.Uint16(f[3:5])) != UnexpectedFrame {
			t.Fatalf("got %x, want ERROR UNEXPECTED_FRAME", f)
		}
		break
	}
	// The session was released (TTL armed), not deleted: a RESUME gets it back.
	c2 := ts.dial(t)
	c2.Write(hello(modeStateful, true, 1000, 5, 0, testID))
	if w := readFrame(t, c2); w[0] != typeWelcome {
		t.Fatalf("resume after a violation: %x", w)
	}
}

func TestLatestConnectionWinsAndTheOldOneIsSuperseded(t *testing.T) {
	cfg := testConfig()
	cfg.Interval = 20 * time.Millisecond
	cfg.RefreshPeriod = 50 * time.Millisecond
	store := newMemoryStore(nil)
	ts := startServer(t, cfg, store)
	old := ts.dial(t)
	old.Write(hello(modeStateful, false, 1000, 0, 0, testID))
	readFrame(t, old)
	first := readFrame(t, old)
	newer := ts.dial(t)
	newer.Write(hello(modeStateful, true, 1000, 0, 0, testID))
	if w := readFrame(t, newer); w[0] != typeWelcome {
		t.Fatalf("take-over refused: %x", w)
	}
	if again := readFrame(t, newer); !bytes.Equal(again, first) {
		t.Fatalf("same session, other sequence: %x vs %x", again, first)
	}
	for {
		f := readFrame(t, old)
		if f[0] == typeData {
			continue
		}
		if f[0] != typeError || Code(binary.BigEndian.Uint16(f[3:5])) != SessionSuperseded {
			t.Fatalf("old connection got %x, want SESSION_SUPERSEDED", f)
		}
		break
	}
	// The stale connection's end must not have released the newer one's session.
	if ok, _ := store.Refresh(testID, "", 1000); ok {
		t.Fatal("empty owner refreshed")
	}
	store.mu.Lock()
	owner := store.sessions[testID].owner
	store.mu.Unlock()
	if owner == "" {
		t.Fatal("the superseded connection released the session under its new owner")
	}
}

func TestSessionMismatchAndUnknown(t *testing.T) {
	cfg := testConfig()
	cfg.Interval = time.Hour
	store := newMemoryStore(nil)
	ts := startServer(t, cfg, store)
	c := ts.dial(t)
	c.Write(hello(modeStateful, true, 3, 0, 0, testID))
	expectError(t, c, SessionUnknown)
	holder := ts.dial(t)
	holder.Write(hello(modeStateful, false, 3, 0, 0, testID))
	readFrame(t, holder)
	for _, resume := range []bool{false, true} {
		c := ts.dial(t)
		c.Write(hello(modeStateful, resume, 4, 0, 0, testID))
		expectError(t, c, SessionMismatch)
	}
}

func TestShutdownSendsShuttingDownAndReleases(t *testing.T) {
	cfg := testConfig()
	cfg.Interval = time.Hour
	store := newMemoryStore(nil)
	ts := startServer(t, cfg, store)
	streaming := ts.dial(t)
	streaming.Write(hello(modeStateful, false, 3, 0, 0, testID))
	readFrame(t, streaming)
	readFrame(t, streaming)
	waiting := ts.dial(t) // in the handshake
	waiting.Write([]byte{0x01})
	stateless := ts.dial(t)
	stateless.Write(hello(modeStateless, false, 3, 0, 0, ""))
	readFrame(t, stateless)
	readFrame(t, stateless)
	ts.stop()
	expectError(t, streaming, ShuttingDown)
	expectError(t, waiting, ShuttingDown)
	expectError(t, stateless, ShuttingDown)
	store.mu.Lock()
	e := store.sessions[testID]
	store.mu.Unlock()
	if e == nil || e.owner != "" {
		t.Fatalf("session not released on shutdown: %+v", e)
	}
}

func TestIntervalPacingUsesAbsoluteDeadlines(t *testing.T) {
	cfg := testConfig()
	cfg.Interval = 30 * time.Millisecond
	ts := startServer(t, cfg, newMemoryStore(nil))
	c := ts.dial(t)
	c.Write(hello(modeStateless, false, 11, 0, 0, ""))
	readFrame(t, c)
	start := time.Now()
	for i := 0; i < 11; i++ {
		readFrame(t, c)
	}
	// Ten intervals between the first and the last number; never sooner (a lower bound only:
	// timing on a loaded machine may stretch it, never shrink it).
	if elapsed := time.Since(start); elapsed < 10*cfg.Interval-5*time.Millisecond {
		t.Fatalf("11 numbers in %v, faster than the interval allows", elapsed)
	}
}

func TestErrorMessageTruncatedOnUTF8Boundary(t *testing.T) {
	msg := strings.Repeat("é", 600) // 1200 bytes
	f := appendError(nil, InternalError, msg)
	if len(f)-5 != 1024 || !strings.HasPrefix(msg, string(f[5:])) {
		t.Fatalf("message of %d bytes", len(f)-5)
	}
	f = appendError(nil, InternalError, "x"+msg)
	if len(f)-5 != 1023 {
		t.Fatalf("cut inside a character: %d bytes, %s", len(f)-5, hex.EncodeToString(f[len(f)-2:]))
	}
}
