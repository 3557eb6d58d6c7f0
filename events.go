package tokenkeeper

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/tokenkeeper/tokenkeeper/internal/breaker"
)

// EventKind says what an Event reports.
type EventKind uint8

const (
	// EventScheduled: a token's next refresh was planned (At, Reason).
	EventScheduled EventKind = iota + 1
	// EventStarted: a refresh attempt started (Attempt).
	EventStarted
	// EventSucceeded: a refresh succeeded (Latency, Expiry).
	EventSucceeded
	// EventFailed: a refresh attempt failed (Err, Attempt, Latency, and
	// NextRetry for a transient failure).
	EventFailed
	// EventReauthRequired: a permanent failure; the token needs a new grant.
	EventReauthRequired
	// EventBreaker: a group's circuit breaker changed state (Breaker,
	// NextRetry = end of the open period).
	EventBreaker
	// EventInvalidated: a server rejected the current token (Handle.Invalidate).
	EventInvalidated
	// EventRemoved: the token was removed from the keeper.
	EventRemoved
	// EventClockJump: the wall clock jumped (suspend and resume, or the clock
	// was set); every token was planned again. Latency holds the jump.
	EventClockJump
	// EventStoreFailed: saving a new token failed (Err). The token is used
	// anyway.
	EventStoreFailed
	// EventExpiryClamped: a token arrived with an expiry beyond
	// Policy.MaxLifetime (Expiry) and was clamped.
	EventExpiryClamped
	// EventAdopted: a token obtained elsewhere was installed (Handle.Adopt).
	EventAdopted
)

var eventNames = [...]string{
	EventScheduled:      "scheduled",
	EventStarted:        "started",
	EventSucceeded:      "succeeded",
	EventFailed:         "failed",
	EventReauthRequired: "reauth-required",
	EventBreaker:        "breaker",
	EventInvalidated:    "invalidated",
	EventRemoved:        "removed",
	EventClockJump:      "clock-jump",
	EventStoreFailed:    "store-failed",
	EventExpiryClamped:  "expiry-clamped",
	EventAdopted:        "adopted",
}

// String returns the kind's name, such as "succeeded".
func (k EventKind) String() string {
	if int(k) < len(eventNames) && eventNames[k] != "" {
		return eventNames[k]
	}
	return "unknown"
}

// BreakerState is the state of a group's circuit breaker.
type BreakerState uint8

const (
	BreakerClosed   BreakerState = BreakerState(breaker.Closed)
	BreakerOpen     BreakerState = BreakerState(breaker.Open)
	BreakerHalfOpen BreakerState = BreakerState(breaker.HalfOpen)
)

// String returns "closed", "open" or "half-open".
func (s BreakerState) String() string { return breaker.State(s).String() }

// Event reports something the keeper did. It never holds a token value.
type Event struct {
	Kind   EventKind
	Token  string // the token's name ("" for keeper-wide events)
	Group  string
	Time   time.Time
	At     time.Time // EventScheduled: the planned moment
	Reason string    // EventScheduled: why then
	// WindowStart and WindowEnd: EventScheduled: the refresh window the plan
	// was made in (zero when it was not made by the planner, e.g. a retry).
	WindowStart, WindowEnd time.Time
	Attempt                int           // attempt number within a run of failures (1 = first)
	Latency                time.Duration // duration of the call; for EventClockJump the jump
	Expiry                 time.Time     // EventSucceeded, EventExpiryClamped
	NextRetry              time.Time     // EventFailed (transient), EventBreaker (open until)
	Breaker                BreakerState  // EventBreaker
	Err                    error         // EventFailed, EventReauthRequired, EventStoreFailed
}

// LogValue renders the event for log/slog.
func (e Event) LogValue() slog.Value {
	attrs := []slog.Attr{slog.String("event", e.Kind.String())}
	if e.Token != "" {
		attrs = append(attrs, slog.String("token", e.Token))
	}
	if e.Group != "" {
		attrs = append(attrs, slog.String("group", e.Group))
	}
	if !e.At.IsZero() {
		attrs = append(attrs, slog.Time("at", e.At))
	}
	if e.Reason != "" {
		attrs = append(attrs, slog.String("reason", e.Reason))
	}
	if e.Attempt != 0 {
		attrs = append(attrs, slog.Int("attempt", e.Attempt))
	}
	if e.Latency != 0 {
		attrs = append(attrs, slog.Duration("latency", e.Latency))
	}
	if !e.Expiry.IsZero() {
		attrs = append(attrs, slog.Time("expiry", e.Expiry))
	}
	if !e.NextRetry.IsZero() {
		attrs = append(attrs, slog.Time("next_retry", e.NextRetry))
	}
	if e.Kind == EventBreaker {
		attrs = append(attrs, slog.String("breaker", e.Breaker.String()))
	}
	if e.Err != nil {
		attrs = append(attrs, slog.String("error", e.Err.Error()))
	}
	return slog.GroupValue(attrs...)
}

func (e Event) level() slog.Level {
	switch e.Kind {
	case EventReauthRequired:
		return slog.LevelError
	case EventFailed, EventStoreFailed, EventExpiryClamped, EventClockJump:
		return slog.LevelWarn
	case EventBreaker:
		if e.Breaker == BreakerOpen {
			return slog.LevelWarn
		}
		return slog.LevelInfo
	case EventSucceeded:
		return slog.LevelInfo
	}
	return slog.LevelDebug
}

// dispatcher delivers events on its own goroutine, so that no internal lock
// is held while user code runs and a slow consumer never delays a refresh.
type dispatcher struct {
	fn      func(Event)
	log     *slog.Logger
	ch      chan Event
	quit    chan struct{}
	dropped atomic.Uint64
}

func newDispatcher(fn func(Event), log *slog.Logger, buf int) *dispatcher {
	return &dispatcher{fn: fn, log: log, ch: make(chan Event, buf), quit: make(chan struct{})}
}

func (d *dispatcher) emit(e Event) {
	if d.fn == nil && d.log == nil {
		return
	}
	select {
	case d.ch <- e:
	default:
		d.dropped.Add(1)
	}
}

func (d *dispatcher) run() {
	for {
		select {
		case e := <-d.ch:
			d.deliver(e)
		case <-d.quit:
			for {
				select {
				case e := <-d.ch:
					d.deliver(e)
				default:
					return
				}
			}
		}
	}
}

func (d *dispatcher) deliver(e Event) {
	if d.log != nil {
		d.log.LogAttrs(context.Background(), e.level(), "tokenkeeper "+e.Kind.String(), slog.Any("tk", e))
	}
	if d.fn != nil {
		func() {
			defer func() { _ = recover() }() // a panicking consumer must not kill the dispatcher
			d.fn(e)
		}()
	}
}

func (d *dispatcher) stop() { close(d.quit) }
