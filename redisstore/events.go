package redisstore

import (
	"sync"
	"sync/atomic"
	"time"
)

// EventKind says what an Event reports.
type EventKind uint8

const (
	// EventDegraded: Redis became unreachable (Err). Tokens keep being
	// served; see Options.NonRotating for what is refreshed meanwhile.
	EventDegraded EventKind = iota + 1
	// EventRecovered: Redis is reachable again and the process rejoined:
	// tokens refreshed meanwhile were written back or replaced by the
	// fleet's.
	EventRecovered
	// EventAdopted: a token written by another process was installed in the
	// attached keeper (Version).
	EventAdopted
	// EventJoined: a refresh was answered with the token another process
	// had just obtained (Version); the identity provider was not called.
	EventJoined
	// EventRefreshed: this process held the lock, called the source and
	// stored the new token (Version).
	EventRefreshed
	// EventTakeover: the lock holder's lease ran out without a new token
	// (it died or stalled) and this process took the lock over.
	EventTakeover
	// EventConflict: a write was refused because the stored version moved on
	// or the lock was lost (Err); the newer stored token wins.
	EventConflict
	// EventLocalRefresh: Redis being unreachable, the token was refreshed
	// without the lock (its source does not rotate refresh tokens). It is
	// written back when Redis returns.
	EventLocalRefresh
	// EventWroteBack: a token refreshed without Redis, or lost by Redis,
	// was written back (Version).
	EventWroteBack
	// EventError: reading or decoding a stored token failed (Err).
	EventError
)

var eventNames = [...]string{
	EventDegraded:     "degraded",
	EventRecovered:    "recovered",
	EventAdopted:      "adopted",
	EventJoined:       "joined",
	EventRefreshed:    "refreshed",
	EventTakeover:     "takeover",
	EventConflict:     "conflict",
	EventLocalRefresh: "local-refresh",
	EventWroteBack:    "wrote-back",
	EventError:        "error",
}

// String returns the kind's name, such as "adopted".
func (k EventKind) String() string {
	if int(k) < len(eventNames) && eventNames[k] != "" {
		return eventNames[k]
	}
	return "unknown"
}

// Event reports something the store did. It never holds a token value.
type Event struct {
	Kind    EventKind
	Token   string // the token's name ("" for store-wide events)
	Version int64  // the stored version concerned, if any
	Err     error
	Time    time.Time
}

// dispatcher delivers events on a goroutine of its own so that no caller
// (a keeper worker, the watcher) waits for the consumer.
type dispatcher struct {
	fn      func(Event)
	ch      chan Event
	quit    chan struct{}
	done    chan struct{}
	dropped atomic.Uint64
	once    sync.Once
}

func newDispatcher(fn func(Event)) *dispatcher {
	d := &dispatcher{fn: fn, ch: make(chan Event, 256), quit: make(chan struct{}), done: make(chan struct{})}
	if fn == nil {
		close(d.done)
		return d
	}
	go d.run()
	return d
}

func (d *dispatcher) emit(e Event) {
	if d.fn == nil {
		return
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	select {
	case d.ch <- e:
	default:
		d.dropped.Add(1)
	}
}

func (d *dispatcher) run() {
	defer close(d.done)
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
	defer func() { _ = recover() }() // a panicking consumer must not stop the store
	d.fn(e)
}

func (d *dispatcher) stop() {
	d.once.Do(func() { close(d.quit) })
	<-d.done
}
