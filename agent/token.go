package agent

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/tokenkeeper/tokenkeeper"
	"golang.org/x/oauth2"
)

// tokenEntry caches the JSON answer for one token name.
type tokenEntry struct {
	cur atomic.Pointer[encodedToken]
}

// encodedToken is the JSON answer for one token value. The keeper hands out
// the same *oauth2.Token until the next refresh, so the body is encoded once
// per refresh and the hot path only compares pointers.
type encodedToken struct {
	tok  *oauth2.Token
	body []byte
	life time.Duration // the token's lifetime when it arrived; 0 if unknown
}

// Preallocated header values: assigning them to the header map directly
// avoids canonicalising keys and allocating slices per request. net/http
// only reads them.
var (
	hdrJSON    = []string{"application/json"}
	hdrNoStore = []string{"no-store"}
	hdrNoSniff = []string{"nosniff"}
)

// serveToken answers GET /v1/tokens/{name}[?min_valid=D].
func (s *Server) serveToken(w http.ResponseWriter, r *http.Request, name string) {
	var minValid time.Duration
	if r.URL.RawQuery != "" {
		var err error
		if minValid, err = parseTokenQuery(r.URL.RawQuery); err != nil {
			writeError(w, http.StatusBadRequest, "bad_request", err.Error())
			return
		}
	}
	h, err := s.k.Handle(name)
	if err != nil {
		s.writeKeeperError(w, r, err)
		return
	}
	e := s.entry(name)
	if minValid > 0 {
		// Refuse at once what no fresh token can satisfy: asking the keeper
		// would start a refresh per request.
		if c := e.cur.Load(); c != nil && c.life > 0 && minValid >= c.life {
			writeError(w, http.StatusUnprocessableEntity, "min_valid_unsatisfiable",
				"min_valid "+minValid.String()+" is not shorter than the token's lifetime "+c.life.Round(time.Second).String())
			return
		}
	}
	// The probe context is done, so TokenValidFor does not wait (a
	// documented guarantee): while the token is valid it returns it at
	// once; otherwise it starts the refresh (or joins the one in flight)
	// and returns ctx's error, and only then does the request wait (and
	// count as waiting). A min_valid that fresh tokens cannot satisfy
	// fails here, without waiting.
	tok, err := h.TokenValidFor(s.probe, minValid)
	if err != nil && mustWait(err) {
		tok, err = s.waitToken(r.Context(), h, minValid)
	} else if err == nil {
		s.met.tokenCached.Inc()
	}
	if err != nil {
		s.met.tokenErrors.Inc()
		s.writeKeeperError(w, r, err)
		return
	}
	c := e.cur.Load()
	if c == nil || c.tok != tok {
		c = encodeToken(h, tok)
		e.cur.Store(c)
	}
	hdr := w.Header()
	hdr["Content-Type"] = hdrJSON
	hdr["Cache-Control"] = hdrNoStore
	hdr["X-Content-Type-Options"] = hdrNoSniff
	w.Write(c.body)
}

// mustWait reports whether a probe's error only means that the token needs a
// refresh the caller has to wait for.
func mustWait(err error) bool {
	var re *tokenkeeper.RefreshError
	return errors.Is(err, context.Canceled) && !errors.As(err, &re)
}

// waitToken waits for the refresh a probe started, bounded by WaitTimeout.
func (s *Server) waitToken(ctx context.Context, h *tokenkeeper.Handle, minValid time.Duration) (*oauth2.Token, error) {
	ctx, cancel := context.WithTimeout(ctx, s.wait)
	defer cancel()
	start := time.Now()
	tok, err := h.TokenValidFor(ctx, minValid)
	s.met.tokenWaited.Inc()
	s.met.waitSeconds.Observe(time.Since(start).Seconds())
	return tok, err
}

// entry returns the cache entry for name, creating it if needed.
func (s *Server) entry(name string) *tokenEntry {
	if e := (*s.cache.Load())[name]; e != nil {
		return e
	}
	s.cacheMu.Lock()
	defer s.cacheMu.Unlock()
	old := *s.cache.Load()
	if e := old[name]; e != nil {
		return e
	}
	m := make(map[string]*tokenEntry, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	e := new(tokenEntry)
	m[name] = e
	s.cache.Store(&m)
	return e
}

// forget drops the cache entry of a removed token.
func (s *Server) forget(name string) {
	s.cacheMu.Lock()
	defer s.cacheMu.Unlock()
	old := *s.cache.Load()
	if _, ok := old[name]; !ok {
		return
	}
	m := make(map[string]*tokenEntry, len(old))
	for k, v := range old {
		if k != name {
			m[k] = v
		}
	}
	s.cache.Store(&m)
}

func encodeToken(h *tokenkeeper.Handle, tok *oauth2.Token) *encodedToken {
	c := &encodedToken{tok: tok, body: appendTokenJSON(make([]byte, 0, 128+len(tok.AccessToken)), tok)}
	if !tok.Expiry.IsZero() {
		if st := h.Status(); st.Expiry.Equal(tok.Expiry) && !st.Issued.IsZero() {
			c.life = st.Expiry.Sub(st.Issued)
		}
	}
	return c
}

// appendTokenJSON appends the token's JSON answer:
//
//	{"access_token":"…","token_type":"Bearer","expires_at":"2025-01-02T15:04:05Z","id_token":"…"}
//
// expires_at is omitted for a token without expiry, id_token when the token
// has no id_token extra. The expiry is truncated to the second, never
// rounded up.
func appendTokenJSON(b []byte, tok *oauth2.Token) []byte {
	b = append(b, `{"access_token":`...)
	b = appendJSONString(b, tok.AccessToken)
	b = append(b, `,"token_type":`...)
	b = appendJSONString(b, tok.Type())
	if !tok.Expiry.IsZero() {
		b = append(b, `,"expires_at":"`...)
		b = tok.Expiry.UTC().Truncate(time.Second).AppendFormat(b, time.RFC3339)
		b = append(b, '"')
	}
	if id, ok := tok.Extra("id_token").(string); ok && id != "" {
		b = append(b, `,"id_token":`...)
		b = appendJSONString(b, id)
	}
	return append(b, "}\n"...)
}

// appendJSONString appends s as a JSON string, escaping like encoding/json
// (including <, > and &, and invalid UTF-8 as U+FFFD).
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// maxMinValid bounds min_valid; no token is asked to stay valid longer.
const maxMinValid = 24 * time.Hour

// parseTokenQuery reads the token endpoint's query: min_valid only.
func parseTokenQuery(raw string) (time.Duration, error) {
	var d time.Duration
	seen := false
	for raw != "" {
		var kv string
		kv, raw, _ = strings.Cut(raw, "&")
		if kv == "" {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		if k != "min_valid" {
			if uk, err := url.QueryUnescape(k); err != nil || uk != "min_valid" {
				return 0, errors.New("unknown query parameter " + strconv.Quote(k) + " (only min_valid is accepted)")
			}
		}
		if seen {
			return 0, errors.New("min_valid given twice")
		}
		seen = true
		if strings.ContainsAny(v, "%+") {
			uv, err := url.QueryUnescape(v)
			if err != nil {
				return 0, errors.New("min_valid: malformed escape")
			}
			v = uv
		}
		var err error
		if d, err = parseDuration(v); err != nil {
			return 0, errors.New("min_valid: " + err.Error())
		}
	}
	return d, nil
}

// parseDuration reads a Go duration ("30s", "1m30s") or a number of seconds
// ("30", "1.5"), between 0 and 24 hours.
func parseDuration(v string) (time.Duration, error) {
	if v == "" {
		return 0, errors.New("empty value; want a duration such as 30s, or seconds")
	}
	var d time.Duration
	if c := v[len(v)-1]; c >= '0' && c <= '9' || c == '.' {
		// A number of seconds. (Tried first only when it can be one: a
		// failed ParseFloat allocates its error.)
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return 0, errors.New(strconv.Quote(v) + " is neither a duration such as 30s nor a number of seconds")
		}
		if f != f || f < 0 || f > maxMinValid.Seconds() {
			return 0, errors.New(strconv.Quote(v) + " is out of range (0 to 24h)")
		}
		d = time.Duration(f * float64(time.Second))
	} else {
		var err error
		d, err = time.ParseDuration(v)
		if err != nil {
			return 0, errors.New(strconv.Quote(v) + " is neither a duration such as 30s nor a number of seconds")
		}
	}
	if d < 0 || d > maxMinValid {
		return 0, errors.New(strconv.Quote(v) + " is out of range (0 to 24h)")
	}
	return d, nil
}
