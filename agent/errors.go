package agent

import (
	"context"
	"errors"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// Error codes of the JSON error body {"error": "...", "code": "..."}.
const (
	CodeBadRequest            = "bad_request"             // 400
	CodeUnauthorized          = "unauthorized"            // 401
	CodeForeignOrigin         = "foreign_origin"          // 403
	CodeNotFound              = "not_found"               // 404: no such endpoint
	CodeUnknownToken          = "unknown_token"           // 404
	CodeMethodNotAllowed      = "method_not_allowed"      // 405
	CodeReauthRequired        = "reauth_required"         // 409
	CodeBodyTooLarge          = "body_too_large"          // 413
	CodeUnsupportedMediaType  = "unsupported_media_type"  // 415
	CodeBadHost               = "bad_host"                // 421
	CodeMinValidUnsatisfiable = "min_valid_unsatisfiable" // 422
	CodeInternal              = "internal"                // 500
	CodeRefreshFailed         = "refresh_failed"          // 502
	CodeCircuitOpen           = "circuit_open"            // 503
	CodeClosed                = "closed"                  // 503
	CodeNotReady              = "not_ready"               // 503
	CodeTimeout               = "timeout"                 // 504
)

// writeError writes the JSON error body. msg must hold no secret.
func writeError(w http.ResponseWriter, status int, code, msg string) {
	b := make([]byte, 0, 48+len(msg)+len(code))
	b = append(b, `{"error":`...)
	b = appendJSONString(b, msg)
	b = append(b, `,"code":`...)
	b = appendJSONString(b, code)
	b = append(b, "}\n"...)
	hdr := w.Header()
	hdr["Content-Type"] = hdrJSON
	hdr["Cache-Control"] = hdrNoStore
	hdr["X-Content-Type-Options"] = hdrNoSniff
	w.WriteHeader(status)
	w.Write(b)
}

// writeKeeperError maps an error of the keeper to a status and a code.
func (s *Server) writeKeeperError(w http.ResponseWriter, r *http.Request, err error) {
	var (
		re *tokenkeeper.RefreshError
		pe *tokenkeeper.PanicError
		ce *tokenkeeper.CircuitOpenError
	)
	status, code := http.StatusInternalServerError, CodeInternal
	switch {
	case errors.Is(err, tokenkeeper.ErrUnknownToken):
		status, code = http.StatusNotFound, CodeUnknownToken
	case errors.Is(err, tokenkeeper.ErrReauthRequired):
		status, code = http.StatusConflict, CodeReauthRequired
	case errors.Is(err, tokenkeeper.ErrCircuitOpen):
		status, code = http.StatusServiceUnavailable, CodeCircuitOpen
		retry := time.Second // also while the breaker's probe is in flight (Until is zero)
		if errors.As(err, &ce) && !ce.Until.IsZero() {
			retry = max(retry, time.Until(ce.Until))
		}
		w.Header().Set("Retry-After", retryAfter(retry))
	case errors.Is(err, tokenkeeper.ErrClosed):
		status, code = http.StatusServiceUnavailable, CodeClosed
	case errors.Is(err, tokenkeeper.ErrMinValidTooLong):
		status, code = http.StatusUnprocessableEntity, CodeMinValidUnsatisfiable
	case errors.As(err, &re):
		status, code = http.StatusBadGateway, CodeRefreshFailed
		if re.RetryAfter > 0 {
			w.Header().Set("Retry-After", retryAfter(re.RetryAfter))
		}
	case errors.As(err, &pe):
		status, code = http.StatusBadGateway, CodeRefreshFailed
	case errors.Is(err, context.DeadlineExceeded):
		status, code = http.StatusGatewayTimeout, CodeTimeout
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		return // the client went away
	}
	if status >= 500 && s.log != nil {
		// Keeper errors hold no token value.
		s.log.Warn("tokenkeeper agent: request failed", "method", r.Method, "path", r.URL.Path,
			"status", status, "code", code, "error", err.Error())
	}
	writeError(w, status, code, err.Error())
}

// retryAfter formats d as Retry-After delay-seconds, rounded up.
func retryAfter(d time.Duration) string {
	return strconv.FormatInt(int64(math.Ceil(d.Seconds())), 10)
}
