package main

// The Redis session store of spec/STORE-REDIS.md: one hash per session at
// {prefix}session:{client_id} with fields seed, n, owner; every operation one Lua script
// (EVALSHA, EVAL on NOSCRIPT) or one command.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gomodule/redigo/redis"
)

const redisPrefix = "nsp:v1:"

// The five scripts, byte for byte as in STORE-REDIS.md §4 (their SHA-1 is checked by a test).
const (
	luaOpenSession = `if ARGV[3] == '' or #ARGV[4] > 12 or not string.find(ARGV[4], '^%d+$') then
  return redis.error_reply('ERR open_session: empty owner or bad lease_ms')
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], 'owner', ARGV[3])
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  local record = redis.call('HMGET', KEYS[1], 'seed', 'n')
  return {record[1], record[2], 0}
end
redis.call('HSET', KEYS[1], 'seed', ARGV[1], 'n', ARGV[2], 'owner', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return {ARGV[1], ARGV[2], 1}
`
	luaClaim = `if ARGV[1] == '' or #ARGV[2] > 12 or not string.find(ARGV[2], '^%d+$') then
  return redis.error_reply('ERR claim: empty owner or bad lease_ms')
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  return false
end
redis.call('HSET', KEYS[1], 'owner', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return redis.call('HMGET', KEYS[1], 'seed', 'n')
`
	luaRefresh = `if #ARGV[2] > 12 or not string.find(ARGV[2], '^%d+$') then
  return redis.error_reply('ERR refresh: bad lease_ms')
end
if ARGV[1] ~= '' and redis.call('HGET', KEYS[1], 'owner') == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
`
	luaRelease = `if #ARGV[2] > 12 or not string.find(ARGV[2], '^%d+$') then
  return redis.error_reply('ERR release: bad ttl_ms')
end
if ARGV[1] ~= '' and redis.call('HGET', KEYS[1], 'owner') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'owner', '')
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
`
	luaComplete = `if ARGV[1] ~= '' and redis.call('HGET', KEYS[1], 'owner') == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
`
)

var (
	scriptOpenSession = redis.NewScript(1, luaOpenSession)
	scriptClaim       = redis.NewScript(1, luaClaim)
	scriptRefresh     = redis.NewScript(1, luaRefresh)
	scriptRelease     = redis.NewScript(1, luaRelease)
	scriptComplete    = redis.NewScript(1, luaComplete)
	allScripts        = []*redis.Script{scriptOpenSession, scriptClaim, scriptRefresh, scriptRelease, scriptComplete}
)

// redisOpTimeout bounds each operation's pool wait, connect and reply (STORE-REDIS.md §7).
const redisOpTimeout = 2 * time.Second

type redisStore struct {
	pool   *redis.Pool
	prefix string
}

// redisTarget is a parsed store URL.
type redisTarget struct {
	addr   string // host:port
	db     int
	prefix string
	opts   []redis.DialOption
}

// parseRedisURL reads redis://[USER:PASSWORD@]HOST[:PORT][/DB][?prefix=P] (Appendix B): port
// 6379 and db 0 by default, the key prefix percent-encoded, `nsp:v1:` by default. Any other
// query parameter is refused rather than ignored.
func parseRedisURL(raw string) (*redisTarget, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "redis" || u.Hostname() == "" || u.Fragment != "" || u.Opaque != "" {
		return nil, fmt.Errorf("not a redis://HOST:PORT/DB URL: %q", raw)
	}
	t := &redisTarget{prefix: redisPrefix}
	port := u.Port()
	if port == "" {
		port = "6379"
	}
	if p, perr := strconv.Atoi(port); perr != nil || p < 1 || p > 65535 {
		return nil, fmt.Errorf("bad port in %q", raw)
	}
	t.addr = net.JoinHostPort(u.Hostname(), port)
	// Appendix B: the path is empty, "/" or "/DB"; a db=DB parameter (once) wins over it. DB is
	// ASCII decimal digits, read before any percent-decoding.
	if path := strings.TrimPrefix(u.EscapedPath(), "/"); path != "" {
		if t.db, err = databaseNumber(path); err != nil {
			return nil, fmt.Errorf("bad database %q in %q: the path is /DB, DB decimal digits", path, raw)
		}
	}
	query, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return nil, fmt.Errorf("bad query in %q", raw)
	}
	for key, values := range query {
		switch {
		case len(values) != 1:
			return nil, fmt.Errorf("URL parameter %q given %d times in %q", key, len(values), raw)
		case key == "prefix":
			t.prefix = values[0]
		case key == "db":
			if t.db, err = databaseNumber(values[0]); err != nil {
				return nil, fmt.Errorf("bad database db=%q in %q: decimal digits", values[0], raw)
			}
		default:
			return nil, fmt.Errorf("unsupported URL parameter %q in %q (only prefix= and db=)", key, raw)
		}
	}
	if u.User != nil {
		if pw, ok := u.User.Password(); ok {
			t.opts = append(t.opts, redis.DialPassword(pw))
			if name := u.User.Username(); name != "" {
				t.opts = append(t.opts, redis.DialUsername(name))
			}
		} else if name := u.User.Username(); name != "" {
			t.opts = append(t.opts, redis.DialPassword(name))
		}
	}
	return t, nil
}

// databaseNumber reads DB of Appendix B: ASCII decimal digits. More than 9 digits is no
// database a Redis server has (error, as any database it lacks is when selected).
func databaseNumber(text string) (int, error) {
	if !integerRe.MatchString(text) || len(strings.TrimLeft(text, "0")) > 9 {
		return 0, errors.New("not a database number")
	}
	return strconv.Atoi(text)
}

// openRedisStore connects, PINGs and loads the scripts, so that a bad URL or an unreachable
// Redis fails at start-up.
func openRedisStore(raw string, maxConns int) (*redisStore, error) {
	t, err := parseRedisURL(raw)
	if err != nil {
		return nil, err
	}
	opts := append(t.opts,
		redis.DialDatabase(t.db),
		redis.DialConnectTimeout(redisOpTimeout),
		redis.DialReadTimeout(redisOpTimeout),
		redis.DialWriteTimeout(redisOpTimeout),
	)
	pool := &redis.Pool{
		DialContext: func(ctx context.Context) (redis.Conn, error) {
			return redis.DialContext(ctx, "tcp", t.addr, opts...)
		},
		MaxIdle:     64,
		MaxActive:   minInt(maxConns, 256), // bounded; an op waits at most redisOpTimeout for one
		IdleTimeout: time.Minute,
		Wait:        true,
	}
	s := &redisStore{pool: pool, prefix: t.prefix}
	c, err := s.conn()
	if err != nil {
		pool.Close()
		return nil, err
	}
	defer c.Close()
	if _, err := c.Do("PING"); err != nil {
		pool.Close()
		return nil, &StoreError{err}
	}
	for _, sc := range allScripts {
		if err := sc.Load(c); err != nil {
			pool.Close()
			return nil, &StoreError{fmt.Errorf("SCRIPT LOAD: %w", err)}
		}
	}
	return s, nil
}

func (s *redisStore) conn() (redis.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), redisOpTimeout)
	defer cancel()
	c, err := s.pool.GetContext(ctx)
	if err != nil {
		return nil, &StoreError{err}
	}
	return c, nil
}

func (s *redisStore) key(id string) string { return s.prefix + "session:" + id }

// run executes one script on one pooled connection; every failure is a *StoreError.
func (s *redisStore) run(sc *redis.Script, id string, args ...interface{}) (interface{}, error) {
	c, err := s.conn()
	if err != nil {
		return nil, err
	}
	defer c.Close()
	reply, err := sc.Do(c, append([]interface{}{s.key(id)}, args...)...)
	if err != nil {
		return nil, &StoreError{err}
	}
	return reply, nil
}

func ms(v int64) string { return strconv.FormatInt(v, 10) }

// parseRecord checks seed and n as STORE-REDIS.md §2 requires: decimal, no sign, no leading
// zeros, in range; anything else is a store failure, never a guess.
func parseRecord(seedV, nV interface{}) (Record, error) {
	seedS, err1 := redis.String(seedV, nil)
	nS, err2 := redis.String(nV, nil)
	if err1 != nil || err2 != nil {
		return Record{}, &StoreError{errors.New("session hash lacks seed or n")}
	}
	seed, ok := strictDecimal(seedS)
	if !ok {
		return Record{}, &StoreError{fmt.Errorf("malformed seed %q", seedS)}
	}
	n, ok := strictDecimal(nS)
	if !ok || n < 1 || n > maxN {
		return Record{}, &StoreError{fmt.Errorf("malformed n %q", nS)}
	}
	return Record{Seed: seed, N: uint32(n)}, nil
}

func strictDecimal(s string) (uint64, bool) {
	if s == "" || len(s) > 20 || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	v, err := strconv.ParseUint(s, 10, 64)
	return v, err == nil
}

func (s *redisStore) OpenSession(id string, fresh Record, owner string, leaseMs int64) (Record, bool, error) {
	if err := checkOwner(owner); err != nil {
		return Record{}, false, err
	}
	if err := checkDuration(leaseMs); err != nil {
		return Record{}, false, err
	}
	reply, err := s.run(scriptOpenSession, id,
		strconv.FormatUint(fresh.Seed, 10), strconv.FormatUint(uint64(fresh.N), 10), owner, ms(leaseMs))
	if err != nil {
		return Record{}, false, err
	}
	vals, err := redis.Values(reply, nil)
	if err != nil || len(vals) != 3 {
		return Record{}, false, &StoreError{fmt.Errorf("open_session: unexpected reply %v", reply)}
	}
	rec, err := parseRecord(vals[0], vals[1])
	if err != nil {
		return Record{}, false, err
	}
	created, err := redis.Int64(vals[2], nil)
	if err != nil || (created != 0 && created != 1) {
		return Record{}, false, &StoreError{fmt.Errorf("open_session: bad created flag %v", vals[2])}
	}
	return rec, created == 1, nil
}

func (s *redisStore) Claim(id, owner string, leaseMs int64) (*Record, error) {
	if err := checkOwner(owner); err != nil {
		return nil, err
	}
	if err := checkDuration(leaseMs); err != nil {
		return nil, err
	}
	reply, err := s.run(scriptClaim, id, owner, ms(leaseMs))
	if err != nil {
		return nil, err
	}
	if reply == nil {
		return nil, nil
	}
	vals, err := redis.Values(reply, nil)
	if err != nil || len(vals) != 2 {
		return nil, &StoreError{fmt.Errorf("claim: unexpected reply %v", reply)}
	}
	rec, err := parseRecord(vals[0], vals[1])
	if err != nil {
		return nil, err
	}
	return &rec, nil
}

func (s *redisStore) flag(op string, sc *redis.Script, id string, args ...interface{}) (bool, error) {
	reply, err := s.run(sc, id, args...)
	if err != nil {
		return false, err
	}
	v, err := redis.Int64(reply, nil)
	if err != nil || (v != 0 && v != 1) {
		return false, &StoreError{fmt.Errorf("%s: unexpected reply %v", op, reply)}
	}
	return v == 1, nil
}

func (s *redisStore) Refresh(id, owner string, leaseMs int64) (bool, error) {
	if err := checkDuration(leaseMs); err != nil {
		return false, err
	}
	return s.flag("refresh", scriptRefresh, id, owner, ms(leaseMs))
}

// RefreshMany sends one pipeline of REFRESH calls (STORE-REDIS.md §4.1) and reads the replies
// in order. A failure part-way fails the whole batch. A NOSCRIPT (Redis lost its scripts) loads
// REFRESH and sends the batch again, once.
func (s *redisStore) RefreshMany(leases []Lease, leaseMs int64) ([]bool, error) {
	if err := checkDuration(leaseMs); err != nil {
		return nil, err
	}
	if len(leases) == 0 {
		return nil, nil
	}
	c, err := s.conn()
	if err != nil {
		return nil, err
	}
	defer c.Close()
	for attempt := 0; ; attempt++ {
		held, noscript, err := s.refreshPipeline(c, leases, leaseMs)
		if noscript && attempt == 0 {
			if err := scriptRefresh.Load(c); err != nil {
				return nil, &StoreError{err}
			}
			continue
		}
		return held, err
	}
}

func (s *redisStore) refreshPipeline(c redis.Conn, leases []Lease, leaseMs int64) ([]bool, bool, error) {
	for _, l := range leases {
		if err := scriptRefresh.SendHash(c, s.key(l.ClientID), l.Owner, ms(leaseMs)); err != nil {
			return nil, false, &StoreError{err}
		}
	}
	if err := c.Flush(); err != nil {
		return nil, false, &StoreError{err}
	}
	held := make([]bool, len(leases))
	noscript := false
	var firstErr error
	for i := range leases { // read every reply, so the connection stays in step
		v, err := redis.Int64(c.Receive())
		if rerr, ok := err.(redis.Error); ok && strings.HasPrefix(string(rerr), "NOSCRIPT") {
			noscript = true
			continue
		}
		if err != nil || (v != 0 && v != 1) {
			if firstErr == nil {
				firstErr = &StoreError{fmt.Errorf("refresh_many: reply %d: %v %v", i, v, err)}
			}
			continue
		}
		held[i] = v == 1
	}
	if noscript {
		return nil, true, &StoreError{errors.New("NOSCRIPT")}
	}
	return held, false, firstErr
}

func (s *redisStore) Release(id, owner string, ttlMs int64) (bool, error) {
	if err := checkDuration(ttlMs); err != nil {
		return false, err
	}
	return s.flag("release", scriptRelease, id, owner, ms(ttlMs))
}

func (s *redisStore) Complete(id, owner string) (bool, error) {
	return s.flag("complete", scriptComplete, id, owner)
}

func (s *redisStore) Get(id string) (*Record, error) {
	c, err := s.conn()
	if err != nil {
		return nil, err
	}
	defer c.Close()
	vals, err := redis.Values(c.Do("HMGET", s.key(id), "seed", "n"))
	if err != nil {
		return nil, &StoreError{err}
	}
	if len(vals) != 2 {
		return nil, &StoreError{fmt.Errorf("HMGET: unexpected reply %v", vals)}
	}
	if vals[0] == nil && vals[1] == nil {
		return nil, nil
	}
	rec, err := parseRecord(vals[0], vals[1])
	if err != nil {
		return nil, err
	}
	return &rec, nil
}

// globEscape escapes the glob characters of a SCAN pattern (STORE-REDIS.md §4, `count`).
func globEscape(s string) string {
	var b strings.Builder
	for _, c := range s {
		if strings.ContainsRune(`\*?[]`, c) {
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func (s *redisStore) Count() (int, error) {
	c, err := s.conn()
	if err != nil {
		return 0, err
	}
	defer c.Close()
	pattern := globEscape(s.prefix) + "session:*"
	cursor, count := "0", 0
	for {
		vals, err := redis.Values(c.Do("SCAN", cursor, "MATCH", pattern, "COUNT", 1000))
		if err != nil || len(vals) != 2 {
			return 0, &StoreError{fmt.Errorf("SCAN: %v", err)}
		}
		cursor, err = redis.String(vals[0], nil)
		if err != nil {
			return 0, &StoreError{err}
		}
		keys, err := redis.Values(vals[1], nil)
		if err != nil {
			return 0, &StoreError{err}
		}
		count += len(keys)
		if cursor == "0" {
			return count, nil
		}
	}
}

func (s *redisStore) Close() error { return s.pool.Close() }

func minInt(a, b int) int {
	if a < b {
		return a
	}
	return b
}
