package main

// One contract for both stores (§16.3–§16.5), the Redis layout of STORE-REDIS.md §2, and the
// scripts' SHA-1 as the document gives them.

import (
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
)

func TestScriptsAreThoseOfStoreRedisMd(t *testing.T) {
	want := map[string]string{
		luaOpenSession: "fd4a912a96d003913126c47ea9aeed8292ad8aab",
		luaClaim:       "a26bd8efbc38878f9c92cb0690e9973ec8516730",
		luaRefresh:     "dcfd79c2342654c10a7bbe7f0302539cf573b7ec",
		luaRelease:     "696c46d5d96db4c86b1b56b73413aef9314b2ec9",
		luaComplete:    "54ae819571aef35dbce2d03f3ff0ce241f91e92b",
	}
	for src, sum := range want {
		if got := sha1.Sum([]byte(src)); hex.EncodeToString(got[:]) != sum {
			t.Errorf("script SHA-1 %x, STORE-REDIS.md says %s:\n%s", got, sum, src)
		}
	}
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// storeContract runs the §16.3 semantics that need no clock against any store. Expiry is
// exercised with a 0 ms duration ("0 expires the key at once").
func storeContract(t *testing.T, s Store, id func(string) string) {
	a := id("a")
	rec, created, err := s.OpenSession(a, Record{Seed: 18446744073709551615, N: 65535}, "o1", 31000)
	if err != nil || !created || rec != (Record{18446744073709551615, 65535}) {
		t.Fatalf("create: %v %v %v", rec, created, err)
	}
	rec, created, err = s.OpenSession(a, Record{Seed: 1, N: 3}, "o2", 31000)
	if err != nil || created || rec.Seed != 18446744073709551615 || rec.N != 65535 {
		t.Fatalf("take over must keep the stored record: %v %v %v", rec, created, err)
	}
	if ok, _ := s.Refresh(a, "o1", 31000); ok {
		t.Fatal("a superseded owner refreshed")
	}
	if ok, _ := s.Release(a, "o1", 30000); ok {
		t.Fatal("a superseded owner released")
	}
	if ok, _ := s.Complete(a, "o1"); ok {
		t.Fatal("a superseded owner completed")
	}
	if ok, err := s.Refresh(a, "o2", 31000); !ok || err != nil {
		t.Fatalf("owner refresh: %v %v", ok, err)
	}
	if ok, err := s.Release(a, "o2", 30000); !ok || err != nil {
		t.Fatalf("owner release: %v %v", ok, err)
	}
	if ok, _ := s.Refresh(a, "o2", 31000); ok {
		t.Fatal("refresh after release")
	}
	if ok, _ := s.Release(a, "", 30000); ok {
		t.Fatal("the empty owner matched a released session")
	}
	got, err := s.Claim(a, "o3", 31000)
	if err != nil || got == nil || got.Seed != 18446744073709551615 {
		t.Fatalf("claim: %v %v", got, err)
	}
	if n, err := s.Count(); err != nil || n != 1 {
		t.Fatalf("count %d %v", n, err)
	}
	if ok, err := s.Complete(a, "o3"); !ok || err != nil {
		t.Fatalf("complete: %v %v", ok, err)
	}
	if r, err := s.Get(a); r != nil || err != nil {
		t.Fatalf("completed session still there: %v %v", r, err)
	}
	if r, err := s.Claim(a, "o4", 31000); r != nil || err != nil {
		t.Fatalf("claim of a completed session: %v %v", r, err)
	}
	// refresh_many: one answer per lease, in order, each owner-fenced on its own (§4.1).
	m1, m2 := id("m1"), id("m2")
	s.OpenSession(m1, Record{Seed: 1, N: 1}, "x1", 31000)
	s.OpenSession(m2, Record{Seed: 2, N: 2}, "x2", 31000)
	held, err := s.RefreshMany([]Lease{{m1, "x1"}, {m2, "stale"}, {id("none"), "x3"}, {m2, "x2"}}, 31000)
	if err != nil || len(held) != 4 || !held[0] || held[1] || held[2] || !held[3] {
		t.Fatalf("refresh_many: %v %v", held, err)
	}
	// Expiry: a TTL of 0 ms, then the session is absent for everything.
	b := id("b")
	if _, _, err := s.OpenSession(b, Record{Seed: 0, N: 1}, "o1", 31000); err != nil {
		t.Fatal(err)
	}
	if ok, _ := s.Release(b, "o1", 0); !ok {
		t.Fatal("release")
	}
	if r, _ := s.Claim(b, "o2", 31000); r != nil {
		t.Fatal("expired session claimed")
	}
	rec, created, _ = s.OpenSession(b, Record{Seed: 7, N: 2}, "o3", 31000)
	if !created || rec.Seed != 7 {
		t.Fatal("expired session not re-created fresh")
	}
	// Programming errors are refused before anything is written.
	if _, _, err := s.OpenSession(id("c"), Record{Seed: 1, N: 1}, "", 1000); err == nil {
		t.Fatal("empty owner accepted")
	}
	if _, err := s.Claim(b, "o4", maxStoreDurationMs+1); err == nil {
		t.Fatal("lease out of range accepted")
	}
	if r, _ := s.Get(id("c")); r != nil {
		t.Fatal("a refused open wrote a session")
	}
}

func TestMemoryStoreContract(t *testing.T) {
	s := newMemoryStore(nil)
	defer s.Close()
	storeContract(t, s, func(x string) string { return x })
}

func TestMemoryStoreLeaseAndTTL(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1000, 0)}
	s := newMemoryStore(clock.now)
	defer s.Close()
	s.OpenSession("x", Record{Seed: 1, N: 3}, "o", 31000)
	clock.advance(30999 * time.Millisecond)
	if ok, _ := s.Refresh("x", "o", 31000); !ok {
		t.Fatal("lease ran out early")
	}
	s.Release("x", "o", 30000)
	clock.advance(29999 * time.Millisecond)
	if r, _ := s.Get("x"); r == nil {
		t.Fatal("TTL ran out early")
	}
	clock.advance(time.Millisecond)
	if r, _ := s.Get("x"); r != nil {
		t.Fatal("kept past its TTL")
	}
}

// startRedis runs a throwaway redis-server on a free loopback port, or skips.
func startRedis(t *testing.T) string {
	t.Helper()
	exe, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server not installed")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command(exe, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for deadline := time.Now().Add(10 * time.Second); ; {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("redis-server did not start")
		}
		time.Sleep(20 * time.Millisecond) // polling a process start-up, not synchronising tests
	}
	return "redis://" + addr + "/0"
}

func TestRedisStoreContractAndLayout(t *testing.T) {
	url := startRedis(t)
	s, err := openRedisStore(url, 8)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	storeContract(t, s, func(x string) string { return "00000000-0000-4000-8000-00000000000" + x })

	// STORE-REDIS.md §2: one hash, fields seed, n, owner as decimal strings, with an expiry.
	id := "0f8fad5b-d9cb-469f-a165-70867728950e"
	s.OpenSession(id, Record{Seed: 18446744073709551615, N: 65535}, "srv:1", 31000)
	c, _ := redis.Dial("tcp", url[len("redis://"):len(url)-2])
	defer c.Close()
	h, err := redis.StringMap(c.Do("HGETALL", "nsp:v1:session:"+id))
	if err != nil || len(h) != 3 || h["seed"] != "18446744073709551615" || h["n"] != "65535" || h["owner"] != "srv:1" {
		t.Fatalf("hash %v %v", h, err)
	}
	if pttl, _ := redis.Int64(c.Do("PTTL", "nsp:v1:session:"+id)); pttl <= 30000 || pttl > 31000 {
		t.Fatalf("PTTL %d after a 31000 ms lease", pttl)
	}
	s.Release(id, "srv:1", 30000)
	if h, _ := redis.StringMap(c.Do("HGETALL", "nsp:v1:session:"+id)); h["owner"] != "" {
		t.Fatalf("released owner %q", h["owner"])
	}
	// A session another implementation wrote is read as written; a malformed one is refused.
	c.Do("HSET", "nsp:v1:session:"+id, "seed", "0123")
	if _, err := s.Get(id); err == nil {
		t.Fatal("seed with a leading zero accepted")
	}
	c.Do("SET", "nsp:v1:session:other", "x")
	if _, err := s.Claim("other", "o", 1000); err == nil {
		t.Fatal("WRONGTYPE not reported as a store error")
	}
	// A script flushed from Redis is reloaded (NOSCRIPT → EVAL, or SCRIPT LOAD for a pipeline).
	c.Do("SCRIPT", "FLUSH")
	if _, _, err := s.OpenSession("fresh", Record{Seed: 5, N: 5}, "o", 1000); err != nil {
		t.Fatalf("after SCRIPT FLUSH: %v", err)
	}
	c.Do("SCRIPT", "FLUSH")
	if held, err := s.RefreshMany([]Lease{{"fresh", "o"}}, 1000); err != nil || !held[0] {
		t.Fatalf("refresh_many after SCRIPT FLUSH: %v %v", held, err)
	}
}

func TestRedisStoreUnreachable(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	if _, err := openRedisStore("redis://"+addr+"/0", 4); err == nil {
		t.Fatal("opened a store nobody listens on")
	}
}

// TestStoreRecordVectors: spec/vectors/store_records.json, the verdict every reader of a
// session hash must reach (STORE-REDIS.md §2), through parseRecord and, with Redis, Get.
func TestStoreRecordVectors(t *testing.T) {
	var doc struct {
		Cases []struct {
			Seed   *string
			N      *string
			Valid  bool
			Absent bool
		}
	}
	loadVectors(t, "store_records.json", &doc)
	if len(doc.Cases) < 10 {
		t.Fatalf("only %d store record vectors", len(doc.Cases))
	}
	asReply := func(s *string) interface{} {
		if s == nil {
			return nil
		}
		return []byte(*s)
	}
	for _, c := range doc.Cases {
		if c.Absent {
			continue
		}
		_, err := parseRecord(asReply(c.Seed), asReply(c.N))
		if c.Valid != (err == nil) {
			t.Errorf("seed %v n %v: valid %v, got %v", deref(c.Seed), deref(c.N), c.Valid, err)
		}
	}
}

func deref(s *string) string {
	if s == nil {
		return "<missing>"
	}
	return strconv.Quote(*s)
}
