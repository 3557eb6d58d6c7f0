package redisstore

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"golang.org/x/oauth2"
)

// member is one keeper of a fleet, with its store and handles.
type member struct {
	id  string
	s   *Store
	fz  *freezer
	k   *tokenkeeper.Keeper
	hs  []*tokenkeeper.Handle
	ev  *eventLog
	kev *keeperLog
}

type keeperLog struct {
	mu sync.Mutex
	ev []tokenkeeper.Event
}

func (l *keeperLog) add(e tokenkeeper.Event) {
	l.mu.Lock()
	l.ev = append(l.ev, e)
	l.mu.Unlock()
}

func newMember(t *testing.T, srv *redisServer, id string, p *idp, names []string, opts Options, pol tokenkeeper.Policy) *member {
	t.Helper()
	m := &member{id: id, fz: new(freezer), ev: new(eventLog), kev: new(keeperLog)}
	c := srv.client(t)
	c.AddHook(m.fz)
	if opts.OnEvent == nil {
		opts.OnEvent = m.ev.add
	}
	s, err := New(c, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	m.s = s
	k, err := tokenkeeper.New(tokenkeeper.Config{Store: s, Policy: pol, Location: time.UTC, OnEvent: m.kev.add})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	if err := s.Attach(k); err != nil {
		t.Fatal(err)
	}
	m.k = k
	for _, n := range names {
		h, err := m.k.Add(tokenkeeper.TokenConfig{Name: n, Source: s.Coordinate(p.source(n, id), n)})
		if err != nil {
			t.Fatal(err)
		}
		m.hs = append(m.hs, h)
	}
	return m
}

// load fetches tokens from members' handles in a loop and checks every
// token it gets: no error, not expired, issued for that name.
type load struct {
	fetches atomic.Int64
	bad     atomic.Int64 // errors
	expired atomic.Int64
	mu      sync.Mutex
	first   string
	stop    chan struct{}
	wg      sync.WaitGroup
}

func startLoad(ms []*member, perMember int) *load {
	l := &load{stop: make(chan struct{})}
	for _, m := range ms {
		l.add(m, perMember, 250*time.Microsecond)
	}
	return l
}

// add starts n goroutines fetching from m's handles, one fetch every
// period each. (Requests at a steady pace, a few thousand a second per
// keeper at most: a tight loop would only starve the machine.)
func (l *load) add(m *member, n int, period time.Duration) {
	for range n {
		l.wg.Go(func() {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			tick := time.NewTicker(period)
			defer tick.Stop()
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				case <-tick.C:
				}
				h := m.hs[i%len(m.hs)]
				asked := time.Now() // the token must be valid when it is asked for
				tok, err := h.TokenContext(ctx)
				switch {
				case err != nil:
					l.fail("%s %s: %v", m.id, h.Name(), err)
				case !tok.Expiry.After(asked):
					l.expired.Add(1)
					l.fail("%s %s: expired token (expiry %v, asked at %v)", m.id, h.Name(), tok.Expiry, asked)
				case !strings.HasPrefix(tok.AccessToken, "at-"+h.Name()+"-"):
					l.fail("%s %s: foreign token", m.id, h.Name())
				}
				l.fetches.Add(1)
			}
		})
	}
}

func (l *load) fail(format string, args ...any) {
	l.bad.Add(1)
	l.mu.Lock()
	if l.first == "" {
		l.first = fmt.Sprintf(format, args...)
	}
	l.mu.Unlock()
}

// finish stops the load and checks it: no error and, unless relaxed (the
// process stalled), no expired token.
func (l *load) finish(t *testing.T, relaxed bool) {
	t.Helper()
	close(l.stop)
	l.wg.Wait()
	bad := l.bad.Load()
	if relaxed {
		bad -= l.expired.Load()
		if n := l.expired.Load(); n > 0 {
			t.Logf("%d expired tokens handed out while the process stalled", n)
		}
	}
	if bad != 0 {
		t.Errorf("%d bad fetches out of %d; first: %s", bad, l.fetches.Load(), l.first)
	}
	if l.fetches.Load() == 0 {
		t.Error("no fetches")
	}
}

// converged waits until every member's keeper holds the stored token of
// each name, and returns them.
func converged(t *testing.T, ms []*member, names []string, timeout time.Duration) map[string]string {
	t.Helper()
	out := make(map[string]string)
	eventually(t, timeout, "the fleet to converge on one token", func() bool {
		ctx := context.Background()
		for i, n := range names {
			stored, err := ms[0].s.Load(ctx, n)
			if err != nil {
				return false
			}
			for _, m := range ms {
				tok, err := m.hs[i].TokenContext(ctx)
				if err != nil || tok.AccessToken != stored.AccessToken {
					return false
				}
			}
			out[n] = stored.AccessToken
		}
		return true
	})
	return out
}

// (a) Three keepers, one Redis, one rotating source that rejects reused
// refresh tokens: over more than 50 short token cycles under concurrent
// load, one source call per token per cycle and no refresh token reused.
func TestFleetOneRefreshPerCycle(t *testing.T) {
	srv := startRedis(t)
	const (
		lifetime  = 2 * time.Second
		startLead = 1200 * time.Millisecond
		endLead   = 800 * time.Millisecond
		perToken  = 7
	)
	p := newIDP(lifetime, true)
	names := []string{"t0", "t1", "t2", "t3", "t4", "t5", "t6", "t7"}
	opts := Options{Prefix: "fleet-a:", Key: testKey, LockTTL: 500 * time.Millisecond, ResyncInterval: time.Second}
	pol := tokenkeeper.Policy{StartLead: startLead, EndLead: endLead, NoJitter: true, ExpiryMargin: 100 * time.Millisecond,
		IdleGap: 100 * time.Millisecond, AttemptTimeout: 5 * time.Second, RetryBase: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond}
	seeder := newStore(t, srv, opts)
	for _, n := range names {
		seed(t, seeder, p, n)
	}
	var ms []*member
	for i := range 3 {
		ms = append(ms, newMember(t, srv, fmt.Sprintf("k%d", i), p, names, opts, pol))
	}
	stalls := watchStalls(t)
	// k0 and k1 are busy: they refresh at the window's end, together (they
	// contend for the lock). k2 only fetches now and then: it refreshes
	// first, at an idle moment when the window opens, and the others learn
	// of its token from the channel. Either way: one call per cycle.
	l := startLoad(ms[:2], 3)
	l.add(ms[2], 1, 150*time.Millisecond)
	eventually(t, 40*time.Second, fmt.Sprintf("%d cycles of each token", perToken), func() bool {
		for _, n := range names {
			if len(p.callsOf(n)) < perToken {
				return false
			}
		}
		return true
	})
	relaxed := stalls.stalled(t, 300*time.Millisecond)
	l.finish(t, relaxed)
	final := converged(t, ms, names, 5*time.Second)
	for _, m := range ms {
		m.k.Close() // no refresh after this point: the counts below are final
	}

	if n := p.reused.Load(); n != 0 {
		t.Errorf("%d refresh tokens reused", n)
	}
	total := 0
	for _, n := range names {
		calls := p.callsOf(n)
		total += len(calls)
		for i, c := range calls {
			if relaxed {
				break
			}
			if !c.at.Before(c.prevExp) {
				t.Errorf("%s call %d at %v, after the previous token expired (%v)", n, i, c.at, c.prevExp)
				dumpFleet(t, ms, n, c.prevExp.Add(-1500*time.Millisecond), c.at.Add(500*time.Millisecond))
			}
			if i == 0 {
				continue
			}
			// A second call in one cycle would come right after the first;
			// the next cycle starts when the window opens.
			if gap := c.at.Sub(calls[i-1].at); gap < lifetime-startLead-100*time.Millisecond {
				t.Errorf("%s: calls %d (%s) and %d (%s) only %v apart: two refreshes in one cycle", n, i-1, calls[i-1].caller, i, c.caller, gap)
				dumpFleet(t, ms, n, calls[i-1].at.Add(-time.Second), c.at.Add(time.Second))
			}
			if c.rt == calls[i-1].rt {
				t.Errorf("%s: call %d reused the refresh token", n, i)
			}
		}
	}
	var writes, joined, adopted uint64
	for _, m := range ms {
		st := m.s.Status()
		writes += st.Writes
		joined += st.Joined
		adopted += st.Adopted
	}
	if int(writes) != total {
		t.Errorf("%d writes for %d refreshes; want one write per refresh", writes, total)
		for _, m := range ms {
			t.Logf("%s: %+v", m.id, m.s.Status())
		}
	}
	t.Logf("%d cycles (%d tokens), %d fetches; %d refreshes joined another's, %d tokens adopted from news",
		total, len(names), l.fetches.Load(), joined, adopted)
	for _, n := range names {
		if got, want := final[n], p.latest(n); got != want {
			t.Errorf("%s: fleet holds %s, the identity provider last issued %s", n, got, want)
		}
	}
}

// (b) The lock holder dies in the middle of a refresh (its Redis client
// hangs and its identity provider call never returns): another keeper takes
// over within one lease and refreshes before the token expires; no caller
// of the surviving keepers ever gets an expired token.
func TestFleetHolderDies(t *testing.T) {
	srv := startRedis(t)
	const lifetime = 2 * time.Second
	p := newIDP(lifetime, true)
	names := []string{"x"}
	opts := Options{Prefix: "fleet-b:", LockTTL: 400 * time.Millisecond}
	pol := tokenkeeper.Policy{StartLead: 1200 * time.Millisecond, EndLead: time.Second, NoJitter: true,
		ExpiryMargin: 100 * time.Millisecond, AttemptTimeout: 5 * time.Second, RetryBase: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond}
	seed(t, newStore(t, srv, opts), p, "x")

	var armed atomic.Bool
	victim := make(chan string, 1)
	stop := make(chan struct{})
	defer close(stop)
	p.before = func(ctx context.Context, name, caller string) error {
		if armed.CompareAndSwap(true, false) {
			victim <- caller
			select { // the process is gone: no answer ever
			case <-stop:
			case <-ctx.Done():
			}
			return fmt.Errorf("dead")
		}
		return nil
	}
	var ms []*member
	byID := make(map[string]*member)
	for i := range 3 {
		m := newMember(t, srv, fmt.Sprintf("k%d", i), p, names, opts, pol)
		ms = append(ms, m)
		byID[m.id] = m
	}
	stalls := watchStalls(t)
	loads := make(map[string]*load)
	for _, m := range ms {
		loads[m.id] = startLoad([]*member{m}, 2)
	}
	eventually(t, 10*time.Second, "two cycles", func() bool { return len(p.callsOf("x")) >= 2 })
	before := len(p.callsOf("x"))
	armed.Store(true)
	var dead *member
	select {
	case id := <-victim:
		dead = byID[id]
	case <-time.After(10 * time.Second):
		t.Fatal("no refresh reached the identity provider")
	}
	dead.fz.freeze() // the holder stops: no lease extension, no release
	close(loads[dead.id].stop)
	loads[dead.id].wg.Wait()

	eventually(t, 10*time.Second, "the survivors to refresh", func() bool { return len(p.callsOf("x")) > before })
	calls := p.callsOf("x")
	takeover := calls[before]
	if takeover.caller == dead.id {
		t.Fatalf("the dead keeper refreshed")
	}
	if !takeover.at.Before(takeover.prevExp) && !stalls.stalled(t, 300*time.Millisecond) {
		t.Errorf("takeover at %v, after the token expired at %v", takeover.at, takeover.prevExp)
	}
	t.Logf("takeover by %s %v before expiry", takeover.caller, takeover.prevExp.Sub(takeover.at).Round(time.Millisecond))
	// Keep going for two more cycles with the survivors.
	eventually(t, 10*time.Second, "two more cycles", func() bool { return len(p.callsOf("x")) >= before+3 })
	relaxed := stalls.stalled(t, 300*time.Millisecond)
	var survivors []*member
	var takeovers uint64
	for _, m := range ms {
		if m != dead {
			survivors = append(survivors, m)
			loads[m.id].finish(t, relaxed)
			takeovers += m.s.Status().Takeovers
		}
	}
	if takeovers == 0 {
		t.Error("no takeover counted")
	}
	if p.reused.Load() != 0 {
		t.Errorf("%d refresh tokens reused", p.reused.Load())
	}
	converged(t, survivors, names, 5*time.Second)
	dead.fz.thaw()
}

// (c) Redis stops during the run and comes back empty: callers keep getting
// valid tokens (the source does not rotate refresh tokens, so each keeper
// refreshes on its own meanwhile), and afterwards the fleet converges on
// one token and refreshes it once per cycle again.
func TestFleetRedisRestart(t *testing.T) {
	srv := startRedis(t)
	const lifetime = 1500 * time.Millisecond
	p := newIDP(lifetime, false)
	names := []string{"x", "y"}
	events := make([]*eventLog, 3)
	pol := tokenkeeper.Policy{StartLead: 900 * time.Millisecond, EndLead: 600 * time.Millisecond, NoJitter: true,
		ExpiryMargin: 100 * time.Millisecond, AttemptTimeout: 2 * time.Second, RetryBase: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond}
	base := Options{Prefix: "fleet-c:", LockTTL: 300 * time.Millisecond, ProbeInterval: 50 * time.Millisecond,
		NonRotating: true, OpTimeout: 500 * time.Millisecond}
	seeder := newStore(t, srv, base)
	for _, n := range names {
		seed(t, seeder, p, n)
	}
	var ms []*member
	for i := range 3 {
		opts := base
		events[i] = new(eventLog)
		opts.OnEvent = events[i].add
		ms = append(ms, newMember(t, srv, fmt.Sprintf("k%d", i), p, names, opts, pol))
	}
	stalls := watchStalls(t)
	l := startLoad(ms, 2)
	eventually(t, 10*time.Second, "two cycles", func() bool { return len(p.callsOf("x")) >= 2 })

	srv.stop()
	eventually(t, 10*time.Second, "every store degraded", func() bool {
		for _, m := range ms {
			if !m.s.Degraded() {
				return false
			}
		}
		return true
	})
	eventually(t, 10*time.Second, "local refreshes in every keeper", func() bool {
		for _, m := range ms {
			if m.s.Status().LocalRefreshes < 2 {
				return false
			}
		}
		return true
	})
	srv.restart()
	eventually(t, 10*time.Second, "every store recovered", func() bool {
		for _, m := range ms {
			if m.s.Degraded() {
				return false
			}
		}
		return true
	})
	got := converged(t, ms, names, 10*time.Second)
	// Back to one refresh per cycle: the next refresh is shared.
	mark := p.total()
	eventually(t, 10*time.Second, "a cycle after the restart", func() bool { return p.total() >= mark+len(names) })
	got2 := converged(t, ms, names, 10*time.Second)
	l.finish(t, stalls.stalled(t, 300*time.Millisecond))
	var wroteBack uint64
	for i, m := range ms {
		wroteBack += m.s.Status().WriteBacks
		if events[i].count(EventDegraded) == 0 || events[i].count(EventRecovered) == 0 {
			t.Errorf("%s: degraded/recovered events missing", m.id)
		}
	}
	if wroteBack == 0 {
		t.Error("nothing written back after Redis returned")
	}
	for _, n := range names {
		if got[n] == got2[n] {
			t.Errorf("%s not refreshed after the restart", n)
		}
	}
}

// While Redis is unreachable, a token whose source rotates refresh tokens
// is not refreshed: it is served while valid, and refreshed through the
// lock once Redis returns.
func TestDegradedRotatingWaitsForRedis(t *testing.T) {
	srv := startRedis(t)
	p := newIDP(time.Hour, true)
	opts := Options{Prefix: "rot:", ProbeInterval: 20 * time.Millisecond, LockTTL: 300 * time.Millisecond}
	s := newStore(t, srv, opts)
	first := seed(t, s, p, "x")
	src := s.Coordinate(p.source("x", "s"), "x")
	srv.stop()
	ctx := context.Background()
	_, err := src.Refresh(ctx, first)
	if err == nil || !strings.Contains(err.Error(), "rotates") {
		t.Fatalf("refresh without Redis: %v", err)
	}
	if p.total() != 0 {
		t.Fatal("a rotating source was called without the lock")
	}
	eventually(t, 5*time.Second, "degraded", s.Degraded)
	if _, err := src.Refresh(ctx, first); err == nil {
		t.Fatal("refresh while degraded succeeded")
	}
	srv.restart()
	eventually(t, 5*time.Second, "recovered", func() bool { return !s.Degraded() })
	tok, err := src.Refresh(ctx, first)
	if err != nil || p.total() != 1 {
		t.Fatalf("refresh after recovery: %v, %v (%d calls)", tok, err, p.total())
	}
	// Redis lost its data; the refresh re-created the token.
	if got, err := s.Load(ctx, "x"); err != nil || got.AccessToken != tok.AccessToken {
		t.Errorf("stored %v, %v", got, err)
	}
}

// A non-rotating token refreshed while Redis was away is written back when
// it returns, and the Save the keeper made meanwhile reported the failure.
func TestDegradedWriteBack(t *testing.T) {
	srv := startRedis(t)
	p := newIDP(time.Hour, false)
	var log eventLog
	opts := Options{Prefix: "wb:", ProbeInterval: 20 * time.Millisecond, NonRotating: true, OnEvent: log.add}
	s := newStore(t, srv, opts)
	seed(t, s, p, "x")
	var kev []tokenkeeper.Event
	var kmu sync.Mutex
	k, err := tokenkeeper.New(tokenkeeper.Config{Store: s, Location: time.UTC, OnEvent: func(e tokenkeeper.Event) {
		kmu.Lock()
		kev = append(kev, e)
		kmu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	if err := s.Attach(k); err != nil {
		t.Fatal(err)
	}
	if err := s.Attach(k); err != nil {
		t.Fatalf("attaching the same keeper again: %v", err)
	}
	h, err := k.Add(tokenkeeper.TokenConfig{Name: "x", Source: s.Coordinate(p.source("x", "s"), "x")})
	if err != nil {
		t.Fatal(err)
	}
	srv.stop()
	eventually(t, 5*time.Second, "degraded", s.Degraded)
	tok, err := h.Refresh(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if s.Status().LocalRefreshes != 1 {
		t.Errorf("status %+v", s.Status())
	}
	eventually(t, time.Second, "store-failed event", func() bool {
		kmu.Lock()
		defer kmu.Unlock()
		for _, e := range kev {
			if e.Kind == tokenkeeper.EventStoreFailed {
				return true
			}
		}
		return false
	})
	srv.restart()
	eventually(t, 5*time.Second, "write-back", func() bool { return s.Status().WriteBacks == 1 })
	got, err := newStore(t, srv, opts).Load(context.Background(), "x")
	if err != nil || got.AccessToken != tok.AccessToken {
		t.Fatalf("stored %v, %v; want the local token", got, err)
	}
	eventually(t, time.Second, "events", func() bool {
		return log.count(EventLocalRefresh) == 1 && log.count(EventWroteBack) == 1 && log.count(EventRecovered) == 1
	})
}

// News from another process is installed at once; a write that sent no
// news is found by the periodic re-read.
func TestAttachInstallsNews(t *testing.T) {
	srv := startRedis(t)
	p := newIDP(time.Hour, true)
	opts := Options{Prefix: "news:", ResyncInterval: 200 * time.Millisecond, Key: testKey}
	seeder := newStore(t, srv, opts)
	seed(t, seeder, p, "x")
	a := newMember(t, srv, "a", p, []string{"x"}, opts, tokenkeeper.Policy{})
	b := newMember(t, srv, "b", p, []string{"x"}, opts, tokenkeeper.Policy{})
	ctx := context.Background()
	fresh, err := a.hs[0].Refresh(ctx)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "b to adopt a's token", func() bool {
		tok, err := b.hs[0].TokenContext(ctx)
		return err == nil && tok.AccessToken == fresh.AccessToken
	})
	if b.s.Status().Adopted != 1 || p.total() != 1 {
		t.Errorf("b status %+v, %d calls", b.s.Status(), p.total())
	}
	// A write without news (as if the message were lost).
	quiet := &oauth2.Token{AccessToken: "at-x-quiet", RefreshToken: "rt-quiet", Expiry: time.Now().Add(2 * time.Hour)}
	v := storedVersion(t, seeder, "x")
	data, err := seeder.codec.encode("x", v+1, quiet)
	if err != nil {
		t.Fatal(err)
	}
	if err := seeder.c.HSet(ctx, seeder.tokKey("x"), "v", v+1, "d", data).Err(); err != nil {
		t.Fatal(err)
	}
	converged(t, []*member{a, b}, []string{"x"}, 3*time.Second)
	if err := b.s.Attach(a.k); err == nil {
		t.Error("a store attached to two keepers")
	}
}

// dumpFleet logs the events about token n between from and to, if
// DEBUG_FLEET is set.
func dumpFleet(t *testing.T, ms []*member, n string, from, to time.Time) {
	if os.Getenv("DEBUG_FLEET") == "" {
		return
	}
	type line struct {
		at  time.Time
		txt string
	}
	var lines []line
	for _, m := range ms {
		m.ev.mu.Lock()
		for _, e := range m.ev.ev {
			if (e.Token == n || e.Token == "") && e.Time.After(from) && e.Time.Before(to) {
				lines = append(lines, line{e.Time, fmt.Sprintf("%s store  %s v%d %v", m.id, e.Kind, e.Version, e.Err)})
			}
		}
		m.ev.mu.Unlock()
		m.kev.mu.Lock()
		for _, e := range m.kev.ev {
			if e.Token == n && e.Time.After(from) && e.Time.Before(to) {
				lines = append(lines, line{e.Time, fmt.Sprintf("%s keeper %s at=%s reason=%s exp=%s err=%v", m.id, e.Kind,
					e.At.Format("05.000"), e.Reason, e.Expiry.Format("05.000"), e.Err)})
			}
		}
		m.kev.mu.Unlock()
	}
	sort.Slice(lines, func(i, j int) bool { return lines[i].at.Before(lines[j].at) })
	for _, l := range lines {
		t.Logf("%s %s", l.at.Format("05.000000"), l.txt)
	}
}
