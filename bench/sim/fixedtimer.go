package sim

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// FixedTimerRetry is how long the hand-written timer waits after a failed
// refresh before it tries again.
const FixedTimerRetry = 30 * time.Second

// FixedTimer is the refresher people write by hand: a goroutine that fetches
// a token, sleeps until lead before its expiry and fetches again (retrying
// every 30 s after a failure); callers read whatever token it holds, expired
// or not, and wait only for the very first one.
func FixedTimer(lead time.Duration) Contender {
	return Contender{
		Name:   "fixed timer",
		Module: "(hand-written, bench/sim/fixedtimer.go)",
		Config: fmt.Sprintf("refresh %v before expiry, retry every %v after a failure", lead, FixedTimerRetry),
		New: func(env *Env) (Kit, error) {
			return &kit{add: func(_ string, src *Source) (Instance, func(), error) {
				f := newFixedTimer(src, lead)
				return f, f.close, nil
			}}, nil
		},
	}
}

type fixedTimer struct {
	src    *Source
	lead   time.Duration
	cur    atomic.Pointer[Token]
	ready  chan struct{}
	once   sync.Once
	cancel context.CancelFunc
	done   chan struct{}
}

func newFixedTimer(src *Source, lead time.Duration) *fixedTimer {
	ctx, cancel := context.WithCancel(context.Background())
	f := &fixedTimer{src: src, lead: lead, ready: make(chan struct{}), cancel: cancel, done: make(chan struct{})}
	if t, ok := src.Initial(); ok {
		f.publish(t)
	}
	go f.run(ctx)
	return f
}

func (f *fixedTimer) publish(t Token) {
	f.cur.Store(&t)
	f.once.Do(func() { close(f.ready) })
}

func (f *fixedTimer) run(ctx context.Context) {
	defer close(f.done)
	for {
		var wait time.Duration
		if t := f.cur.Load(); t != nil {
			wait = time.Until(t.Expiry.Add(-f.lead))
		}
		if wait > 0 && !sleepCtx(ctx, wait) {
			return
		}
		t, err := f.src.Fetch(ctx)
		for err != nil {
			if !sleepCtx(ctx, FixedTimerRetry) {
				return
			}
			t, err = f.src.Fetch(ctx)
		}
		f.publish(t)
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

var errClosed = errors.New("fixed timer: closed")

func (f *fixedTimer) Token(ctx context.Context) (string, error) {
	if t := f.cur.Load(); t != nil {
		return t.Value, nil
	}
	select {
	case <-f.ready:
		return f.cur.Load().Value, nil
	case <-f.done:
		return "", errClosed
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

func (f *fixedTimer) close() {
	f.cancel()
	<-f.done
}
