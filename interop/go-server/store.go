package main

// The session store interface of spec/PROTOCOL.md §16.3, and the in-memory store.

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

// Record is the session data of §16.1: the SplitMix64 seed and the stream length.
type Record struct {
	Seed uint64
	N    uint32
}

// StoreError is a failure of the store itself (unreachable, timeout, malformed reply); the
// server answers it with STORE_UNAVAILABLE (§16.3).
type StoreError struct{ Err error }

func (e *StoreError) Error() string { return "session store: " + e.Err.Error() }
func (e *StoreError) Unwrap() error { return e.Err }

// maxStoreDurationMs bounds lease_ms and ttl_ms of store calls (§16.3: 0 … 999,999,999,999).
const maxStoreDurationMs = 999_999_999_999

// Store is the complete interface of §16.3. Every operation is atomic; those naming an owner do
// nothing and return false unless that owner holds the session. Errors are *StoreError, or a
// programming error (empty owner, duration out of range).
type Store interface {
	// OpenSession creates the session from fresh if absent, then sets owner and a lease of
	// leaseMs; it returns the record in force and whether it was created.
	OpenSession(clientID string, fresh Record, owner string, leaseMs int64) (Record, bool, error)
	// Claim takes over an existing session (owner, lease); nil if absent or expired.
	Claim(clientID, owner string, leaseMs int64) (*Record, error)
	// Refresh extends the lease if owner holds the session.
	Refresh(clientID, owner string, leaseMs int64) (bool, error)
	// RefreshMany is Refresh for every lease at once (STORE-REDIS.md §4.1): one result per
	// lease, in order; an error means the whole batch failed.
	RefreshMany(leases []Lease, leaseMs int64) ([]bool, error)
	// Release clears the owner and arms the TTL if owner holds the session.
	Release(clientID, owner string, ttlMs int64) (bool, error)
	// Complete deletes the session if owner holds it.
	Complete(clientID, owner string) (bool, error)
	// Get reads the record without claiming it; nil if absent.
	Get(clientID string) (*Record, error)
	// Count is the number of live sessions (monitoring).
	Count() (int, error)
	Close() error
}

// Lease names a session held by one connection.
type Lease struct {
	ClientID string
	Owner    string
}

var errBadArgument = errors.New("store: empty owner or duration out of range")

func checkOwner(owner string) error {
	if owner == "" {
		return errBadArgument
	}
	return nil
}

func checkDuration(ms int64) error {
	if ms < 0 || ms > maxStoreDurationMs {
		return fmt.Errorf("%w: %d ms", errBadArgument, ms)
	}
	return nil
}

// memoryStore keeps sessions in this process (Appendix B `memory://`), with expiry on a
// monotonic clock. Expired entries are absent to every operation and swept once a second.
type memoryStore struct {
	mu       sync.Mutex
	sessions map[string]*memEntry
	now      func() time.Time
	stop     chan struct{}
	stopOnce sync.Once
}

type memEntry struct {
	rec     Record
	owner   string
	expires time.Time
}

func newMemoryStore(now func() time.Time) *memoryStore {
	if now == nil {
		now = time.Now
	}
	s := &memoryStore{sessions: make(map[string]*memEntry), now: now, stop: make(chan struct{})}
	go s.sweep()
	return s
}

func (s *memoryStore) sweep() {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-tick.C:
			s.mu.Lock()
			now := s.now()
			for id, e := range s.sessions {
				if !now.Before(e.expires) {
					delete(s.sessions, id)
				}
			}
			s.mu.Unlock()
		}
	}
}

// live returns the entry for id if it has not expired; the caller holds mu.
func (s *memoryStore) live(id string) *memEntry {
	e := s.sessions[id]
	if e == nil {
		return nil
	}
	if !s.now().Before(e.expires) {
		delete(s.sessions, id)
		return nil
	}
	return e
}

func (s *memoryStore) after(ms int64) time.Time {
	return s.now().Add(time.Duration(ms) * time.Millisecond)
}

func (s *memoryStore) OpenSession(id string, fresh Record, owner string, leaseMs int64) (Record, bool, error) {
	if err := checkOwner(owner); err != nil {
		return Record{}, false, err
	}
	if err := checkDuration(leaseMs); err != nil {
		return Record{}, false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.live(id)
	created := e == nil
	if created {
		e = &memEntry{rec: fresh}
		s.sessions[id] = e
	}
	e.owner = owner
	e.expires = s.after(leaseMs)
	return e.rec, created, nil
}

func (s *memoryStore) Claim(id, owner string, leaseMs int64) (*Record, error) {
	if err := checkOwner(owner); err != nil {
		return nil, err
	}
	if err := checkDuration(leaseMs); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.live(id)
	if e == nil {
		return nil, nil
	}
	e.owner = owner
	e.expires = s.after(leaseMs)
	rec := e.rec
	return &rec, nil
}

func (s *memoryStore) Refresh(id, owner string, leaseMs int64) (bool, error) {
	if err := checkDuration(leaseMs); err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.live(id)
	if e == nil || owner == "" || e.owner != owner {
		return false, nil
	}
	e.expires = s.after(leaseMs)
	return true, nil
}

func (s *memoryStore) RefreshMany(leases []Lease, leaseMs int64) ([]bool, error) {
	held := make([]bool, len(leases))
	for i, l := range leases {
		ok, err := s.Refresh(l.ClientID, l.Owner, leaseMs)
		if err != nil {
			return nil, err
		}
		held[i] = ok
	}
	return held, nil
}

func (s *memoryStore) Release(id, owner string, ttlMs int64) (bool, error) {
	if err := checkDuration(ttlMs); err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.live(id)
	if e == nil || owner == "" || e.owner != owner {
		return false, nil
	}
	e.owner = ""
	e.expires = s.after(ttlMs)
	return true, nil
}

func (s *memoryStore) Complete(id, owner string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.live(id)
	if e == nil || owner == "" || e.owner != owner {
		return false, nil
	}
	delete(s.sessions, id)
	return true, nil
}

func (s *memoryStore) Get(id string) (*Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.live(id)
	if e == nil {
		return nil, nil
	}
	rec := e.rec
	return &rec, nil
}

func (s *memoryStore) Count() (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	count := 0
	for _, e := range s.sessions {
		if now.Before(e.expires) {
			count++
		}
	}
	return count, nil
}

func (s *memoryStore) Close() error {
	s.stopOnce.Do(func() { close(s.stop) })
	return nil
}
