package plan

import "strconv"

// Reason says why a decision was taken.
type Reason uint8

const (
	// ReasonNone: no decision (zero value).
	ReasonNone Reason = iota
	// ReasonNoExpiry: the token does not expire; nothing is planned.
	ReasonNoExpiry
	// ReasonUnused: the token was not used for UnusedAfter; nothing is planned
	// until its next use.
	ReasonUnused
	// ReasonWindowOpens: wait until the window opens, then decide again.
	ReasonWindowOpens
	// ReasonWaitIdle: inside the window, the application is busy; decide
	// again at At, the earliest moment it can have been idle for IdleGap
	// (or the quiet slot, or the window's end, whichever comes first).
	ReasonWaitIdle
	// ReasonIdle: refresh now, the application is idle.
	ReasonIdle
	// ReasonQuietSlot: refresh now, this is the slot with the lowest predicted
	// activity in the window.
	ReasonQuietSlot
	// ReasonWindowEnd: refresh now, the window ends.
	ReasonWindowEnd
	// ReasonExpired: refresh now, the token has expired.
	ReasonExpired
)

var reasonNames = [...]string{
	ReasonNone:        "none",
	ReasonNoExpiry:    "no-expiry",
	ReasonUnused:      "unused",
	ReasonWindowOpens: "window-opens",
	ReasonWaitIdle:    "wait-idle",
	ReasonIdle:        "idle",
	ReasonQuietSlot:   "quiet-slot",
	ReasonWindowEnd:   "window-end",
	ReasonExpired:     "expired",
}

// String returns a short lower-case name ("wait-idle", "window-end", ...),
// or "Reason(N)" for a value that is not one of the constants.
func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return "Reason(" + strconv.Itoa(int(r)) + ")"
}

// Refresh reports whether a decision with this reason means "refresh at At"
// (as opposed to "decide again at At" or "nothing planned"). It is true for
// [ReasonIdle], [ReasonQuietSlot], [ReasonWindowEnd] and [ReasonExpired].
func (r Reason) Refresh() bool {
	switch r {
	case ReasonIdle, ReasonQuietSlot, ReasonWindowEnd, ReasonExpired:
		return true
	}
	return false
}
