package tokenkeeper

import (
	"context"
	"sync/atomic"
	"time"
)

// The hot path must not read the system clock on every call: on some
// machines time.Now costs about 45 ns, more than the whole budget for handing
// out a cached token. So the keeper keeps its own coarse clock.
//
// While the application is active the clock goroutine ticks every fastTick
// (50 ms) and publishes the wall-clock time in an atomic; the hot path reads
// that. A token is handed out only while it is valid for at least its
// ExpiryMargin (10 s by default) beyond the coarse time, so a reading up to
// one tick old can never let an expired token through.
//
// After idleAfter (2 s) without activity the clock slows to one tick per
// second and the hot path reads time.Now itself (and wakes the fast ticks).
// So the first call after a long pause, typically the first after a laptop
// resumes from suspend, sees the true wall-clock time.
//
// Go timers and monotonic readings stop while a machine sleeps; the wall
// clock does not. Every tick compares how far the wall clock and the
// monotonic clock moved since the previous tick; when they disagree by more
// than jumpThreshold (a suspend, or the wall clock was set), onJump makes the
// keeper re-plan every token at once.
type clock struct {
	coarse atomic.Int64 // wall-clock Unix nanoseconds, at most one tick old while fast
	fast   atomic.Bool  // the hot path may trust coarse
	halted atomic.Bool  // the clock goroutine has stopped: always read time.Now
	wake   chan struct{}

	fastTick, slowTick time.Duration
	idleAfter          time.Duration
	jumpThreshold      time.Duration

	skew *atomic.Int64 // tests only: added to the wall clock (simulated jumps)

	lastActivity func() int64 // Unix ns of the last activity
	onTick       func(now int64)
	onJump       func(now int64, jump time.Duration)
}

func newClock() *clock {
	c := &clock{
		wake:          make(chan struct{}, 1),
		fastTick:      50 * time.Millisecond,
		slowTick:      time.Second,
		idleAfter:     2 * time.Second,
		jumpThreshold: time.Second,
		skew:          new(atomic.Int64),
	}
	c.coarse.Store(c.wall(time.Now()))
	return c
}

// wall returns t's wall-clock Unix nanoseconds (plus the test skew).
func (c *clock) wall(t time.Time) int64 {
	return t.UnixNano() + c.skew.Load()
}

// wallTime returns the current wall-clock time without a monotonic reading.
func (c *clock) wallTime() time.Time {
	return time.Unix(0, c.wall(time.Now()))
}

// now returns the wall-clock time in Unix nanoseconds for the hot path:
// the coarse reading while the clock ticks fast, else a precise one.
func (c *clock) now() int64 {
	if c.fast.Load() {
		return c.coarse.Load()
	}
	return c.slowNow()
}

func (c *clock) slowNow() int64 {
	n := c.wall(time.Now())
	c.coarse.Store(n)
	if !c.halted.Load() && c.fast.CompareAndSwap(false, true) {
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
	return n
}

// precise returns the precise wall-clock time in Unix nanoseconds.
func (c *clock) precise() int64 { return c.wall(time.Now()) }

// halt makes every reading precise from now on (the goroutine is gone).
func (c *clock) halt() {
	c.halted.Store(true)
	c.fast.Store(false)
}

func (c *clock) run(ctx context.Context) {
	defer c.halt()
	prev := time.Now()
	prevWall := c.wall(prev)
	t := time.NewTimer(c.slowTick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-c.wake:
		}
		mono := time.Now()
		w := c.wall(mono)
		c.coarse.Store(w)
		elapsed := mono.Sub(prev) // monotonic
		drift := time.Duration(w-prevWall) - elapsed
		prev, prevWall = mono, w
		if drift > c.jumpThreshold || drift < -c.jumpThreshold {
			if c.onJump != nil {
				c.onJump(w, drift)
			}
		}
		if c.onTick != nil {
			c.onTick(w)
		}
		if c.fast.Load() && c.lastActivity != nil && w-c.lastActivity() > int64(c.idleAfter) {
			c.fast.Store(false)
		}
		d := c.slowTick
		if c.fast.Load() {
			d = c.fastTick
		}
		t.Reset(d)
	}
}
