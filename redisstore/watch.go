package redisstore

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/tokenkeeper/tokenkeeper"
	"golang.org/x/oauth2"
)

// Attach makes the store install in k every token another process stores
// for a name k holds (with Handle.Adopt, which does not write the store),
// as soon as the news arrives on the pub/sub channel or, failing that, at
// the next periodic re-read. k's Config.Store should be s. A store serves one
// keeper; attaching the same keeper again does nothing.
func (s *Store) Attach(k *tokenkeeper.Keeper) error {
	if k == nil {
		return errors.New("redisstore: nil keeper")
	}
	if s.closed.Load() {
		return ErrClosed
	}
	if !s.keeper.CompareAndSwap(nil, k) && s.keeper.Load() != k {
		return errors.New("redisstore: store already attached to another keeper")
	}
	s.mu.Lock()
	s.resyncAll = true
	s.mu.Unlock()
	s.wake()
	return nil
}

// handle returns the attached keeper's handle of name, or nil.
func (s *Store) handle(name string) *tokenkeeper.Handle {
	k := s.keeper.Load()
	if k == nil {
		return nil
	}
	h, err := k.Handle(name)
	if err != nil {
		return nil
	}
	return h
}

// subscriber receives the news on the store's channel. It owns the pub/sub
// connection; go-redis reconnects and subscribes again after an error, and
// every (re)subscription triggers a re-read of all tokens, since messages
// sent meanwhile are lost.
func (s *Store) subscriber() {
	ctx := s.ctx
	_ = s.ps.Subscribe(ctx, s.channel) // on failure, the next receive reconnects
	heartbeat := max(s.opts.ProbeInterval, time.Second)
	backoff := time.Duration(0)
	for ctx.Err() == nil {
		msg, err := s.ps.ReceiveTimeout(ctx, heartbeat)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				// Quiet: check the connection.
				if perr := s.ps.Ping(ctx); perr == nil {
					continue
				}
			}
			s.mu.Lock()
			s.probeNow = true
			s.mu.Unlock()
			s.wake()
			backoff = min(max(2*backoff, 50*time.Millisecond), s.opts.ProbeInterval)
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			continue
		}
		backoff = 0
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				s.mu.Lock()
				s.resyncAll = true
				s.mu.Unlock()
				s.wake()
			}
		case *redis.Message:
			s.onMessage(m.Payload)
		}
	}
}

// onMessage handles "<version> <name>".
func (s *Store) onMessage(payload string) {
	i := strings.IndexByte(payload, ' ')
	if i <= 0 {
		return
	}
	v, err := strconv.ParseInt(payload[:i], 10, 64)
	if err != nil {
		return
	}
	name := payload[i+1:]
	e := s.lookup(name)
	if e == nil {
		if s.handle(name) == nil {
			return // not a token of ours
		}
		e = s.entry(name)
	}
	e.signal()
	e.mu.Lock()
	news := v != e.version || e.tok == nil
	e.mu.Unlock()
	if news {
		s.notice(name)
	}
}

// monitor is the watcher's worker: it looks at the tokens the subscriber
// reported, re-reads all of them every ResyncInterval, probes Redis while
// it is unreachable and rejoins when it returns.
func (s *Store) monitor() {
	ctx := s.ctx
	timer := time.NewTimer(s.opts.ResyncInterval)
	defer timer.Stop()
	nextResync := time.Now().Add(s.opts.ResyncInterval)
	var nextProbe time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.poke:
		case <-timer.C:
		}
		now := time.Now()
		s.mu.Lock()
		probe := s.probeNow
		s.probeNow = false
		s.mu.Unlock()
		if probe && !s.degraded.Load() {
			s.ping()
		}
		if s.degraded.Load() {
			if !now.Before(nextProbe) {
				nextProbe = now.Add(s.opts.ProbeInterval)
				if s.ping() && s.resyncEverything() == nil {
					s.recover()
					nextResync = now.Add(s.opts.ResyncInterval)
				}
			}
		}
		if !s.degraded.Load() {
			s.mu.Lock()
			all := s.resyncAll || !now.Before(nextResync)
			s.resyncAll = false
			names := make([]string, 0, len(s.news))
			for n := range s.news {
				names = append(names, n)
			}
			clear(s.news)
			for n, at := range s.deferred {
				if !now.Before(at) {
					names = append(names, n)
					delete(s.deferred, n)
				}
			}
			s.mu.Unlock()
			if all {
				nextResync = now.Add(s.opts.ResyncInterval)
				_ = s.resyncEverything()
			} else {
				for _, n := range names {
					if ctx.Err() != nil {
						return
					}
					s.look(n)
				}
			}
		}
		next := nextResync
		if s.degraded.Load() && nextProbe.Before(next) {
			next = nextProbe
		}
		s.mu.Lock()
		for _, at := range s.deferred {
			if at.Before(next) {
				next = at
			}
		}
		s.mu.Unlock()
		timer.Reset(max(time.Until(next), time.Millisecond))
	}
}

// ping reports whether Redis answers, marking the store degraded if not.
func (s *Store) ping() bool {
	ctx, cancel := s.opCtx()
	defer cancel()
	if err := s.c.Ping(ctx).Err(); err != nil {
		_ = s.redisErr(ctx, err)
		return false
	}
	return true
}

// recover ends the degraded state.
func (s *Store) recover() {
	if s.degraded.CompareAndSwap(true, false) {
		s.ev.emit(Event{Kind: EventRecovered})
	}
}

// names returns every token name the store or the keeper knows.
func (s *Store) names() []string {
	seen := make(map[string]bool)
	s.mu.Lock()
	for n := range s.entries {
		seen[n] = true
	}
	s.mu.Unlock()
	if k := s.keeper.Load(); k != nil {
		for _, n := range k.Names() {
			seen[n] = true
		}
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	return out
}

// resyncEverything reads the stored version of every token in one round
// trip and looks at those that need it.
func (s *Store) resyncEverything() error {
	names := s.names()
	if len(names) == 0 {
		return nil
	}
	ctx, cancel := s.opCtx()
	cmds := make([]*redis.StringCmd, len(names))
	_, err := s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, n := range names {
			cmds[i] = p.HGet(ctx, s.tokKey(n), "v")
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		err = s.redisErr(ctx, err)
		cancel()
		return err
	}
	cancel()
	for i, n := range names {
		v, _ := cmds[i].Int64()
		e := s.entry(n)
		e.mu.Lock()
		need := !e.seen || v != e.version || e.pending != nil || (e.held != nil && !sameToken(e.held, e.tok)) ||
			(e.held == nil && e.tok != nil)
		e.mu.Unlock()
		if need {
			if s.ctx.Err() != nil {
				return ErrClosed
			}
			s.look(n)
		}
	}
	return nil
}

// look brings one token in line with Redis: it installs a newer stored
// token in the keeper, or writes back a newer token of this process (one
// refreshed while Redis was unreachable, or one Redis lost).
func (s *Store) look(name string) {
	e := s.entry(name)
	if !e.tryLock() {
		return // a refresh is running; it ends with the newest token
	}
	defer e.unlock()
	ctx, cancel := s.opCtx()
	defer cancel()
	st, err := s.read(ctx, name)
	if err != nil {
		_ = s.redisErr(ctx, err)
		return
	}
	if st.err != nil {
		e.observe(st)
		s.st.errors.Add(1)
		s.ev.emit(Event{Kind: EventError, Token: name, Version: st.version, Err: st.err})
		return
	}
	if st.exists && st.tok == nil {
		// Deleted by someone: deletion wins over a token kept to write back.
		e.observe(st)
		e.mu.Lock()
		e.pending = nil
		e.mu.Unlock()
		return
	}
	h := s.handle(name)
	cur, standIn := s.heldRel(e, h)
	ord := order(st, cur)
	e.mu.Lock()
	if e.yield && ord != 0 {
		ord = +1 // a Save lost: the stored token wins, whatever its expiry
	}
	e.mu.Unlock()
	// The yield is consumed once the decision is carried out, not when it
	// is deferred: a deferred install must still let the stored token win.
	consumeYield := func() {
		e.mu.Lock()
		e.yield = false
		e.mu.Unlock()
	}
	if standIn && st.tok != nil && st.tok.Expiry.Equal(cur.tok.Expiry) {
		// The keeper holds the stored token (it loaded it when it was added).
		consumeYield()
		e.observe(st)
		e.setHeld(st.tok)
		return
	}
	now := time.Now()
	switch {
	case ord > 0 && usable(st.tok, now, s.usableMargin()):
		if h == nil {
			consumeYield()
			e.observe(st)
			return
		}
		if s.deferAdopt(name, h, now) {
			return
		}
		consumeYield()
		e.observe(st)
		if err := h.Adopt(st.tok); err == nil {
			e.setHeld(st.tok)
			s.st.adopted.Add(1)
			s.ev.emit(Event{Kind: EventAdopted, Token: name, Version: st.version})
		}
	case ord < 0 && !standIn && usable(cur.tok, now, s.usableMargin()):
		// This process holds a newer token than Redis: refreshed while Redis
		// was unreachable, or Redis lost its data.
		consumeYield()
		s.writeBack(ctx, e, cur.tok, st)
	default:
		consumeYield()
		e.observe(st)
	}
}

// heldRel describes the token the keeper holds. When the store never saw
// it (the application's initial token), a stand-in with its expiry is
// returned, which may be compared but must not be written.
func (s *Store) heldRel(e *entry, h *tokenkeeper.Handle) (r rel, standIn bool) {
	e.mu.Lock()
	held := e.held
	e.mu.Unlock()
	if held != nil {
		return e.relOf(held), false
	}
	if h == nil {
		return rel{}, false
	}
	hs := h.Status()
	if hs.State == tokenkeeper.StateEmpty || hs.Issued.IsZero() {
		return rel{}, false
	}
	return rel{tok: &oauth2.Token{AccessToken: "\x00unknown", Expiry: hs.Expiry}}, true
}

// deferAdopt reports whether installing a token in h should wait because
// h's own refresh is queued, running or about to be: that refresh goes
// through Coordinate, which answers it with the stored token, whereas a
// token installed between the keeper's decision and its refresh would be
// refreshed again at once (the keeper's flight reads the current token when
// it starts). It defers for at most LockTTL.
func (s *Store) deferAdopt(name string, h *tokenkeeper.Handle, now time.Time) bool {
	hs := h.Status()
	imminent := !hs.RefreshingSince.IsZero() || // a refresh is queued or running
		hs.State == tokenkeeper.StateRefreshing ||
		hs.State == tokenkeeper.StateExpired || // callers are about to ask for one
		(!hs.NextRefresh.IsZero() && hs.NextRefresh.Before(now.Add(s.opts.PollInterval)))
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.deferSince == nil {
		s.deferSince = make(map[string]time.Time)
	}
	since, deferring := s.deferSince[name]
	if !imminent || (deferring && now.Sub(since) > s.opts.LockTTL) {
		delete(s.deferSince, name)
		return false
	}
	if !deferring {
		s.deferSince[name] = now
	}
	s.deferred[name] = now.Add(s.opts.PollInterval)
	return true
}

// writeBack stores tok, which is newer than st, under the lock.
func (s *Store) writeBack(ctx context.Context, e *entry, tok *oauth2.Token, st stored) {
	name := e.name
	owner := newOwner()
	c := &coordinated{s: s, name: name, e: e}
	a, err := c.acquire(ctx, owner, st.version)
	if err != nil {
		return
	}
	switch a.state {
	case stateChanged:
		s.notice(name) // moved on meanwhile: look again
		return
	case stateHeld:
		return // its holder's token will be the news
	}
	v, err := s.commit(ctx, name, owner, st.version, tok)
	if err != nil || v < 0 {
		c.release(owner)
		if v < 0 {
			s.st.conflicts.Add(1)
			s.notice(name)
		}
		return
	}
	s.st.writeBacks.Add(1)
	s.ev.emit(Event{Kind: EventWroteBack, Token: name, Version: v})
}
