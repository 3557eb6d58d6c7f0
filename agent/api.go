package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// TokenStatus is the secret-free JSON form of tokenkeeper.Status.
type TokenStatus struct {
	Name            string    `json:"name"`
	Group           string    `json:"group"`
	State           string    `json:"state"`
	Issued          time.Time `json:"issued,omitzero"`
	ExpiresAt       time.Time `json:"expires_at,omitzero"`
	ExpiresIn       *float64  `json:"expires_in_seconds,omitempty"`
	NextRefresh     time.Time `json:"next_refresh,omitzero"`
	NextReason      string    `json:"next_reason,omitempty"`
	WindowStart     time.Time `json:"window_start,omitzero"`
	WindowEnd       time.Time `json:"window_end,omitzero"`
	RefreshingSince time.Time `json:"refreshing_since,omitzero"`
	Refreshes       uint64    `json:"refreshes"`
	Failed          uint64    `json:"failed"`
	Failures        int       `json:"consecutive_failures"`
	LastRefresh     time.Time `json:"last_refresh,omitzero"`
	LastLatency     float64   `json:"last_latency_seconds"`
	LatencyP99      float64   `json:"latency_p99_seconds"`
	LastError       string    `json:"last_error,omitempty"`
	Breaker         string    `json:"breaker"`
	BreakerUntil    time.Time `json:"breaker_until,omitzero"`
	LastUsed        time.Time `json:"last_used,omitzero"`
	Ready           bool      `json:"ready"`
}

func toStatusJSON(st tokenkeeper.Status, now time.Time) TokenStatus {
	j := TokenStatus{
		Name: st.Name, Group: st.Group, State: st.State.String(),
		Issued: st.Issued, ExpiresAt: st.Expiry,
		NextRefresh: st.NextRefresh, NextReason: st.NextReason,
		WindowStart: st.WindowStart, WindowEnd: st.WindowEnd,
		RefreshingSince: st.RefreshingSince,
		Refreshes:       st.Refreshes, Failed: st.Failed, Failures: st.Failures,
		LastRefresh: st.LastRefresh, LastLatency: st.LastLatency.Seconds(), LatencyP99: st.LatencyP99.Seconds(),
		LastError: st.LastError, Breaker: st.Breaker.String(), BreakerUntil: st.BreakerUntil,
		LastUsed: st.LastUsed, Ready: ready(st, now),
	}
	if !st.Expiry.IsZero() {
		in := st.Expiry.Sub(now).Seconds()
		j.ExpiresIn = &in
	}
	return j
}

// ready reports whether a token can be handed out now without waiting: it
// holds an access token that has not expired (also while it is being
// refreshed or retried, or dormant).
func ready(st tokenkeeper.Status, now time.Time) bool {
	switch st.State {
	case tokenkeeper.StateValid, tokenkeeper.StateRetrying, tokenkeeper.StateDormant:
		// Each of these means an access token is held (StateEmpty: none).
	case tokenkeeper.StateRefreshing:
		// A refresh in flight hides whether an access token is held: a
		// token whose first refresh runs (it holds nothing, or only a
		// refresh token) is refreshing too. Such a token has neither an
		// expiry nor a successful refresh. (A token without expiry that
		// was loaded from the store and is being refreshed before its
		// first refresh here is counted as not ready: a brief, harmless
		// false negative.)
		if st.Issued.IsZero() || st.Expiry.IsZero() && st.Refreshes == 0 {
			return false
		}
	default: // empty, expired, reauth-required
		return false
	}
	return st.Expiry.IsZero() || st.Expiry.After(now)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeError(w, http.StatusInternalServerError, CodeInternal, "encoding the answer failed")
		return
	}
	hdr := w.Header()
	hdr["Content-Type"] = hdrJSON
	hdr["Cache-Control"] = hdrNoStore
	hdr["X-Content-Type-Options"] = hdrNoSniff
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

func (s *Server) statuses(now time.Time) []TokenStatus {
	sts := s.k.Status()
	out := make([]TokenStatus, len(sts))
	for i, st := range sts {
		out[i] = toStatusJSON(st, now)
	}
	return out
}

// serveList answers GET /v1/tokens: every token's status, never a value.
func (s *Server) serveList(w http.ResponseWriter, r *http.Request) {
	if !noQuery(w, r) {
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Tokens []TokenStatus `json:"tokens"`
	}{s.statuses(time.Now())})
}

// noQuery refuses a request with query parameters (the endpoint takes none).
func noQuery(w http.ResponseWriter, r *http.Request) bool {
	if r.URL.RawQuery != "" {
		writeError(w, http.StatusBadRequest, CodeBadRequest, "this endpoint takes no query parameters")
		return false
	}
	return true
}

// Body limits.
const (
	maxActivityBody = 1 << 10
	maxRefreshBody  = 1 << 10
	maxRefreshWait  = 5 * time.Minute
)

// readBody reads a small request body, answering 413 beyond limit and 415
// for a non-empty body that is not JSON. ok is false when it answered.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) (body []byte, ok bool) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, CodeBodyTooLarge,
				"request body larger than "+strconv.FormatInt(limit, 10)+" bytes")
		} else {
			writeError(w, http.StatusBadRequest, CodeBadRequest, "reading the request body failed")
		}
		return nil, false
	}
	b = bytes.TrimSpace(b)
	if len(b) > 0 {
		ct := r.Header.Get("Content-Type")
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			writeError(w, http.StatusUnsupportedMediaType, CodeUnsupportedMediaType, "the request body must be application/json")
			return nil, false
		}
	}
	return b, true
}

// decodeStrict decodes one JSON object with no unknown fields.
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("unexpected data after the JSON object")
	}
	return nil
}

// serveRefresh answers POST /v1/tokens/{name}/refresh[?timeout=D]: it
// refreshes the token now and waits for the result (at most the timeout,
// WaitTimeout by default), then answers with the token's status.
func (s *Server) serveRefresh(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	wait := s.wait
	for k, vs := range r.URL.Query() {
		if k != "timeout" || len(vs) != 1 {
			writeError(w, http.StatusBadRequest, CodeBadRequest, "unknown or repeated query parameter "+strconv.Quote(k)+" (only timeout is accepted)")
			return
		}
		d, err := parseDuration(vs[0])
		if err != nil || d <= 0 || d > maxRefreshWait {
			writeError(w, http.StatusBadRequest, CodeBadRequest, "timeout must be a duration between 0 and 5m")
			return
		}
		wait = d
	}
	b, ok := readBody(w, r, maxRefreshBody)
	if !ok {
		return
	}
	if len(b) > 0 {
		var empty struct{}
		if err := decodeStrict(b, &empty); err != nil {
			writeError(w, http.StatusBadRequest, CodeBadRequest, "the body must be empty or {}: "+err.Error())
			return
		}
	}
	h, err := s.k.Handle(name)
	if err != nil {
		s.writeKeeperError(w, r, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	if _, err := h.Refresh(ctx); err != nil {
		s.writeKeeperError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toStatusJSON(h.Status(), time.Now()))
}

// serveActivity answers POST /v1/activity with an optional body
// {"at": "2025-01-02T15:04:05Z"}: the application was active (now, or at
// the given moment). 204 No Content.
func (s *Server) serveActivity(w http.ResponseWriter, r *http.Request) {
	if !noQuery(w, r) {
		return
	}
	b, ok := readBody(w, r, maxActivityBody)
	if !ok {
		return
	}
	var req struct {
		At *time.Time `json:"at"`
	}
	if len(b) > 0 {
		if err := decodeStrict(b, &req); err != nil {
			writeError(w, http.StatusBadRequest, CodeBadRequest, "malformed activity report: "+err.Error())
			return
		}
	}
	if req.At == nil {
		s.k.NoteActivity()
	} else {
		s.k.NoteActivityAt(*req.At)
	}
	w.WriteHeader(http.StatusNoContent)
}

// serveHealthz answers GET /healthz: the process is alive. No credentials.
func (s *Server) serveHealthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// serveReadyz answers GET /readyz: 200 when every token can be handed out
// without waiting, else 503 with the tokens that cannot.
func (s *Server) serveReadyz(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	var notReady []string
	for _, st := range s.k.Status() {
		if !ready(st, now) {
			notReady = append(notReady, st.Name+" ("+st.State.String()+")")
		}
	}
	if len(notReady) > 0 {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{
			"status": "not ready", "code": CodeNotReady, "not_ready": notReady,
		})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// serveLogin answers POST /v1/session (bearer secret required): it sets the
// status page's session cookie, an HMAC of the secret, HttpOnly and
// SameSite=Strict. 204 No Content.
func (s *Server) serveLogin(w http.ResponseWriter, r *http.Request) {
	if s.secret != "" {
		http.SetCookie(w, &http.Cookie{
			Name: s.cookie, Value: s.session, Path: "/",
			HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil,
			MaxAge: int((30 * 24 * time.Hour).Seconds()),
		})
	}
	w.Header()["Cache-Control"] = hdrNoStore
	w.WriteHeader(http.StatusNoContent)
}

// serveLogout answers DELETE /v1/session: it clears the cookie.
func (s *Server) serveLogout(w http.ResponseWriter, r *http.Request) {
	if s.secret != "" {
		http.SetCookie(w, &http.Cookie{Name: s.cookie, Value: "", Path: "/", MaxAge: -1,
			HttpOnly: true, SameSite: http.SameSiteStrictMode})
	}
	w.Header()["Cache-Control"] = hdrNoStore
	w.WriteHeader(http.StatusNoContent)
}
