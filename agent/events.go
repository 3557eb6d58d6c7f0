package agent

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/tokenkeeper/tokenkeeper"
)

// EventJSON is the secret-free JSON form of a keeper event, as the event
// stream sends it.
type EventJSON struct {
	Seq       uint64    `json:"seq"`
	Kind      string    `json:"kind"`
	Token     string    `json:"token,omitempty"`
	Group     string    `json:"group,omitempty"`
	Time      time.Time `json:"time"`
	At        time.Time `json:"at,omitzero"`
	Reason    string    `json:"reason,omitempty"`
	Attempt   int       `json:"attempt,omitempty"`
	Latency   float64   `json:"latency_seconds,omitempty"`
	Expiry    time.Time `json:"expiry,omitzero"`
	NextRetry time.Time `json:"next_retry,omitzero"`
	Breaker   string    `json:"breaker,omitempty"`
	Error     string    `json:"error,omitempty"`
}

func toEventJSON(seq uint64, e tokenkeeper.Event) EventJSON {
	j := EventJSON{
		Seq: seq, Kind: e.Kind.String(), Token: e.Token, Group: e.Group, Time: e.Time,
		At: e.At, Reason: e.Reason, Attempt: e.Attempt, Latency: e.Latency.Seconds(),
		Expiry: e.Expiry, NextRetry: e.NextRetry,
	}
	if e.Kind == tokenkeeper.EventBreaker {
		j.Breaker = e.Breaker.String()
	}
	if e.Err != nil {
		j.Error = e.Err.Error() // the keeper's errors hold no token value
	}
	return j
}

// frame is one encoded server-sent event.
type frame struct {
	seq   uint64
	token string
	data  []byte // "id: …\nevent: …\ndata: …\n\n"
}

// hub fans events out to the event streams. publish never blocks: a stream
// whose buffer is full is ended (its browser reconnects with Last-Event-ID
// and gets the missed events from the ring, if they are still there).
type hub struct {
	mu      sync.Mutex
	seq     uint64
	ring    [ringSize]frame // the latest events, for Last-Event-ID
	subs    map[*subscriber]struct{}
	dropped prometheus.Counter
}

const (
	ringSize      = 512
	subBuffer     = 256
	keepAlive     = 15 * time.Second
	writeDeadline = 10 * time.Second
)

type subscriber struct {
	ch      chan frame
	lagged  chan struct{} // closed when the subscriber fell behind
	tokens  map[string]bool
	lagOnce sync.Once
}

func newHub(dropped prometheus.Counter) *hub {
	return &hub{subs: make(map[*subscriber]struct{}), dropped: dropped}
}

func (h *hub) publish(e tokenkeeper.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.seq++
	data, err := json.Marshal(toEventJSON(h.seq, e))
	if err != nil {
		return // cannot happen: plain fields only
	}
	f := frame{seq: h.seq, token: e.Token,
		data: fmt.Appendf(nil, "id: %d\nevent: %s\ndata: %s\n\n", h.seq, e.Kind, data)}
	h.ring[h.seq%ringSize] = f
	for sub := range h.subs {
		if !sub.wants(f) {
			continue
		}
		select {
		case sub.ch <- f:
		default:
			sub.lagOnce.Do(func() {
				close(sub.lagged)
				h.dropped.Inc()
			})
		}
	}
}

func (sub *subscriber) wants(f frame) bool {
	return len(sub.tokens) == 0 || f.token == "" || sub.tokens[f.token]
}

// subscribe registers a stream and returns the stored frames after lastID
// (all of them if lastID is 0 and replay is set).
func (h *hub) subscribe(sub *subscriber, lastID uint64, replay bool) []frame {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.subs[sub] = struct{}{}
	if !replay || lastID >= h.seq {
		return nil
	}
	from := lastID + 1
	if h.seq >= ringSize && from <= h.seq-ringSize {
		from = h.seq - ringSize + 1
	}
	var out []frame
	for i := from; i <= h.seq; i++ {
		if f := h.ring[i%ringSize]; f.seq == i && sub.wants(f) {
			out = append(out, f)
		}
	}
	return out
}

func (h *hub) unsubscribe(sub *subscriber) {
	h.mu.Lock()
	delete(h.subs, sub)
	h.mu.Unlock()
}

// serveEvents streams the keeper's events as server-sent events:
// GET /v1/events[?token=a&token=b]. A reconnecting client's Last-Event-ID
// header replays what it missed, if the server still has it.
func (s *Server) serveEvents(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	sub := &subscriber{ch: make(chan frame, subBuffer), lagged: make(chan struct{})}
	for k, vs := range q {
		if k != "token" {
			writeError(w, http.StatusBadRequest, CodeBadRequest, "unknown query parameter "+strconv.Quote(k)+" (only token is accepted)")
			return
		}
		sub.tokens = make(map[string]bool)
		for _, v := range vs {
			sub.tokens[v] = true
		}
	}
	var lastID uint64
	replay := false
	if v := r.Header.Get("Last-Event-ID"); v != "" {
		id, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		if err != nil {
			writeError(w, http.StatusBadRequest, CodeBadRequest, "Last-Event-ID must be a number")
			return
		}
		lastID, replay = id, true
	}
	if !s.enter() {
		writeError(w, http.StatusServiceUnavailable, CodeClosed, "the agent is shutting down")
		return
	}
	defer s.wg.Done()

	backlog := s.hub.subscribe(sub, lastID, replay)
	defer s.hub.unsubscribe(sub)

	rc := http.NewResponseController(w)
	hdr := w.Header()
	hdr.Set("Content-Type", "text/event-stream")
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("X-Accel-Buffering", "no")
	hdr["X-Content-Type-Options"] = hdrNoSniff
	w.WriteHeader(http.StatusOK)
	write := func(b []byte) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(writeDeadline))
		if _, err := w.Write(b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if !write([]byte("retry: 2000\n: tokenkeeper event stream\n\n")) {
		return
	}
	for _, f := range backlog {
		if !write(f.data) {
			return
		}
	}
	ping := time.NewTicker(keepAlive)
	defer ping.Stop()
	for {
		select {
		case f := <-sub.ch:
			if !write(f.data) {
				return
			}
		case <-ping.C:
			if !write([]byte(": ping\n\n")) {
				return
			}
		case <-sub.lagged:
			return
		case <-s.done:
			write([]byte("event: close\ndata: {}\n\n"))
			return
		case <-r.Context().Done():
			return
		}
	}
}
