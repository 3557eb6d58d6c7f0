package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/tokenkeeper/tokenkeeper"
	"golang.org/x/oauth2"
)

// Options configures a Store. The zero value is usable: plain-text tokens
// under "tokenkeeper:", a 10-second lock, sources assumed to rotate refresh
// tokens.
type Options struct {
	// Prefix starts every key and the pub/sub channel's name. Processes that
	// share tokens use the same Prefix (and the same Key). If empty,
	// "tokenkeeper:".
	Prefix string
	// Key, if not empty, encrypts stored tokens with AES-256-GCM; it must be
	// KeySize (32) bytes. The token's name and version are authenticated with
	// each value. If empty, tokens are stored as plain JSON.
	Key []byte
	// LockTTL is the lease of a token's refresh lock. The holder extends it
	// every LockTTL/3 while its source runs; if the holder dies, another
	// process takes over at most LockTTL later. If zero, 10 seconds; it must
	// not be under 10 milliseconds.
	LockTTL time.Duration
	// PollInterval is how often a process waiting for another's refresh
	// looks at Redis, in case a pub/sub message is lost. If zero, LockTTL/10,
	// kept between 50 milliseconds and 1 second.
	PollInterval time.Duration
	// ResyncInterval is how often the stored versions of all tokens are
	// re-read, the safety net under pub/sub. If zero, 15 seconds.
	ResyncInterval time.Duration
	// ProbeInterval is how often Redis is pinged while it is unreachable, and
	// how often the pub/sub connection is checked when it is quiet. If zero,
	// 1 second.
	ProbeInterval time.Duration
	// OpTimeout bounds each Redis operation the store starts on its own (the
	// watcher's reads and write-backs, lock releases). If zero, 3 seconds.
	OpTimeout time.Duration
	// NonRotating declares that the sources of coordinated tokens do not
	// rotate refresh tokens (a refresh token stays valid after use, as with
	// Cognito or client credentials). Only such a token is refreshed by a
	// process on its own while Redis is unreachable. If false, sources are
	// assumed to rotate: a refresh token is then only ever sent under the
	// lock, and while Redis is unreachable the token is not refreshed (it is
	// served until it expires). [Rotates] overrides it per token.
	NonRotating bool
	// Extras names the extra fields of a token (see oauth2.Token.Extra) that
	// are stored with it. If nil, DefaultExtras (the file store's list).
	Extras []string
	// OnEvent, if not nil, receives the store's events on a goroutine of its
	// own; events are dropped while it lags more than 256 behind.
	OnEvent func(Event)
}

// Defaults for zero fields of Options.
const (
	DefaultPrefix         = "tokenkeeper:"
	DefaultLockTTL        = 10 * time.Second
	DefaultResyncInterval = 15 * time.Second
	DefaultProbeInterval  = time.Second
	DefaultOpTimeout      = 3 * time.Second
)

// DefaultExtras are the extra token fields stored when Options.Extras is
// nil: "id_token" (OIDC), "scope", "refresh_in" (a server's hint, read by
// the keeper), "refresh_expires_in" (Keycloak) and "refresh_token_expires_in"
// (Azure AD, GitHub), as in the file store.
var DefaultExtras = []string{"id_token", "scope", "refresh_in", "refresh_expires_in", "refresh_token_expires_in"}

// Sentinel errors.
var (
	// ErrUnavailable is wrapped by errors caused by Redis being unreachable.
	ErrUnavailable = errors.New("redisstore: redis unavailable")
	// ErrConflict is wrapped by the error of a Save refused by the version
	// check: another process stored a newer token, which wins.
	ErrConflict = errors.New("redisstore: version conflict")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("redisstore: store is closed")
)

// Store keeps tokens in Redis for several processes. It implements
// tokenkeeper.Store; with [Store.Coordinate] and [Store.Attach] it makes a
// fleet of keepers refresh each token once per cycle. See the package
// documentation for the protocol.
//
// A Store is safe for concurrent use. It runs two goroutines (three with
// Options.OnEvent); Close stops them.
type Store struct {
	c       redis.UniversalClient
	opts    Options
	codec   *codec
	channel string
	ev      *dispatcher

	keeper atomic.Pointer[tokenkeeper.Keeper]

	mu         sync.Mutex
	entries    map[string]*entry
	news       map[string]bool      // names the watcher must look at
	resyncAll  bool                 // the watcher must look at every name
	deferred   map[string]time.Time // name → when to look again
	deferSince map[string]time.Time // name → since when its adoption is deferred
	probeNow   bool                 // the subscriber lost its connection: ping
	degSince   time.Time
	lastErr    string

	degraded atomic.Bool
	poke     chan struct{}

	ctx       context.Context // the store's lifetime; cancelled by Close
	cancel    context.CancelFunc
	ps        *redis.PubSub
	wg        sync.WaitGroup
	closed    atomic.Bool
	closeOnce sync.Once

	st counters
}

type counters struct {
	sourceCalls, localRefreshes, writes, adopted, joined, waits, takeovers, conflicts, writeBacks, errors atomic.Uint64
}

// Status is a snapshot of a store's state and counters, for status pages and
// metrics. It holds no secret.
type Status struct {
	// Degraded is true while Redis is unreachable; Since is when that began.
	Degraded bool
	Since    time.Time
	// LastError is the last Redis error seen (secret-free).
	LastError string

	SourceCalls    uint64 // refreshes this process made under the lock
	LocalRefreshes uint64 // refreshes made without Redis (degraded)
	Writes         uint64 // tokens written to Redis
	Adopted        uint64 // tokens of other processes installed by the watcher
	Joined         uint64 // refreshes answered with another process's token
	Waits          uint64 // refreshes that found the lock held and waited
	Takeovers      uint64 // locks taken over from a holder that did not deliver
	Conflicts      uint64 // writes refused by the version check or a lost lock
	WriteBacks     uint64 // tokens written back after Redis returned
	Errors         uint64 // stored tokens that could not be read
	DroppedEvents  uint64
}

// New returns a store on c (a *redis.Client, *redis.ClusterClient or failover
// client) and starts its watcher. The caller keeps ownership of c: close it
// after Close. New does not contact Redis; an unreachable Redis only makes
// the store start degraded.
func New(c redis.UniversalClient, opts Options) (*Store, error) {
	if c == nil {
		return nil, errors.New("redisstore: nil redis client")
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"LockTTL", opts.LockTTL}, {"PollInterval", opts.PollInterval}, {"ResyncInterval", opts.ResyncInterval},
		{"ProbeInterval", opts.ProbeInterval}, {"OpTimeout", opts.OpTimeout}} {
		if d.v < 0 {
			return nil, fmt.Errorf("redisstore: %s is negative (%v)", d.name, d.v)
		}
	}
	if opts.LockTTL == 0 {
		opts.LockTTL = DefaultLockTTL
	}
	if opts.LockTTL < 10*time.Millisecond {
		return nil, fmt.Errorf("redisstore: LockTTL %v is under 10ms", opts.LockTTL)
	}
	if opts.PollInterval == 0 {
		opts.PollInterval = min(max(opts.LockTTL/10, 50*time.Millisecond), time.Second)
	}
	if opts.ResyncInterval == 0 {
		opts.ResyncInterval = DefaultResyncInterval
	}
	if opts.ProbeInterval == 0 {
		opts.ProbeInterval = DefaultProbeInterval
	}
	if opts.OpTimeout == 0 {
		opts.OpTimeout = DefaultOpTimeout
	}
	if opts.Extras == nil {
		opts.Extras = DefaultExtras
	}
	cd, err := newCodec(opts.Key, opts.Prefix, opts.Extras)
	if err != nil {
		return nil, err
	}
	s := &Store{
		c:        c,
		opts:     opts,
		codec:    cd,
		channel:  opts.Prefix + "events",
		entries:  make(map[string]*entry),
		news:     make(map[string]bool),
		deferred: make(map[string]time.Time),
		poke:     make(chan struct{}, 1),
	}
	s.opts.Key = nil // the codec holds the cipher; do not keep a second copy
	s.ev = newDispatcher(opts.OnEvent)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.ps = c.Subscribe(s.ctx) // no channel yet: connects in the subscriber
	s.wg.Add(2)
	go func() { defer s.wg.Done(); s.subscriber() }()
	go func() { defer s.wg.Done(); s.monitor() }()
	return s, nil
}

// Close stops the store's goroutines and waits for them. Refreshes running
// through [Store.Coordinate] fail with ErrClosed at their next Redis step.
// Close the keeper first: a keeper that outlives its store cannot save.
// Close does not close the redis client. It is idempotent and returns nil.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		s.cancel()
		_ = s.ps.Close()
		s.wg.Wait()
		s.ev.stop()
	})
	return nil
}

// Degraded reports whether Redis is currently unreachable.
func (s *Store) Degraded() bool { return s.degraded.Load() }

// Status returns the store's state and counters.
func (s *Store) Status() Status {
	st := Status{
		Degraded:       s.degraded.Load(),
		SourceCalls:    s.st.sourceCalls.Load(),
		LocalRefreshes: s.st.localRefreshes.Load(),
		Writes:         s.st.writes.Load(),
		Adopted:        s.st.adopted.Load(),
		Joined:         s.st.joined.Load(),
		Waits:          s.st.waits.Load(),
		Takeovers:      s.st.takeovers.Load(),
		Conflicts:      s.st.conflicts.Load(),
		WriteBacks:     s.st.writeBacks.Load(),
		Errors:         s.st.errors.Load(),
		DroppedEvents:  s.ev.dropped.Load(),
	}
	s.mu.Lock()
	if st.Degraded {
		st.Since = s.degSince
	}
	st.LastError = s.lastErr
	s.mu.Unlock()
	return st
}

func (s *Store) tokKey(name string) string  { return s.opts.Prefix + "{" + name + "}:tok" }
func (s *Store) lockKey(name string) string { return s.opts.Prefix + "{" + name + "}:lock" }

// opCtx bounds an operation the store starts on its own.
func (s *Store) opCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(s.ctx, s.opts.OpTimeout)
}

// stored is what Redis holds for a token.
type stored struct {
	version int64
	exists  bool          // the key exists (a token or a tombstone)
	tok     *oauth2.Token // nil: none, deleted, or undecodable
	err     error         // decoding error
}

// decodeStored builds a stored from a version and a raw value (nil: none).
func (s *Store) decodeStored(name string, v int64, raw any) stored {
	st := stored{version: v, exists: v > 0}
	if b, ok := asBytes(raw); ok {
		st.exists = true
		st.tok, st.err = s.codec.decode(name, v, b)
	}
	return st
}

func asBytes(v any) ([]byte, bool) {
	switch b := v.(type) {
	case string:
		return []byte(b), true
	case []byte:
		return b, true
	}
	return nil, false
}

// read returns what Redis holds for name.
func (s *Store) read(ctx context.Context, name string) (stored, error) {
	vals, err := s.c.HMGet(ctx, s.tokKey(name), "v", "d").Result()
	if err != nil {
		return stored{}, err
	}
	var v int64
	if str, ok := vals[0].(string); ok {
		v, _ = strconv.ParseInt(str, 10, 64)
	}
	return s.decodeStored(name, v, vals[1]), nil
}

// Load returns the stored token. It implements tokenkeeper.Store: the error
// wraps tokenkeeper.ErrNotFound when nothing (or a deleted token) is stored,
// ErrUndecodable for a value this process cannot read, and ErrUnavailable
// when Redis is unreachable.
func (s *Store) Load(ctx context.Context, name string) (*oauth2.Token, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	st, err := s.read(ctx, name)
	if err != nil {
		return nil, s.redisErr(ctx, err)
	}
	e := s.entry(name)
	e.observe(st)
	if st.err != nil {
		s.st.errors.Add(1)
		return nil, st.err
	}
	if st.tok == nil {
		return nil, fmt.Errorf("redisstore: token %q: %w", name, tokenkeeper.ErrNotFound)
	}
	// A keeper loads a token when it is added: until it saves or adopts
	// another, it holds this one.
	e.mu.Lock()
	if e.held == nil {
		e.held = st.tok
	}
	e.mu.Unlock()
	return st.tok, nil
}

// Save stores tok. It implements tokenkeeper.Store and is what a keeper
// calls after every refresh, before it hands the new token out.
//
// Saving the token that is already stored (because [Store.Coordinate]
// wrote it under the lock, or because it came from another process) writes
// nothing. Any other token is written if the stored version is still the one
// this process last saw: a Save never overwrites a newer token; it fails
// with ErrConflict instead, and the newer token is installed in the attached
// keeper. While Redis is unreachable the token is kept to be written back
// when it returns, and Save fails with ErrUnavailable (the keeper reports
// EventStoreFailed and serves the token anyway).
func (s *Store) Save(ctx context.Context, name string, tok *oauth2.Token) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if tok == nil {
		return fmt.Errorf("redisstore: token %q: nil token", name)
	}
	e := s.entry(name)
	// The watcher must not write this token back while it is being saved.
	if err := e.lock(ctx); err != nil {
		return fmt.Errorf("redisstore: saving token %q: %w", name, err)
	}
	defer e.unlock()
	e.mu.Lock()
	prev := e.held
	e.held = tok
	if e.tok != nil && sameToken(e.tok, tok) {
		e.mu.Unlock()
		return nil // already stored: the write happened under the lock
	}
	if e.pending != nil && sameToken(e.pending, tok) {
		e.mu.Unlock()
		return fmt.Errorf("redisstore: token %q refreshed while redis was unreachable; it will be written back: %w", name, ErrUnavailable)
	}
	seen, expected := e.seen, e.version
	e.mu.Unlock()
	// The fence: tok replaces the token the keeper held, so the stored
	// version must still be that token's (the watcher may have seen newer
	// ones meanwhile).
	if r := e.relOf(prev); r.known {
		expected = r.version
	}

	if s.degraded.Load() {
		e.keepPending(tok)
		return fmt.Errorf("redisstore: saving token %q: %w", name, ErrUnavailable)
	}
	if !seen {
		st, err := s.read(ctx, name)
		if err != nil {
			err = s.redisErr(ctx, err)
			if errors.Is(err, ErrUnavailable) {
				e.keepPending(tok)
			}
			return err
		}
		e.observe(st)
		expected = st.version
	}
	v, err := s.commit(ctx, name, "", expected, tok)
	switch {
	case err != nil:
		if errors.Is(err, ErrUnavailable) {
			e.keepPending(tok)
		}
		return err
	case v < 0:
		s.st.conflicts.Add(1)
		cerr := fmt.Errorf("redisstore: saving token %q: stored version is no longer %d: %w", name, expected, ErrConflict)
		s.ev.emit(Event{Kind: EventConflict, Token: name, Err: cerr})
		e.mu.Lock()
		e.yield = true
		e.mu.Unlock()
		s.notice(name) // install the newer token
		return cerr
	}
	return nil
}

// Delete removes the stored token, leaving a tombstone so that versions
// never go back. It implements tokenkeeper.Store. Other processes' keepers
// keep the token they hold.
func (s *Store) Delete(ctx context.Context, name string) error {
	if s.closed.Load() {
		return ErrClosed
	}
	v, err := deleteScript.Run(ctx, s.c, []string{s.tokKey(name)}, s.channel, name).Int64()
	if err != nil {
		return s.redisErr(ctx, err)
	}
	e := s.entry(name)
	e.mu.Lock()
	if v > 0 {
		e.version = v
		e.maxVersion = max(e.maxVersion, v)
	}
	e.seen = true
	e.tok, e.pending, e.held = nil, nil, nil
	e.mu.Unlock()
	return nil
}

// commit encodes tok at the version after expected (or after the highest
// version this process saw, if Redis lost its data) and runs commitScript.
// It returns the new version, or -1 (lock lost) or -2 (version conflict).
// On success the entry records the token.
func (s *Store) commit(ctx context.Context, name, owner string, expected int64, tok *oauth2.Token) (int64, error) {
	floor := s.entry(name).highest()
	data, err := s.codec.encode(name, max(expected, floor)+1, tok)
	if err != nil {
		return 0, err
	}
	v, err := commitScript.Run(ctx, s.c, []string{s.tokKey(name), s.lockKey(name)},
		owner, expected, data, s.channel, name, floor).Int64()
	if err != nil {
		return 0, s.redisErr(ctx, err)
	}
	if v > 0 {
		s.st.writes.Add(1)
		s.entry(name).record(v, tok)
	}
	return v, nil
}

// redisErr classifies an error of a Redis operation. Unless ctx ended, an
// error that says Redis cannot serve (network, timeout, loading, failover)
// marks the store degraded and is returned wrapping ErrUnavailable.
func (s *Store) redisErr(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if s.closed.Load() {
		return ErrClosed
	}
	if errors.Is(ctx.Err(), context.Canceled) {
		return fmt.Errorf("redisstore: %w", ctx.Err())
	}
	// A deadline that passed means Redis did not answer in time: unavailable.
	if !unavailable(err) {
		return fmt.Errorf("redisstore: %w", err)
	}
	s.setDegraded(err)
	return fmt.Errorf("%w: %v", ErrUnavailable, err)
}

// unavailable reports whether err means Redis cannot serve now, as opposed
// to refusing a command.
func unavailable(err error) bool {
	var rerr redis.Error
	if errors.As(err, &rerr) {
		msg := rerr.Error()
		for _, p := range []string{"LOADING", "READONLY", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "BUSY", "NOREPLICAS", "MOVED", "ASK"} {
			if strings.HasPrefix(msg, p) {
				return true
			}
		}
		return false
	}
	// Network errors, timeouts, a closed client, a full pool.
	return true
}

// setDegraded records that Redis is unreachable.
func (s *Store) setDegraded(err error) {
	s.mu.Lock()
	s.lastErr = err.Error()
	s.mu.Unlock()
	if s.degraded.CompareAndSwap(false, true) {
		s.mu.Lock()
		s.degSince = time.Now()
		s.mu.Unlock()
		s.ev.emit(Event{Kind: EventDegraded, Err: err})
		s.wake()
	}
}

func (s *Store) wake() {
	select {
	case s.poke <- struct{}{}:
	default:
	}
}

// notice asks the watcher to look at name.
func (s *Store) notice(name string) {
	s.mu.Lock()
	s.news[name] = true
	s.mu.Unlock()
	s.wake()
}

// entry returns the local state of name, creating it.
func (s *Store) entry(name string) *entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.entries[name]
	if e == nil {
		e = newEntry(name, !s.opts.NonRotating)
		s.entries[name] = e
	}
	return e
}

// lookup returns the local state of name, or nil.
func (s *Store) lookup(name string) *entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.entries[name]
}
