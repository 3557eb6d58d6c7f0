package agent

import (
	"sort"
	"sync"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// history remembers, for the status page's timeline, the refresh attempts
// and the refresh windows of the last span, from the keeper's events
// (EventScheduled carries the window its plan was made in).
type history struct {
	mu       sync.Mutex
	span     time.Duration
	attempts []attemptMark
	wins     map[string][]window
	planned  map[string]tokenkeeper.Event // the last EventScheduled per token
	why      map[string]string            // why the attempt in flight started
}

// Bounds on what history keeps, whatever the span: a token refreshed every
// few seconds must not grow memory without end.
const (
	maxAttempts       = 20000
	maxWindowsPerName = 2000
)

type attemptMark struct {
	Token   string    `json:"token"`
	Time    time.Time `json:"time"`
	OK      bool      `json:"ok"`
	Latency float64   `json:"latency_seconds"`
	Attempt int       `json:"attempt"`
	Reason  string    `json:"reason"`
	Error   string    `json:"error,omitempty"`
}

// refreshReasons are the plan reasons that start a refresh at once.
var refreshReasons = map[string]bool{
	"idle": true, "quiet-slot": true, "window-end": true, "expired": true,
	"no-token": true, "invalidated": true, "retry-backoff": true,
}

// startReason says why an attempt that started at e.Time started: the
// planner's reason if the keeper planned it for that moment, else
// "on-demand" (a caller without a valid token, or a forced refresh).
func startReason(planned tokenkeeper.Event, ok bool, started time.Time) string {
	if ok && refreshReasons[planned.Reason] && !planned.At.After(started.Add(time.Second)) {
		return planned.Reason
	}
	return "on-demand"
}

type window struct {
	Token string    `json:"token"`
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
}

func newHistory(span time.Duration) *history {
	return &history{span: span, wins: make(map[string][]window),
		planned: make(map[string]tokenkeeper.Event), why: make(map[string]string)}
}

func (h *history) event(e tokenkeeper.Event) {
	var m attemptMark
	switch e.Kind {
	case tokenkeeper.EventScheduled:
		h.mu.Lock()
		h.planned[e.Token] = e
		h.addWindow(e.Token, e.WindowStart, e.WindowEnd, e.Time)
		h.mu.Unlock()
		return
	case tokenkeeper.EventStarted:
		h.mu.Lock()
		p, ok := h.planned[e.Token]
		h.why[e.Token] = startReason(p, ok, e.Time)
		h.mu.Unlock()
		return
	case tokenkeeper.EventSucceeded:
		m = attemptMark{Token: e.Token, Time: e.Time, OK: true, Latency: e.Latency.Seconds(), Attempt: e.Attempt}
	case tokenkeeper.EventFailed:
		m = attemptMark{Token: e.Token, Time: e.Time, Latency: e.Latency.Seconds(), Attempt: e.Attempt}
		if e.Err != nil {
			m.Error = e.Err.Error()
		}
	case tokenkeeper.EventRemoved:
		h.mu.Lock()
		delete(h.wins, e.Token)
		delete(h.planned, e.Token)
		delete(h.why, e.Token)
		h.mu.Unlock()
		return
	default:
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	m.Reason = h.why[e.Token]
	if m.Reason == "" {
		m.Reason = "on-demand"
	}
	delete(h.why, e.Token)
	h.attempts = append(h.attempts, m)
	cut := 0
	limit := m.Time.Add(-h.span)
	for cut < len(h.attempts) && (h.attempts[cut].Time.Before(limit) || len(h.attempts)-cut > maxAttempts) {
		cut++
	}
	if cut > 0 {
		h.attempts = append(h.attempts[:0], h.attempts[cut:]...)
	}
}

// windows records the current windows of sts (a plan whose event was
// dropped, or that moved without a new plan, is then still drawn right).
func (h *history) windows(sts []tokenkeeper.Status, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, st := range sts {
		h.addWindow(st.Name, st.WindowStart, st.WindowEnd, now)
	}
}

// addWindow records a refresh window of token name. A window that overlaps
// the last one recorded for the token is the same window, re-planned (it
// widens when refreshes get slow): it replaces it. Any other starts a new
// one. Windows that ended more than the span before now are dropped. h.mu
// must be held.
func (h *history) addWindow(name string, start, end, now time.Time) {
	if start.IsZero() || end.IsZero() || end.Before(start) {
		return // not a planner's window (a retry, say)
	}
	w := window{Token: name, Start: start, End: end}
	ws := h.wins[name]
	if n := len(ws); n > 0 && !w.Start.After(ws[n-1].End) && !w.End.Before(ws[n-1].Start) {
		ws[n-1] = w
	} else {
		ws = append(ws, w)
	}
	limit := now.Add(-h.span)
	cut := 0
	for cut < len(ws) && (ws[cut].End.Before(limit) || len(ws)-cut > maxWindowsPerName) {
		cut++
	}
	h.wins[name] = append(ws[:0], ws[cut:]...)
}

// since returns the attempts and windows that reach past from, windows
// sorted by token then start.
func (h *history) since(from time.Time) ([]attemptMark, []window) {
	h.mu.Lock()
	defer h.mu.Unlock()
	i := sort.Search(len(h.attempts), func(i int) bool { return !h.attempts[i].Time.Before(from) })
	attempts := append([]attemptMark(nil), h.attempts[i:]...)
	var wins []window
	for _, ws := range h.wins {
		for _, w := range ws {
			if !w.End.Before(from) {
				wins = append(wins, w)
			}
		}
	}
	sort.Slice(wins, func(i, j int) bool {
		if wins[i].Token != wins[j].Token {
			return wins[i].Token < wins[j].Token
		}
		return wins[i].Start.Before(wins[j].Start)
	})
	return attempts, wins
}
