package tokenkeeper

import (
	"context"
	"errors"
	"time"

	"sync"

	"github.com/tokenkeeper/tokenkeeper/internal/plan"
	"github.com/tokenkeeper/tokenkeeper/internal/queue"
)

// scheduler owns the wake-up times of all tokens: a min-heap keyed by
// wall-clock time and one timer for the earliest. Planning decisions are
// taken on its goroutine (evaluate), so they are serialised per keeper.
// Wake-up times are wall-clock instants; the timer is only a way to sleep
// until the earliest, and after a clock jump the scheduler recomputes it.
type scheduler struct {
	k       *Keeper
	mu      sync.Mutex
	heap    []*Handle
	pending []*Handle
	inPend  map[*Handle]bool
	all     bool
	poke    chan struct{}
	done    chan struct{}
}

func newScheduler(k *Keeper) *scheduler {
	return &scheduler{k: k, inPend: make(map[*Handle]bool), poke: make(chan struct{}, 1), done: make(chan struct{})}
}

func (s *scheduler) wakeUp() {
	select {
	case s.poke <- struct{}{}:
	default:
	}
}

// evaluateSoon asks the scheduler goroutine to plan h again.
func (s *scheduler) evaluateSoon(h *Handle) {
	s.mu.Lock()
	if !s.inPend[h] {
		s.inPend[h] = true
		s.pending = append(s.pending, h)
	}
	s.mu.Unlock()
	s.wakeUp()
}

// replanAll asks for every planned token to be evaluated again.
func (s *scheduler) replanAll() {
	s.mu.Lock()
	s.all = true
	s.mu.Unlock()
	s.wakeUp()
}

// set schedules h's next evaluation at Unix ns at (0 removes it).
func (s *scheduler) set(h *Handle, at int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if h.hidx > 0 {
		if at == 0 {
			s.remove(h.hidx - 1)
			return
		}
		h.wakeAt = at
		s.fix(h.hidx - 1)
		return
	}
	if at == 0 {
		return
	}
	h.wakeAt = at
	s.heap = append(s.heap, h)
	h.hidx = len(s.heap)
	s.up(len(s.heap) - 1)
}

func (s *scheduler) stop() { <-s.done }

func (s *scheduler) run(ctx context.Context) {
	defer close(s.done)
	k := s.k
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		now := k.clock.precise()
		s.mu.Lock()
		batch := s.pending
		s.pending = nil
		clear(s.inPend)
		if s.all {
			s.all = false
			batch = append(batch, s.heap...)
		}
		for len(s.heap) > 0 && s.heap[0].wakeAt <= now {
			batch = append(batch, s.remove(0))
		}
		var next int64
		if len(s.heap) > 0 {
			next = s.heap[0].wakeAt
		}
		s.mu.Unlock()

		if len(batch) > 0 {
			for _, h := range batch {
				if ctx.Err() != nil {
					return
				}
				k.evaluate(h, now)
			}
			continue
		}
		wait := time.Hour
		if next != 0 {
			wait = time.Duration(next - now)
		}
		// Wake at least once a minute: cheap, and bounds how late a plan can
		// run if the timer (monotonic) and the wall clock drift apart.
		if wait > time.Minute {
			wait = time.Minute
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-s.poke:
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
		}
	}
}

// heap helpers; s.mu held. hidx is index+1 (0 = not in heap).
func (s *scheduler) less(i, j int) bool { return s.heap[i].wakeAt < s.heap[j].wakeAt }
func (s *scheduler) swap(i, j int) {
	s.heap[i], s.heap[j] = s.heap[j], s.heap[i]
	s.heap[i].hidx = i + 1
	s.heap[j].hidx = j + 1
}
func (s *scheduler) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !s.less(i, p) {
			break
		}
		s.swap(i, p)
		i = p
	}
}
func (s *scheduler) down(i int) bool {
	i0 := i
	n := len(s.heap)
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		c := l
		if r := l + 1; r < n && s.less(r, l) {
			c = r
		}
		if !s.less(c, i) {
			break
		}
		s.swap(i, c)
		i = c
	}
	return i > i0
}
func (s *scheduler) fix(i int) {
	if !s.down(i) {
		s.up(i)
	}
}
func (s *scheduler) remove(i int) *Handle {
	n := len(s.heap) - 1
	h := s.heap[i]
	if i != n {
		s.swap(i, n)
	}
	s.heap[n] = nil
	s.heap = s.heap[:n]
	if i != n {
		s.fix(i)
	}
	h.hidx = 0
	h.wakeAt = 0
	return h
}

// refreshGap is the shortest time between two planned refreshes of a token:
// a quarter of its lifetime, at least 250 ms and at most one second.
func refreshGap(s *snapshot) time.Duration {
	gap := time.Second
	if s.expiry != 0 {
		gap = min(gap, max(time.Duration(s.expiry-s.issued)/4, 250*time.Millisecond))
	}
	return gap
}

// Reasons the keeper adds to the planner's.
const (
	reasonMissing     = "no-token"
	reasonInvalidated = "invalidated"
	reasonRetry       = "retry-backoff"
	reasonReauth      = "reauth-required"
)

// evaluate plans h at now (Unix ns): it either queues a refresh or sets the
// next wake-up. It runs on the scheduler goroutine.
func (k *Keeper) evaluate(h *Handle, nowNs int64) {
	if h.removed.Load() || k.closed.Load() {
		return
	}
	now := time.Unix(0, nowNs)
	h.mu.Lock()
	if h.flight != nil || h.due {
		h.mu.Unlock()
		return // the flight's end plans again
	}
	if h.reauth != nil {
		h.windowStart, h.windowEnd = 0, 0
		h.nextReason = reasonReauth
		h.nextAt = time.Time{}
		h.mu.Unlock()
		k.sched.set(h, 0)
		return
	}
	var (
		refresh bool
		prio    = queue.Scheduled
		at      time.Time
		reason  string
	)
	s := h.cur.Load()
	switch {
	case !h.retryAt.IsZero():
		at, reason = h.retryAt, reasonRetry
		if !now.Before(h.retryAt) {
			refresh, prio, at = true, queue.Retry, now
		}
	case s == nil:
		refresh, prio, at, reason = true, queue.Retry, now, reasonMissing
	case s.validUntil == 0:
		refresh, prio, at, reason = true, queue.Urgent, now, reasonInvalidated
	default:
		d := plan.Next(h.planInput(s, now))
		h.windowStart, h.windowEnd = unixNano(d.Window.Start), unixNano(d.Window.End)
		at, reason = d.At, d.Reason.String()
		refresh = d.Reason.Refresh()
		if d.Reason == plan.ReasonUnused {
			h.dormant.Store(true)
		}
	}
	if refresh && prio != queue.Urgent && !h.lastRefresh.IsZero() && s != nil {
		// A source handing out tokens that are (nearly) expired on arrival
		// must not make the keeper call it in a tight loop.
		if gap := refreshGap(s); now.Sub(h.lastRefresh) < gap {
			refresh, at = false, h.lastRefresh.Add(gap)
		}
	}
	ws, we := timeOf(h.windowStart), timeOf(h.windowEnd)
	changed := !at.Equal(h.nextAt) || reason != h.nextReason
	h.nextAt, h.nextReason = at, reason
	if refresh {
		h.due = true
		h.dueFor = s
	}
	h.mu.Unlock()

	if changed && !at.IsZero() {
		k.emit(Event{Kind: EventScheduled, Token: h.name, Group: h.group, At: at, Reason: reason, Time: now,
			WindowStart: ws, WindowEnd: we})
	}
	if !refresh {
		if at.IsZero() {
			k.sched.set(h, 0)
		} else {
			k.sched.set(h, at.UnixNano())
		}
		return
	}
	k.sched.set(h, 0)
	if _, err := k.q.Push(h, h.group, prio); err != nil {
		h.mu.Lock()
		h.due = false
		h.mu.Unlock()
		if errors.Is(err, queue.ErrFull) {
			// Back-pressure: look again in a second.
			k.sched.set(h, now.Add(time.Second).UnixNano())
		}
	}
}

// planInput gathers what the planner needs; h.mu held.
func (h *Handle) planInput(s *snapshot, now time.Time) plan.Input {
	k := h.k
	in := plan.Input{
		Now:         now,
		Issued:      time.Unix(0, s.issued),
		StartLead:   h.pol.StartLead,
		EndLead:     h.pol.EndLead,
		IdleGap:     h.pol.IdleGap,
		LatencyP99:  h.latencyP99(),
		FailureRate: h.failRate,
		RetryBase:   h.pol.RetryBase,
		RetryMax:    h.pol.RetryMax,
		UnusedAfter: h.pol.UnusedAfter,
		Jitter:      h.jitter,
	}
	if s.expiry != 0 {
		in.Expiry = time.Unix(0, s.expiry)
		// Leads longer than half the lifetime are capped at half of it: a
		// token shorter than the configured window is refreshed half-way
		// through its life, not again and again on arrival. (Widening for
		// latency and failures may still open the window earlier.)
		half := time.Duration(s.expiry-s.issued) / 2
		if in.StartLead > half {
			in.StartLead = half
		}
		if in.EndLead > half {
			in.EndLead = half
		}
	}
	if s.refreshAt != 0 {
		in.RefreshAt = time.Unix(0, s.refreshAt)
	}
	if la := k.usage.LastActivity(); la != 0 {
		in.LastActivity = time.Unix(0, la)
	}
	if k.usage.HasHistory() {
		in.Usage = k.usage
	}
	if lu := h.lastUsed.Load(); lu != 0 {
		in.LastUsed = time.Unix(lu, 0)
	}
	return in
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func timeOf(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// latencyP99 returns the 99th percentile of the recent latencies: with at
// most 8 samples, their maximum. h.mu held.
func (h *Handle) latencyP99() time.Duration {
	var m time.Duration
	n := min(h.latN, len(h.lat))
	for i := range n {
		m = max(m, h.lat[i])
	}
	return m
}
