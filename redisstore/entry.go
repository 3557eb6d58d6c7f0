package redisstore

import (
	"context"
	"sync"
	"time"

	"golang.org/x/oauth2"
)

// entry is what a process knows about one token.
type entry struct {
	name string
	// sem admits one Redis sequence at a time for this token in this process
	// (a refresh, or the watcher's look at it). It is a channel, not a
	// mutex, because a refresh holds it across Redis round trips and a
	// waiting refresh must honour its ctx.
	sem chan struct{}

	mu          sync.Mutex
	rotates     bool
	seen        bool          // the stored state was read or written once
	version     int64         // latest stored version known
	maxVersion  int64         // highest version ever seen (versions restart if Redis loses its data)
	tok         *oauth2.Token // token stored at version (nil: none or unreadable)
	recent      [4]verTok     // recent stored versions, newest first
	held        *oauth2.Token // the token last handed to the keeper
	pending     *oauth2.Token // obtained without Redis, to be written back
	pendingBase int64         // the version pending was refreshed from
	yield       bool          // a Save lost to a newer token: install the stored one
	notify      chan struct{} // closed and replaced on news about the token
}

type verTok struct {
	version int64
	tok     *oauth2.Token
}

func newEntry(name string, rotates bool) *entry {
	return &entry{name: name, sem: make(chan struct{}, 1), rotates: rotates, notify: make(chan struct{})}
}

// lock takes e.sem, waiting until ctx is done.
func (e *entry) lock(ctx context.Context) error {
	select {
	case e.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (e *entry) tryLock() bool {
	select {
	case e.sem <- struct{}{}:
		return true
	default:
		return false
	}
}

func (e *entry) unlock() { <-e.sem }

// observe records a read of the stored state.
func (e *entry) observe(st stored) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.seen = true
	if st.tok != nil {
		e.recordLocked(st.version, st.tok)
		return
	}
	e.version, e.tok = st.version, nil // none, deleted, or unreadable
	e.maxVersion = max(e.maxVersion, st.version)
	if st.err == nil {
		// Deleted (or lost): the history no longer fences anything; the next
		// Save creates the token again.
		e.recent = [len(e.recent)]verTok{}
	}
}

// record notes that tok is stored at version v.
func (e *entry) record(v int64, tok *oauth2.Token) {
	e.mu.Lock()
	e.recordLocked(v, tok)
	e.mu.Unlock()
}

func (e *entry) recordLocked(v int64, tok *oauth2.Token) {
	e.seen = true
	if e.tok == nil || e.version != v || !sameToken(e.tok, tok) {
		copy(e.recent[1:], e.recent[:len(e.recent)-1])
		e.recent[0] = verTok{v, tok}
	}
	e.version, e.tok = v, tok
	e.maxVersion = max(e.maxVersion, v)
	if e.pending != nil && (sameToken(e.pending, tok) || v > e.pendingBase) {
		e.pending = nil // written back, or superseded by the fleet
	}
}

// highest returns the highest version e ever saw.
func (e *entry) highest() int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.maxVersion
}

func (e *entry) setHeld(tok *oauth2.Token) {
	e.mu.Lock()
	e.held = tok
	e.mu.Unlock()
}

// keepPending remembers a token obtained or saved while Redis was
// unreachable, to be written back.
func (e *entry) keepPending(tok *oauth2.Token) {
	e.mu.Lock()
	if e.pending == nil || !sameToken(e.pending, tok) {
		e.pending, e.pendingBase = tok, e.version
	}
	e.held = tok
	e.mu.Unlock()
}

// signal wakes the refreshes waiting for news about the token.
func (e *entry) signal() {
	e.mu.Lock()
	close(e.notify)
	e.notify = make(chan struct{})
	e.mu.Unlock()
}

func (e *entry) waitChan() <-chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.notify
}

// rel says how a token a process holds relates to the stored versions.
type rel struct {
	tok     *oauth2.Token
	version int64
	known   bool // tok was stored at version
	pending bool // tok was refreshed without Redis from version
}

// relOf locates tok among the versions e knows.
func (e *entry) relOf(tok *oauth2.Token) rel {
	e.mu.Lock()
	defer e.mu.Unlock()
	r := rel{tok: tok}
	if tok == nil {
		return r
	}
	if e.pending != nil && sameToken(e.pending, tok) {
		r.version, r.pending = e.pendingBase, true
		return r
	}
	for _, vt := range e.recent {
		if vt.tok != nil && sameToken(vt.tok, tok) {
			r.version, r.known = vt.version, true
			return r
		}
	}
	return r
}

// sameToken reports whether a and b are the same issued token (the keeper
// may have filled in a refresh token or an expiry; the access token
// identifies the issue).
func sameToken(a, b *oauth2.Token) bool {
	if a == nil || b == nil {
		return a == b
	}
	if a.AccessToken != "" || b.AccessToken != "" {
		return a.AccessToken == b.AccessToken
	}
	return a.RefreshToken == b.RefreshToken
}

// order compares the stored token with the one a process holds: +1 if the
// stored one is newer, 0 if it is the same, -1 if it is older (or there is
// none).
//
// Versions decide while they can: a stored version above the one cur was
// stored at is newer. Versions cannot decide for a token the store never
// held (an application's initial token) or after Redis lost its data
// (versions restarted); then the later expiry wins.
func order(st stored, cur rel) int {
	switch {
	case st.tok == nil:
		return -1
	case cur.tok == nil || cur.tok.AccessToken == "":
		return +1
	case sameToken(st.tok, cur.tok):
		return 0
	case cur.pending && st.version > cur.version:
		return +1 // the fleet moved on while this process was cut off
	case cur.pending && st.version == cur.version:
		return -1 // nobody refreshed meanwhile: the local token is newer
	case cur.known && st.version > cur.version:
		return +1
	}
	return cmpExpiry(st.tok.Expiry, cur.tok.Expiry)
}

// cmpExpiry compares expiries, a zero expiry (never) being the latest; a tie
// favours the stored token.
func cmpExpiry(stored, cur time.Time) int {
	switch {
	case stored.IsZero():
		return +1
	case cur.IsZero():
		return -1
	case stored.Before(cur):
		return -1
	}
	return +1
}

// usable reports whether tok may be handed to a keeper at now: it has an
// access token that stays valid for more than margin.
func usable(tok *oauth2.Token, now time.Time, margin time.Duration) bool {
	return tok != nil && tok.AccessToken != "" && (tok.Expiry.IsZero() || tok.Expiry.Sub(now) > margin)
}

// withRefresh returns tok with the refresh token of from when tok has none,
// as the keeper does with a source's answer.
func withRefresh(tok, from *oauth2.Token) *oauth2.Token {
	if tok.RefreshToken != "" || from == nil || from.RefreshToken == "" {
		return tok
	}
	t := *tok
	t.RefreshToken = from.RefreshToken
	return &t
}
