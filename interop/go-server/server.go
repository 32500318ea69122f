package main

// The server: accept loop, one goroutine per connection, per-phase deadlines (spec/PROTOCOL.md
// §5.2, §13, §14.2, §16.4, §17).

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Config is the server's settings, checked by the command line (Appendix B).
type Config struct {
	ServeStateless, ServeStateful bool
	Interval                      time.Duration // pacing: IntervalMs milliseconds exactly (§13)
	IntervalMs                    uint32        // announced in WELCOME
	SessionTTLMs                  uint32        // §16.4, announced in WELCOME (stateful)
	HandshakeTimeout              time.Duration // §5.2 step 2
	MaxConnections                int           // §17
	WriteStall                    time.Duration // §14.2: a write blocked longer is a drop
	RefreshPeriod                 time.Duration // §16.4: lease refresh period
	ShutdownGrace                 time.Duration // how long a blocked write may hold up shutdown
}

// Server serves NSP on a listener. Create with NewServer, run Serve, stop with Shutdown.
type Server struct {
	cfg      Config
	store    Store
	log      *Logger
	serverID string

	connSeq  atomic.Uint64
	active   atomic.Int64 // connections being served (counted against MaxConnections)
	refusing atomic.Int64 // SERVER_BUSY connections lingering

	shutdown     chan struct{}
	shutdownOnce sync.Once
	wg           sync.WaitGroup
	leases       leaseSet
	refreshOnce  sync.Once
	stopRefresh  chan struct{} // closed by Shutdown once every connection has ended
	refreshDone  chan struct{}

	// Injectable randomness (tests): the stateful seed (§8.3, a CSPRNG) and stateless a (§6.1).
	newSeed func() (uint64, error)
	newA    func() (uint32, error)
}

// NewServer returns a server using store; cfg must have been validated.
func NewServer(cfg Config, store Store, log *Logger) (*Server, error) {
	var id [8]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, err
	}
	return &Server{
		cfg: cfg, store: store, log: log,
		serverID:    "go-" + hex.EncodeToString(id[:]),
		shutdown:    make(chan struct{}),
		stopRefresh: make(chan struct{}),
		refreshDone: make(chan struct{}),
		newSeed:     cryptoSeed,
		newA:        cryptoA,
	}, nil
}

func cryptoSeed() (uint64, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint64(b[:]), nil
}

// cryptoA draws a uniformly from 1..255 (rejecting the byte 0).
func cryptoA() (uint32, error) {
	var b [1]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			return 0, err
		}
		if b[0] != 0 {
			return uint32(b[0]), nil
		}
	}
}

func (s *Server) isShuttingDown() bool {
	select {
	case <-s.shutdown:
		return true
	default:
		return false
	}
}

// Shutdown stops accepting (the caller closes the listener), tells every open connection
// SHUTTING_DOWN, releases their sessions, and waits for every connection goroutine (§17).
func (s *Server) Shutdown() {
	s.shutdownOnce.Do(func() { close(s.shutdown) })
	s.wg.Wait() // leases are refreshed until every connection has ended
	close(s.stopRefresh)
	s.refreshOnce.Do(func() { close(s.refreshDone) }) // never started: nothing to wait for
	<-s.refreshDone
	s.log.FlushSuppressed()
}

// Serve accepts until the listener is closed. Temporary accept errors (EMFILE, ENFILE) back off
// from 5 ms doubling to 1 s instead of spinning (§17), as net/http's Server does.
func (s *Server) Serve(ln net.Listener) error {
	s.refreshOnce.Do(func() {
		go func() {
			defer close(s.refreshDone)
			s.refreshLoop(s.stopRefresh)
		}()
	})
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.isShuttingDown() || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Temporary() { //nolint:staticcheck // what net/http does
				if delay == 0 {
					delay = 5 * time.Millisecond
				} else if delay *= 2; delay > time.Second {
					delay = time.Second
				}
				s.log.Warnf("accept: %v; retrying in %v", err, delay)
				select {
				case <-time.After(delay):
				case <-s.shutdown:
					return nil
				}
				continue
			}
			return err
		}
		delay = 0
		cn := s.newConnection(c)
		// Every accepted connection counts from accept to close, whatever its phase, refusals
		// included (§5.2 step 1, §17).
		if s.active.Add(1) > int64(s.cfg.MaxConnections) {
			s.refuse(cn, ServerBusy, "server at its connection limit")
			continue
		}
		s.wg.Add(1)
		go s.handle(cn)
	}
}

// refuse answers a connection it will not serve, without reading its HELLO (§5.2 step 1): ERROR,
// then shut the write side and discard input for up to 1 s so that the kernel does not reset
// the connection under the ERROR (§10). The connection stays counted in active until closed; at
// most MaxConnections refusals linger at once, beyond that the socket is closed at once.
func (s *Server) refuse(cn *connection, code Code, msg string) {
	c := cn.c
	if s.refusing.Add(1) > int64(s.cfg.MaxConnections) {
		s.refusing.Add(-1)
		c.Close()
		s.active.Add(-1)
		cn.setEnd("closed", "closed at once: too many refusals lingering")
		cn.logEnded()
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer cn.logEnded() // once it no longer counts toward the limit
		defer s.active.Add(-1)
		defer s.refusing.Add(-1)
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(time.Second))
		cn.noteError(code, msg)
		if _, err := c.Write(appendError(nil, code, msg)); err != nil {
			return
		}
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		_, _ = io.Copy(io.Discard, c)
	}()
}

// connection is one accepted connection being served.
type connection struct {
	s     *Server
	c     net.Conn
	id    uint64
	owner string // stateful: this connection's owner token (§16.1)
	hello *Hello
	out   []byte // frames not yet written

	// For the log (issue 11 point 8): who, since when, and how the connection ended.
	peer     string    // the peer's address
	start    time.Time // accepted at
	debug    bool      // frame lines are built at all (decided once per connection)
	welcomed bool      // WELCOME written: an ERROR now ends a stream rather than refuses
	unread   bool      // client bytes may be left unread when the ERROR is sent (lingerIfUnread)
	written  uint32    // the next index not yet written (streaming)
	endWhy   string    // reason of the "ended" line: final, client_closed, write_stall, ...
	endText  string    // its words
	endCode  Code      // the ERROR sent, if any
	hasCode  bool

	events    chan connEvent
	writeFail bool      // a write failed or timed out: nothing more may be written (§14.2)
	deadline  time.Time // when the write deadline was last pushed forward
}

// connEvent is something that ends a stream: the client sent bytes or closed, or the lease was
// lost.
type connEvent struct {
	kind eventKind
	code Code  // evLost
	err  error // evClosed
}

type eventKind int

const (
	evBytes  eventKind = iota // the client sent a byte after HELLO (UNEXPECTED_FRAME)
	evClosed                  // EOF or socket error on the read side: a drop
	evLost                    // the lease refresh failed: SESSION_SUPERSEDED or STORE_UNAVAILABLE
)

// newConnection numbers an accepted connection and logs it.
func (s *Server) newConnection(c net.Conn) *connection {
	cn := &connection{
		s: s, c: c, id: s.connSeq.Add(1), events: make(chan connEvent, 2),
		peer: escapePeer(c.RemoteAddr().String()), start: time.Now(), debug: s.log.Enabled(levelDebug),
	}
	cn.info("accepted", "accepted from "+cn.peer)
	return cn
}

func (s *Server) handle(cn *connection) {
	defer s.wg.Done()
	defer cn.logEnded() // once it no longer counts toward the limit
	defer s.active.Add(-1)
	c := cn.c
	if tc, ok := c.(*net.TCPConn); ok {
		// §16.6 SHOULD: bound how far writes run ahead of the client with a small socket send
		// buffer (the kernel's autotuning would let it grow to megabytes), so that what a drop
		// loses with the session's deletion stays FINAL alone and a stalled client blocks the
		// writes early, where the schedule re-anchors (§13).
		_ = tc.SetWriteBuffer(sendBuffer)
	}
	defer func() {
		if r := recover(); r != nil { // a bug in this connection must not take the server down
			s.log.Errorf("conn %d: internal error: %v", cn.id, r)
			if !cn.writeFail {
				cn.sendError(InternalError, "internal server error")
			}
		}
		cn.lingerIfUnread()
		c.Close()
	}()

	// Shutdown during the handshake interrupts the pending read.
	handshaking := make(chan struct{})
	go func() {
		select {
		case <-s.shutdown:
			_ = c.SetReadDeadline(time.Unix(1, 0))
		case <-handshaking:
		}
	}()
	hello, ok := cn.readHello()
	close(handshaking)
	if !ok {
		return
	}
	cn.hello = hello
	if hello.Mode == modeStateless && !s.cfg.ServeStateless || hello.Mode == modeStateful && !s.cfg.ServeStateful {
		cn.sendError(UnsupportedMode, fmt.Sprintf("this server does not serve mode %d", hello.Mode))
		return
	}
	if hello.Mode == modeStateless {
		cn.serveStateless()
	} else {
		cn.serveStateful()
	}
}

// readHello reads until a complete HELLO, within the handshake timeout (§5.2 step 2), and
// validates it (§5.3 steps 1–14). On failure it has answered (or just closes) and returns false.
func (cn *connection) readHello() (*Hello, bool) {
	s := cn.s
	_ = cn.c.SetReadDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
	buf := make([]byte, 0, 512)
	eof := false
	for {
		state, hello, pe := parseHello(buf, eof)
		switch state {
		case helloDone:
			_ = cn.c.SetReadDeadline(time.Time{})
			cn.logHello(hello)
			return hello, true
		case helloFailed:
			cn.sendError(pe.Code, pe.Message)
			cn.unread = true // the rest of a rejected frame, or what followed it, may be coming
			return nil, false
		}
		if eof { // EOF on a frame boundary before any frame: the client just left
			cn.setEnd("client_closed", "client closed the connection before its HELLO")
			return nil, false
		}
		if len(buf) == cap(buf) {
			grown := make([]byte, len(buf), 2*cap(buf))
			copy(grown, buf)
			buf = grown
		}
		n, err := cn.c.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			eof = true
		} else if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				if s.isShuttingDown() {
					cn.sendError(ShuttingDown, "server shutting down")
				} else {
					cn.sendError(HandshakeTimeout, fmt.Sprintf("no complete HELLO within %v", s.cfg.HandshakeTimeout))
				}
				return nil, false
			}
			cn.setEnd("client_closed", "connection error before its HELLO: "+escapePeer(err.Error()))
			return nil, false // reset or other socket error: nothing to answer
		}
	}
}

// lingerIfUnread: after an ERROR that answers client bytes the server did not read to the end,
// shut the write side and discard input for up to 1 s before closing (§10): closing with unread
// bytes makes the kernel reset the connection, which can destroy the ERROR. Only where no read
// of the connection's reader goroutine is pending (handshake failures, and after the byte that
// goroutine reported).
func (cn *connection) lingerIfUnread() {
	if !cn.unread || cn.writeFail || !cn.hasCode {
		return
	}
	if tc, ok := cn.c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
	_ = cn.c.SetReadDeadline(time.Now().Add(time.Second))
	_, _ = io.Copy(io.Discard, cn.c)
}

// sendError writes pending frames and an ERROR (§4.4), unless an earlier write failed: an ERROR
// behind a cut write would be read as the rest of a broken frame (§14.2).
func (cn *connection) sendError(code Code, msg string) {
	if cn.writeFail {
		return
	}
	cn.noteError(code, msg)
	if cn.debug {
		cn.frame("ERROR", fmt.Sprintf("%v %q", code, msg), field{"code", code.String()})
	}
	cn.out = appendError(cn.out, code, msg)
	_ = cn.c.SetWriteDeadline(time.Now().Add(cn.s.cfg.ShutdownGrace))
	cn.flush()
}

// flush writes cn.out whole; a failure (including the stall deadline) marks the connection.
func (cn *connection) flush() bool {
	if cn.writeFail {
		return false
	}
	if len(cn.out) == 0 {
		return true
	}
	_, err := cn.c.Write(cn.out)
	cn.out = cn.out[:0]
	if err != nil {
		cn.writeFail = true
		var ne net.Error
		switch {
		case errors.As(err, &ne) && ne.Timeout() && cn.s.isShuttingDown():
			cn.setEnd("shutdown", "server shutting down; a write blocked for the shutdown grace was cut")
		case errors.As(err, &ne) && ne.Timeout():
			cn.setEnd("write_stall", fmt.Sprintf("a write blocked for about %v (the client stopped reading): a drop", cn.s.cfg.WriteStall))
		default:
			cn.setEnd("client_closed", "client closed the connection (write failed: "+escapePeer(err.Error())+")")
		}
		return false
	}
	return true
}

// pushWriteDeadline keeps the write deadline WriteStall ahead, moved at most once a second, so
// that a write blocked for longer than WriteStall (±1 s) fails: a drop (§14.2).
func (cn *connection) pushWriteDeadline(now time.Time) {
	if now.Sub(cn.deadline) >= time.Second {
		cn.deadline = now
		_ = cn.c.SetWriteDeadline(now.Add(cn.s.cfg.WriteStall))
	}
}

// startReader keeps a read pending after HELLO (§5.2 step 5): any byte is a violation, EOF or
// an error a drop.
func (cn *connection) startReader() {
	cn.s.wg.Add(1)
	go func() {
		defer cn.s.wg.Done()
		var b [1]byte
		n, err := cn.c.Read(b[:])
		if n > 0 {
			cn.events <- connEvent{kind: evBytes}
		} else {
			cn.events <- connEvent{kind: evClosed, err: err}
		}
	}()
}

func (cn *connection) welcome(a uint32, ttl uint32) bool {
	h := cn.hello
	cn.out = appendWelcome(cn.out, Welcome{
		Mode: h.Mode, N: h.N, NextIndex: h.NextIndex, IntervalMs: cn.s.cfg.IntervalMs, A: a, SessionTTLMs: ttl,
	})
	if cn.debug {
		cn.frame("WELCOME", fmt.Sprintf("mode=%s n=%d next_index=%d interval_ms=%d a=%d session_ttl_ms=%d",
			modeWord(h.Mode), h.N, h.NextIndex, cn.s.cfg.IntervalMs, a, ttl))
	}
	cn.pushWriteDeadline(time.Now())
	cn.written = h.NextIndex
	cn.welcomed = cn.flush()
	return cn.welcomed
}

// streamEnd says how a stream ended.
type streamEnd int

const (
	endFinal    streamEnd = iota // FINAL written
	endDropped                   // write failed, EOF or socket error
	endViolated                  // the client sent a byte: UNEXPECTED_FRAME sent
	endLost                      // lease lost: its ERROR sent, session not ours any more
	endShutdown                  // SHUTTING_DOWN to be sent
)

// batchBytes: at interval 0 frames are written in batches of about this size.
const batchBytes = 32 * 1024

// sendBuffer is the socket send buffer asked for on every connection (Linux doubles it).
const sendBuffer = 128 * 1024

// stream sends the numbers next_index … n−1 at t0 + j·interval (§13), re-anchoring when more
// than one interval behind; appendNumber appends the frame for one index (FINAL at n−1). It
// returns at the first event that ends the stream; ERROR frames are left to the caller except
// for a violation, which needs no store decision.
func (cn *connection) stream(appendNumber func(dst []byte, index uint32) []byte) (streamEnd, Code) {
	s := cn.s
	h := cn.hello
	interval := s.cfg.Interval
	var timer *time.Timer
	if interval > 0 {
		timer = time.NewTimer(time.Hour)
		stopTimer(timer)
		defer stopTimer(timer)
	}
	t0 := time.Now()
	for j, index := 0, h.NextIndex; index < h.N; j, index = j+1, index+1 {
		var now time.Time
		if interval > 0 && j > 0 {
			due := t0.Add(time.Duration(j) * interval)
			now = time.Now()
			if now.Sub(due) > interval { // more than one interval behind: re-anchor
				t0 = now.Add(-time.Duration(j) * interval)
				due = now
			}
			if wait := due.Sub(now); wait > 0 {
				timer.Reset(wait)
				select {
				case <-timer.C:
				case ev := <-cn.events:
					stopTimer(timer)
					return cn.onEvent(ev)
				case <-s.shutdown:
					stopTimer(timer)
					return endShutdown, ShuttingDown
				}
				now = time.Now()
			}
		}
		select {
		case ev := <-cn.events:
			return cn.onEvent(ev)
		case <-s.shutdown:
			return endShutdown, ShuttingDown
		default:
		}
		if index == h.N-1 {
			if end, code, ok := cn.awaitAcknowledged(); !ok {
				return end, code
			}
		}
		cn.out = appendNumber(cn.out, index)
		if interval > 0 || len(cn.out) >= batchBytes || index == h.N-1 {
			if now.IsZero() {
				now = time.Now()
			}
			cn.pushWriteDeadline(now)
			if !cn.flush() {
				return endDropped, 0
			}
			cn.written = index + 1
		}
	}
	return endFinal, 0
}

// awaitAcknowledged flushes what precedes FINAL and waits until the peer's TCP has acknowledged
// every byte of it (§16.6 SHOULD), so that what is in flight when the session is deleted is FINAL
// alone. It looks with a backoff from 1 ms to 50 ms; a peer whose acknowledgements make no
// progress for WriteStall is gone (a drop: the session is released, not completed). Where
// acknowledgements cannot be observed it returns at once.
func (cn *connection) awaitAcknowledged() (streamEnd, Code, bool) {
	if !cn.flush() {
		return endDropped, 0, false
	}
	cn.written = cn.hello.N - 1
	pending, ok := unacked(cn.c)
	if !ok || pending == 0 {
		return 0, 0, true
	}
	s := cn.s
	wait := time.Millisecond
	progress := time.Now()
	timer := time.NewTimer(wait)
	defer stopTimer(timer)
	for {
		select {
		case <-timer.C:
		case ev := <-cn.events:
			end, code := cn.onEvent(ev)
			return end, code, false
		case <-s.shutdown:
			return endShutdown, ShuttingDown, false
		}
		now, ok := unacked(cn.c)
		if !ok || now == 0 {
			return 0, 0, true
		}
		if now < pending {
			pending, progress = now, time.Now()
		} else if time.Since(progress) > s.cfg.WriteStall {
			cn.setEnd("write_stall", fmt.Sprintf("%d bytes unacknowledged for %v before FINAL: a drop", now, s.cfg.WriteStall))
			return endDropped, 0, false
		}
		if wait *= 2; wait > 50*time.Millisecond {
			wait = 50 * time.Millisecond
		}
		timer.Reset(wait)
	}
}

func stopTimer(t *time.Timer) {
	if !t.Stop() {
		select {
		case <-t.C:
		default:
		}
	}
}

func (cn *connection) onEvent(ev connEvent) (streamEnd, Code) {
	switch ev.kind {
	case evBytes:
		cn.unread = true // the reader took one byte; the client may have sent more
		return endViolated, UnexpectedFrame
	case evLost:
		return endLost, ev.code
	default:
		var ne net.Error
		if cn.s.isShuttingDown() && errors.As(ev.err, &ne) && ne.Timeout() {
			return endShutdown, ShuttingDown
		}
		if ev.err == io.EOF {
			cn.setEnd("client_closed", "client closed the connection before FINAL")
		} else {
			cn.setEnd("client_closed", "connection error before FINAL: "+escapePeer(fmt.Sprint(ev.err)))
		}
		return endDropped, 0
	}
}

// shutdownWatch bounds how long a blocked write can hold up shutdown: ShutdownGrace after the
// shutdown starts, the pending write fails. It returns a function that ends the watch.
func (cn *connection) shutdownWatch() func() {
	done := make(chan struct{})
	cn.s.wg.Add(1)
	go func() {
		defer cn.s.wg.Done()
		select {
		case <-done:
			return
		case <-cn.s.shutdown:
		}
		t := time.NewTimer(cn.s.cfg.ShutdownGrace)
		defer t.Stop()
		select {
		case <-done:
		case <-t.C:
			_ = cn.c.SetWriteDeadline(time.Unix(1, 0))
		}
	}()
	return func() { close(done) }
}

// serveStateless: §6. a is drawn for a new stream, taken from the HELLO on a resume.
func (cn *connection) serveStateless() {
	s := cn.s
	h := cn.hello
	a := h.A
	if !h.Resume {
		var err error
		if a, err = s.newA(); err != nil {
			cn.sendError(InternalError, "no randomness")
			return
		}
	}
	if s.isShuttingDown() {
		cn.sendError(ShuttingDown, "server shutting down")
		return
	}
	state := "new"
	if h.Resume {
		state = "resumed"
	}
	cn.info("session", fmt.Sprintf("stateless stream %s at index %d, a=%d", state, h.NextIndex, a),
		field{"state", state}, field{"mode", "stateless"}, field{"next_index", h.NextIndex}, field{"a", a})
	defer cn.shutdownWatch()()
	if !cn.welcome(a, 0) {
		return
	}
	cn.startReader()
	aBig := new(big.Int).SetUint64(uint64(a))
	scratch := new(big.Int)
	last := h.N - 1
	debug := cn.debug
	end, code := cn.stream(func(dst []byte, index uint32) []byte {
		if debug {
			cn.frameNumber(index, index == last, statelessValueText(a, index), "")
		}
		return appendStatelessNumber(dst, index == last, index, aBig, scratch)
	})
	cn.finish(end, code, nil)
}

// serveStateful: §7.2, §11.2, §16.4.
func (cn *connection) serveStateful() {
	s := cn.s
	h := cn.hello
	id := h.ClientID
	ttl := int64(s.cfg.SessionTTLMs)
	lease := ttl + s.cfg.RefreshPeriod.Milliseconds()
	cn.owner = fmt.Sprintf("%s:%d", s.serverID, cn.id)

	// Early check, for open (§7.2 SHOULD) and claim alike: a HELLO with the wrong n is answered
	// SESSION_MISMATCH without taking the session over, so it cannot disturb a live stream.
	pre, err := s.store.Get(id)
	if err != nil {
		cn.storeFailed("get", err)
		return
	}
	if pre != nil && pre.N != h.N {
		cn.sendError(SessionMismatch, fmt.Sprintf("session has n = %d, HELLO has n = %d", pre.N, h.N))
		return
	}
	var rec Record
	state := "resumed"
	if !h.Resume {
		seed, err := s.newSeed()
		if err != nil {
			cn.sendError(InternalError, "no randomness")
			return
		}
		r, created, err := s.store.OpenSession(id, Record{Seed: seed, N: h.N}, cn.owner, lease)
		if err != nil {
			cn.storeFailed("open_session", err)
			return
		}
		rec = r
		state = map[bool]string{true: "new", false: "reopened"}[created]
	} else {
		r, err := s.store.Claim(id, cn.owner, lease)
		if err != nil {
			cn.storeFailed("claim", err)
			return
		}
		if r == nil {
			cn.sendError(SessionUnknown, "session unknown or expired")
			return
		}
		rec = *r
	}
	// A race (the session changed between get and take-over): it is ours now, so release it as
	// on any disconnection (§7.2).
	if rec.N != h.N {
		cn.release()
		cn.sendError(SessionMismatch, fmt.Sprintf("session has n = %d, HELLO has n = %d", rec.N, h.N))
		return
	}
	if s.isShuttingDown() {
		cn.release()
		cn.sendError(ShuttingDown, "server shutting down")
		return
	}
	words := map[string]string{
		"new":      "new session %s created, next index %d",
		"reopened": "existing session %s taken over by a new stream (not a resume), next index %d",
		"resumed":  "session %s resumed at index %d",
	}[state]
	cn.info("session", fmt.Sprintf(words, escapePeer(id), h.NextIndex),
		field{"state", state}, field{"mode", "stateful"}, field{"client_id", escapePeer(id)},
		field{"next_index", h.NextIndex}, field{"owner", cn.owner})
	checksum := sessionChecksum(rec.Seed, rec.N)
	defer cn.shutdownWatch()()
	stopRefresh := cn.startRefresher(lease)
	if !cn.welcome(0, s.cfg.SessionTTLMs) {
		stopRefresh()
		cn.release()
		return
	}
	cn.startReader()
	last := h.N - 1
	seed := rec.Seed
	debug := cn.debug
	end, code := cn.stream(func(dst []byte, index uint32) []byte {
		v := element(seed, index)
		if index == last {
			if debug {
				cn.frameNumber(index, true, strconv.FormatUint(uint64(v), 10), hex.EncodeToString(checksum[:]))
			}
			return appendStatefulNumber(dst, index, v, checksum[:])
		}
		if debug {
			cn.frameNumber(index, false, strconv.FormatUint(uint64(v), 10), "")
		}
		return appendStatefulNumber(dst, index, v, nil)
	})
	stopRefresh()
	cn.finish(end, code, &seed)
}

// finish ends a stream: FINAL written → complete (stateful); otherwise release the session if
// still ours, then the ERROR the end calls for.
func (cn *connection) finish(end streamEnd, code Code, stateful *uint64) {
	s := cn.s
	switch end {
	case endFinal:
		if stateful != nil {
			ok, err := s.store.Complete(cn.hello.ClientID, cn.owner)
			if err != nil {
				s.log.StoreWarning("complete", err, fmt.Sprintf("conn %d: complete %s failed: %v (the session expires on its lease)", cn.id, escapePeer(cn.hello.ClientID), err),
					field{"conn", cn.id}, field{"client_id", escapePeer(cn.hello.ClientID)})
			} else if !ok {
				s.log.Debugf("conn %d: complete %s: no longer the owner", cn.id, escapePeer(cn.hello.ClientID))
			}
		}
		cn.written = cn.hello.N
		cn.setEnd("final", "FINAL sent")
	case endLost:
		cn.sendError(code, map[Code]string{
			SessionSuperseded: "session taken over by a newer connection",
			StoreUnavailable:  "session lease lost while the store was unreachable",
		}[code])
	default:
		if stateful != nil {
			cn.release()
		}
		switch end {
		case endViolated:
			cn.sendError(UnexpectedFrame, "bytes received after HELLO")
		case endShutdown:
			cn.sendError(ShuttingDown, "server shutting down")
		}
	}
}

// startRefresher puts this connection's lease in the server's batch (STORE-REDIS.md §4.1): it is
// refreshed with every other lease once per RefreshPeriod, starting with the next batch. The
// returned function takes it out again; after it returns, no lost event can arrive late.
func (cn *connection) startRefresher(lease int64) func() {
	cn.s.leases.add(cn, lease)
	return func() { cn.s.leases.remove(cn) }
}

// leaseSet is the server's held leases, refreshed together (§16.4, STORE-REDIS.md §4.1).
type leaseSet struct {
	mu   sync.Mutex
	held map[*connection]int64 // lease_ms per connection
}

func (l *leaseSet) add(cn *connection, leaseMs int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.held == nil {
		l.held = make(map[*connection]int64)
	}
	l.held[cn] = leaseMs
}

func (l *leaseSet) remove(cn *connection) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.held, cn)
}

// refreshLoop runs one batch per RefreshPeriod, scheduled by start time (a Ticker), until stop.
// A batch that fails (store error) is logged and tried again at the next period, however long
// the outage (1.1 §16.4). A lease answered false ends its stream: SESSION_SUPERSEDED if the
// session still exists, STORE_UNAVAILABLE if it is gone or the get fails.
func (s *Server) refreshLoop(stop <-chan struct{}) {
	tick := time.NewTicker(s.cfg.RefreshPeriod)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		s.log.FlushSuppressed()
		s.refreshBatch()
	}
}

func (s *Server) refreshBatch() {
	s.leases.mu.Lock()
	conns := make([]*connection, 0, len(s.leases.held))
	byLease := map[int64][]*connection{}
	for cn, ms := range s.leases.held {
		conns = append(conns, cn)
		byLease[ms] = append(byLease[ms], cn)
	}
	s.leases.mu.Unlock()
	if len(conns) == 0 {
		return
	}
	for leaseMs, group := range byLease { // one lease_ms per server: a single group
		leases := make([]Lease, len(group))
		for i, cn := range group {
			leases[i] = Lease{ClientID: cn.hello.ClientID, Owner: cn.owner}
		}
		held, err := s.store.RefreshMany(leases, leaseMs)
		if err != nil {
			s.log.StoreWarning("refresh", err, fmt.Sprintf("lease refresh of %d session(s) failed: %v (next period tries again)", len(leases), err),
				field{"sessions", len(leases)})
			continue
		}
		for i, ok := range held {
			if !ok {
				s.lost(group[i])
			}
		}
	}
}

// lost ends a stream whose lease was refused, unless the stream has already ended.
func (s *Server) lost(cn *connection) {
	s.leases.mu.Lock()
	_, still := s.leases.held[cn]
	delete(s.leases.held, cn)
	s.leases.mu.Unlock()
	if !still {
		return
	}
	code := StoreUnavailable
	if rec, err := s.store.Get(cn.hello.ClientID); err == nil && rec != nil {
		code = SessionSuperseded
	}
	select {
	case cn.events <- connEvent{kind: evLost, code: code}:
	default: // the stream has already ended for another reason
	}
}

func (cn *connection) release() {
	ok, err := cn.s.store.Release(cn.hello.ClientID, cn.owner, int64(cn.s.cfg.SessionTTLMs))
	if err != nil {
		cn.s.log.StoreWarning("release", err, fmt.Sprintf("conn %d: release %s failed: %v (the session expires on its lease)", cn.id, escapePeer(cn.hello.ClientID), err),
			field{"conn", cn.id}, field{"client_id", escapePeer(cn.hello.ClientID)})
	} else if !ok {
		cn.s.log.Debugf("conn %d: release %s: no longer the owner", cn.id, escapePeer(cn.hello.ClientID))
	}
}

func (cn *connection) storeFailed(op string, err error) {
	cn.s.log.StoreWarning(op, err, fmt.Sprintf("conn %d: store %s failed: %v", cn.id, op, err), field{"conn", cn.id})
	cn.sendError(StoreUnavailable, "session store unavailable")
}
