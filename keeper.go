package tokenkeeper

import (
	"context"
	"fmt"
	"hash/maphash"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tokenkeeper/tokenkeeper/internal/breaker"
	"github.com/tokenkeeper/tokenkeeper/internal/queue"
	"github.com/tokenkeeper/tokenkeeper/internal/usage"
	"golang.org/x/oauth2"
)

// Config configures a Keeper. The zero value is usable: eight workers, an
// in-memory keeper, no events.
type Config struct {
	// Workers is the number of background refresh workers shared by all
	// tokens. If zero, 8.
	Workers int
	// MaxQueued bounds the refreshes waiting for a worker. When the queue is
	// full, a caller that needs a token refreshes it on its own goroutine and
	// a planned refresh is tried again a second later. If zero, 65536.
	MaxQueued int
	// GroupConcurrency is how many refreshes of one group (tokens of one
	// identity provider, see TokenConfig.Group) may run at once. If zero, 4.
	GroupConcurrency int
	// Breaker configures the circuit breaker of each group.
	Breaker BreakerSettings
	// Policy is the policy of tokens added without one.
	Policy Policy
	// Store, if not nil, receives every new token before it is handed out,
	// and supplies the initial token of a token added without one.
	Store Store
	// OnEvent, if not nil, receives the keeper's events, in order, on a
	// goroutine of its own; no internal lock is held while it runs. If it
	// falls behind by more than EventBuffer events, newer events are dropped
	// and counted (see [Keeper.DroppedEvents]).
	OnEvent func(Event)
	// EventBuffer is the event queue's length. If zero, 1024.
	EventBuffer int
	// Logger, if not nil, receives one record per event (debug for routine
	// events, warn for failures, error for re-authentication). Token values
	// are never logged.
	Logger *slog.Logger
	// Location is the time zone whose days and weeks the usage model learns.
	// If nil, time.Local.
	Location *time.Location
}

// BreakerSettings configures the circuit breaker of each group. Zero fields
// take the defaults shown.
type BreakerSettings struct {
	// Failures is the number of consecutive transient failures that open the
	// breaker. If zero, 5.
	Failures int
	// OpenFor is how long the breaker stays open the first time; each failed
	// probe doubles it. If zero, 5 seconds.
	OpenFor time.Duration
	// MaxOpen caps the open period. If zero, 30 seconds (the comparison in
	// docs/benchmarks.md showed a 5-minute cap keeping callers away from a
	// recovered provider for minutes).
	MaxOpen time.Duration
}

// TokenConfig describes a token to keep.
type TokenConfig struct {
	// Name identifies the token; it must be unique within the keeper.
	Name string
	// Source obtains new tokens. Required.
	Source Source
	// Token is the initial token (it may carry only a refresh token). If nil,
	// the keeper loads it from its Store, else asks the Source at once.
	Token *oauth2.Token
	// Policy overrides the keeper's default policy when not nil.
	Policy *Policy
	// Group names the identity provider the token comes from: tokens of one
	// group share a circuit breaker and a concurrency limit. If empty, the
	// token is a group of its own.
	Group string
}

// Keeper keeps named tokens fresh in the background.
//
// Tokens are handed out by [Keeper.Token] or, without a name lookup, by a
// [Handle]. While the cached token is valid that costs a few atomic loads: no
// I/O, no lock a refresh holds, no allocation. Refreshes run on a shared pool
// of workers, planned inside each token's refresh window at the application's
// quiet moments (see the package documentation). Only a caller holding no
// valid token waits, for the one refresh in flight for that token.
//
// A Keeper is safe for concurrent use. Close it to stop its goroutines.
type Keeper struct {
	cfg    Config
	clock  *clock
	usage  *usage.Model
	q      *queue.Queue[*Handle]
	sched  *scheduler
	events *dispatcher
	seed   maphash.Seed
	shards [numShards]shard

	groupsMu sync.Mutex
	groups   map[string]*group

	ctx       context.Context // the keeper's lifetime; cancelled by Close
	cancel    context.CancelFunc
	closed    atomic.Bool
	closeOnce sync.Once
	wg        sync.WaitGroup

	defPolicy *Policy // cfg.Policy with defaults, shared

	randFloat func() float64 // jitter source; tests replace it
	panics    atomic.Uint64  // source panics recovered
	waits     atomic.Uint64  // callers that had to wait for a refresh
}

const numShards = 256

// shard is a copy-on-write map: readers load it without a lock.
type shard struct {
	mu sync.Mutex
	m  atomic.Pointer[map[string]*Handle]
}

type group struct {
	name string
	br   *breaker.Breaker
	refs int
}

// New returns a running keeper.
func New(cfg Config) (*Keeper, error) {
	if cfg.Workers < 0 || cfg.MaxQueued < 0 || cfg.GroupConcurrency < 0 || cfg.EventBuffer < 0 {
		return nil, fmt.Errorf("tokenkeeper: negative size in Config")
	}
	if cfg.Breaker.Failures < 0 || cfg.Breaker.OpenFor < 0 || cfg.Breaker.MaxOpen < 0 {
		return nil, fmt.Errorf("tokenkeeper: negative value in Config.Breaker")
	}
	if err := cfg.Policy.validate(); err != nil {
		return nil, err
	}
	if cfg.Workers == 0 {
		cfg.Workers = 8
	}
	if cfg.GroupConcurrency == 0 {
		cfg.GroupConcurrency = 4
	}
	if cfg.EventBuffer == 0 {
		cfg.EventBuffer = 1024
	}
	k := &Keeper{
		cfg:       cfg,
		clock:     newClock(),
		usage:     usage.New(usage.Config{Location: cfg.Location}),
		seed:      maphash.MakeSeed(),
		groups:    make(map[string]*group),
		randFloat: rand.Float64,
	}
	def := cfg.Policy.withDefaults()
	k.defPolicy = &def
	for i := range k.shards {
		m := make(map[string]*Handle)
		k.shards[i].m.Store(&m)
	}
	k.ctx, k.cancel = context.WithCancel(context.Background())
	k.events = newDispatcher(cfg.OnEvent, cfg.Logger, cfg.EventBuffer)
	k.sched = newScheduler(k)
	k.clock.lastActivity = k.usage.LastActivity
	k.clock.onTick = k.usage.Roll
	k.clock.onJump = k.onClockJump
	k.q = queue.New(queue.Config{
		Workers:    cfg.Workers,
		MaxQueued:  cfg.MaxQueued,
		GroupLimit: cfg.GroupConcurrency,
	}, func(h *Handle) { h.runJob() })
	k.wg.Add(3)
	go func() { defer k.wg.Done(); k.clock.run(k.ctx) }()
	go func() { defer k.wg.Done(); k.sched.run(k.ctx) }()
	go func() { defer k.wg.Done(); k.events.run() }()
	return k, nil
}

func (k *Keeper) shardOf(name string) *shard {
	return &k.shards[maphash.String(k.seed, name)%numShards]
}

// lookup finds a handle without taking a lock.
func (k *Keeper) lookup(name string) *Handle {
	return (*k.shardOf(name).m.Load())[name]
}

// Add starts keeping a token and returns its handle. It fails with
// ErrDuplicateToken for a name already held, ErrClosed after Close, and a
// descriptive error for a missing Source or an invalid Policy. A token with
// no initial value (and none in the Store) is fetched at once in the
// background.
func (k *Keeper) Add(tc TokenConfig) (*Handle, error) {
	if k.closed.Load() {
		return nil, ErrClosed
	}
	if tc.Name == "" {
		return nil, fmt.Errorf("tokenkeeper: empty token name")
	}
	if tc.Source == nil {
		return nil, fmt.Errorf("tokenkeeper: token %q has no Source", tc.Name)
	}
	pol := k.defPolicy
	if tc.Policy != nil {
		if err := tc.Policy.validate(); err != nil {
			return nil, fmt.Errorf("token %q: %w", tc.Name, err)
		}
		p := tc.Policy.withDefaults()
		pol = &p
	}
	grp := tc.Group
	if grp == "" {
		grp = "token:" + tc.Name
	}
	h := &Handle{
		k:     k,
		name:  tc.Name,
		group: grp,
		src:   tc.Source,
		pol:   pol,
	}
	added := k.clock.wallTime()
	if !pol.NoJitter {
		h.jitter = k.randFloat()
	}
	initial, issued := tc.Token, added
	if initial == nil && k.cfg.Store != nil {
		ctx, cancel := context.WithTimeout(k.ctx, h.pol.AttemptTimeout)
		var (
			t       *oauth2.Token
			savedAt time.Time
			err     error
		)
		if sl, ok := k.cfg.Store.(SavedAtLoader); ok {
			t, savedAt, err = sl.LoadSavedAt(ctx, tc.Name)
		} else {
			t, err = k.cfg.Store.Load(ctx, tc.Name)
		}
		cancel()
		switch {
		case err == nil:
			initial = t
			if !savedAt.IsZero() && savedAt.Before(added) && (t.Expiry.IsZero() || savedAt.Before(t.Expiry)) {
				issued = savedAt
			}
		case !isNotFound(err):
			return nil, fmt.Errorf("tokenkeeper: loading token %q from store: %w", tc.Name, err)
		}
	}
	if initial != nil {
		h.cur.Store(h.snapshotOf(initial, issued, time.Time{}))
	}
	h.lastUsed.Store(added.Unix())

	s := k.shardOf(tc.Name)
	s.mu.Lock()
	old := *s.m.Load()
	if _, dup := old[tc.Name]; dup {
		s.mu.Unlock()
		return nil, &nameError{name: tc.Name, err: ErrDuplicateToken}
	}
	if k.closed.Load() {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	h.g = k.acquireGroup(grp)
	m := make(map[string]*Handle, len(old)+1)
	for n, v := range old {
		m[n] = v
	}
	m[tc.Name] = h
	s.m.Store(&m)
	s.mu.Unlock()

	k.sched.evaluateSoon(h)
	return h, nil
}

func (k *Keeper) acquireGroup(name string) *group {
	k.groupsMu.Lock()
	defer k.groupsMu.Unlock()
	g := k.groups[name]
	if g == nil {
		g = &group{name: name, br: breaker.New(breaker.Settings{
			Failures: k.cfg.Breaker.Failures,
			OpenFor:  k.cfg.Breaker.OpenFor,
			MaxOpen:  k.cfg.Breaker.MaxOpen,
		})}
		k.groups[name] = g
	}
	g.refs++
	return g
}

func (k *Keeper) releaseGroup(g *group) {
	k.groupsMu.Lock()
	defer k.groupsMu.Unlock()
	g.refs--
	if g.refs <= 0 && k.groups[g.name] == g {
		delete(k.groups, g.name)
	}
}

// Remove stops keeping the named token. Callers waiting for its refresh get
// an error wrapping ErrUnknownToken; a refresh already running completes, and
// its token is saved to the Store (the refresh token it replaced may be
// spent) but not handed out. Remove itself does not touch the Store. A Handle obtained earlier
// keeps handing out its cached token while that is valid, and fails with
// ErrUnknownToken once it would need a refresh.
func (k *Keeper) Remove(name string) error {
	s := k.shardOf(name)
	s.mu.Lock()
	old := *s.m.Load()
	h, ok := old[name]
	if !ok {
		s.mu.Unlock()
		return &nameError{name: name, err: ErrUnknownToken}
	}
	m := make(map[string]*Handle, len(old))
	for n, v := range old {
		if n != name {
			m[n] = v
		}
	}
	s.m.Store(&m)
	s.mu.Unlock()

	h.removed.Store(true)
	k.sched.set(h, 0)
	k.q.Remove(h)
	h.abandonFlight(&nameError{name: name, err: ErrUnknownToken})
	k.releaseGroup(h.g)
	k.emit(Event{Kind: EventRemoved, Token: name, Group: h.group})
	return nil
}

// Handle returns the handle of the named token.
func (k *Keeper) Handle(name string) (*Handle, error) {
	if h := k.lookup(name); h != nil {
		return h, nil
	}
	return nil, &nameError{name: name, err: ErrUnknownToken}
}

// Names returns the names of the tokens the keeper holds, in no order.
func (k *Keeper) Names() []string {
	var names []string
	for i := range k.shards {
		for n := range *k.shards[i].m.Load() {
			names = append(names, n)
		}
	}
	return names
}

func (k *Keeper) handles() []*Handle {
	var hs []*Handle
	for i := range k.shards {
		for _, h := range *k.shards[i].m.Load() {
			hs = append(hs, h)
		}
	}
	return hs
}

// Token returns the named token; see [Handle.TokenContext].
func (k *Keeper) Token(ctx context.Context, name string) (*oauth2.Token, error) {
	h := k.lookup(name)
	if h == nil {
		return nil, &nameError{name: name, err: ErrUnknownToken}
	}
	return h.get(ctx, 0)
}

// TokenValidFor returns the named token, valid for at least min; see
// [Handle.TokenValidFor].
func (k *Keeper) TokenValidFor(ctx context.Context, name string, min time.Duration) (*oauth2.Token, error) {
	h := k.lookup(name)
	if h == nil {
		return nil, &nameError{name: name, err: ErrUnknownToken}
	}
	return h.get(ctx, min)
}

// Refresh refreshes the named token now, ahead of any plan, and waits for the
// result (or for ctx). If a refresh is already in flight, it waits for that one.
func (k *Keeper) Refresh(ctx context.Context, name string) (*oauth2.Token, error) {
	h := k.lookup(name)
	if h == nil {
		return nil, &nameError{name: name, err: ErrUnknownToken}
	}
	return h.Refresh(ctx)
}

// NoteActivity tells the usage model that the application is active now,
// for activity that is not a token fetch (a key press, a page view). Token
// fetches are recorded without it. It is as cheap as a token fetch.
func (k *Keeper) NoteActivity() {
	k.usage.Record(k.clock.now())
}

// NoteActivityAt records activity at t (for an agent relaying activity that
// happened a moment ago). Times in the future are recorded as now.
func (k *Keeper) NoteActivityAt(t time.Time) {
	n := k.clock.now()
	if u := t.UnixNano(); u < n {
		n = u
	}
	k.usage.Record(n)
}

// Timeline returns the application's activity for the last n minutes
// (active seconds per minute, oldest first; at most 1440 minutes).
func (k *Keeper) Timeline(n int) []int {
	return k.usage.Timeline(k.clock.precise(), n)
}

// Waits returns how many token fetches had to wait for a refresh (because
// no valid token was cached), over all tokens. A fetch with a ctx that was
// already done does not wait and is not counted.
func (k *Keeper) Waits() uint64 { return k.waits.Load() }

// ActiveSeconds reports, for each of the last n seconds (oldest first, at
// most 3600), whether the application was active in it: the fine-grained
// view of activity for status pages showing short-lived tokens.
func (k *Keeper) ActiveSeconds(n int) []bool {
	return k.usage.Seconds(k.clock.precise(), n)
}

// DroppedEvents returns how many events were dropped because OnEvent fell
// behind.
func (k *Keeper) DroppedEvents() uint64 { return k.events.dropped.Load() }

// QueueStats returns the number of queued and running refreshes and how many
// worker panics were recovered.
func (k *Keeper) QueueStats() (queued, running int, panics uint64) {
	s := k.q.Stats()
	return s.Queued, s.Running, s.Panics + k.panics.Load()
}

// Close stops the keeper: it cancels refreshes in flight, stops its
// goroutines and waits for them. Callers waiting for a refresh get ErrClosed.
// Afterwards every method that needs the background machinery returns
// ErrClosed; a Handle still returns a cached token that is valid. Close is
// idempotent and always returns nil. A token that a cancelled refresh did
// receive is still saved to the Store. Use Shutdown to let refreshes in
// flight finish first.
func (k *Keeper) Close() error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	k.Shutdown(ctx)
	return nil
}

// Shutdown stops the keeper like Close, but first lets the refreshes that are
// running finish, until ctx is done (then they are cancelled). No new refresh
// starts once Shutdown is called. It returns ctx's error if it had to cancel,
// and nil otherwise (also when the keeper was already closed).
func (k *Keeper) Shutdown(ctx context.Context) error {
	var err error
	k.closeOnce.Do(func() {
		k.closed.Store(true)
		drained := make(chan struct{})
		go func() { k.q.Close(); close(drained) }()
		select {
		case <-drained:
		case <-ctx.Done():
			err = ctx.Err()
			k.cancel()
			<-drained
		}
		k.cancel()
		k.sched.stop()
		// Flights that were queued but never ran would leave their waiters
		// hanging: complete them.
		for _, h := range k.handles() {
			h.abandonFlight(ErrClosed)
		}
		k.events.stop()
		k.wg.Wait()
	})
	return err
}

// abandonFlight completes h's flight with err if it was queued but is not
// running (a running one completes by itself).
func (h *Handle) abandonFlight(err error) {
	h.mu.Lock()
	f := h.flight
	if f == nil || f.running {
		h.mu.Unlock()
		return
	}
	h.flight = nil
	h.mu.Unlock()
	f.complete(nil, err)
}

func (k *Keeper) emit(e Event) {
	if e.Time.IsZero() {
		e.Time = k.clock.wallTime()
	}
	k.events.emit(e)
}

// onClockJump runs on the clock goroutine after a suspend or a wall-clock
// change: every token is planned again at once.
func (k *Keeper) onClockJump(now int64, jump time.Duration) {
	k.emit(Event{Kind: EventClockJump, Time: time.Unix(0, now), Latency: jump})
	k.sched.replanAll()
}

func (k *Keeper) String() string { return "tokenkeeper.Keeper" }
