package tokenkeeper

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// Sentinel errors. Test for them with errors.Is.
var (
	// ErrClosed is returned by every method of a closed Keeper that would
	// need the background machinery.
	ErrClosed = errors.New("tokenkeeper: keeper is closed")
	// ErrUnknownToken is returned for a name the keeper does not hold (never
	// added, or removed).
	ErrUnknownToken = errors.New("tokenkeeper: unknown token")
	// ErrDuplicateToken is returned by Add for a name already held.
	ErrDuplicateToken = errors.New("tokenkeeper: token name already in use")
	// ErrCircuitOpen is returned at once to a caller with no valid token while
	// the circuit breaker of the token's group is open. The error also wraps
	// the last failure's cause.
	ErrCircuitOpen = errors.New("tokenkeeper: circuit breaker open")
	// ErrReauthRequired means the identity provider refused the grant for good
	// (revoked or invalid refresh token, invalid client): the user or operator
	// must authenticate again. The error also wraps the cause.
	ErrReauthRequired = errors.New("tokenkeeper: re-authentication required")
	// ErrInvalidToken is wrapped by the error a refresh fails with when the
	// source returned an unusable token (nil, empty access token, or already
	// expired).
	ErrInvalidToken = errors.New("tokenkeeper: source returned an unusable token")
	// ErrNotFound is returned by a Store's Load for a name it does not hold.
	ErrNotFound = errors.New("tokenkeeper: token not found in store")
	// ErrMinValidTooLong is wrapped by the error TokenValidFor returns when a
	// freshly refreshed token is not valid for the minimum asked for (the
	// provider's tokens live shorter than that).
	ErrMinValidTooLong = errors.New("tokenkeeper: minimum validity longer than the token's lifetime")
)

// RefreshError is the typed error of a failed refresh. Sources should return
// one (or wrap their error with [Permanent] or [RetryAfter]); the keeper also
// builds one from an *oauth2.RetrieveError. Its Error method never includes a
// token value: the body it keeps is truncated and scrubbed of token fields.
type RefreshError struct {
	// Code is the RFC 6749 error code ("invalid_grant", ...), if any.
	Code string
	// Description is the server's error_description, truncated.
	Description string
	// Status is the HTTP status code, if the failure came from an HTTP answer.
	Status int
	// Body is the start of the server's answer (at most 256 bytes), with the
	// values of token fields replaced by "[redacted]".
	Body string
	// RetryAfter is the delay the server asked for (Retry-After), if any.
	RetryAfter time.Duration
	// Permanent means retrying cannot help: the grant or the client was refused.
	Permanent bool
	// Err is the underlying cause, if any.
	Err error
}

func (e *RefreshError) Error() string {
	var b strings.Builder
	b.WriteString("tokenkeeper: refresh failed")
	if e.Status != 0 {
		fmt.Fprintf(&b, ": HTTP %d", e.Status)
	}
	if e.Code != "" {
		fmt.Fprintf(&b, ": %s", e.Code)
	}
	if e.Description != "" {
		fmt.Fprintf(&b, " (%s)", e.Description)
	}
	if e.Err != nil && e.Code == "" {
		// A Source's error text is scrubbed like a server body: a third-party
		// source that wraps a response into its error must not leak a token.
		fmt.Fprintf(&b, ": %s", ScrubBody([]byte(e.Err.Error())))
	}
	if e.Permanent {
		b.WriteString(" [permanent]")
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " [retry after %s]", e.RetryAfter)
	}
	return b.String()
}

func (e *RefreshError) Unwrap() error { return e.Err }

// Temporary reports whether retrying may help.
func (e *RefreshError) Temporary() bool { return !e.Permanent }

// Permanent wraps err so that the keeper treats it as permanent: the token
// needs re-authentication and no retry is made.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &RefreshError{Permanent: true, Err: err}
}

// RetryAfter wraps err as a transient failure after which the next attempt
// must wait at least d.
func RetryAfter(err error, d time.Duration) error {
	if err == nil {
		return nil
	}
	return &RefreshError{RetryAfter: d, Err: err}
}

// permanentCodes are RFC 6749 error codes after which retrying cannot help.
var permanentCodes = map[string]bool{
	"invalid_grant":          true,
	"invalid_client":         true,
	"unauthorized_client":    true,
	"unsupported_grant_type": true,
	"invalid_scope":          true,
	"access_denied":          true,
}

// IsPermanentCode reports whether an RFC 6749 error code means retrying
// cannot help.
func IsPermanentCode(code string) bool { return permanentCodes[code] }

// Classify turns any error a Source returned into a *RefreshError, deciding
// whether it is permanent and how long to wait before retrying.
//
//   - A *RefreshError anywhere in the chain is used as it is.
//   - An *oauth2.RetrieveError is permanent for the RFC 6749 codes
//     invalid_grant, invalid_client, unauthorized_client,
//     unsupported_grant_type, invalid_scope and access_denied, and transient
//     otherwise (5xx, 429, anything else); Retry-After is read from its
//     response.
//   - Everything else (network errors, timeouts, context errors, panics) is
//     transient.
func Classify(err error) *RefreshError {
	if err == nil {
		return nil
	}
	var re *RefreshError
	if errors.As(err, &re) {
		return re
	}
	var oe *oauth2.RetrieveError
	if errors.As(err, &oe) {
		out := &RefreshError{
			Code:        oe.ErrorCode,
			Description: truncate(oe.ErrorDescription, 200),
			Body:        ScrubBody(oe.Body),
			Err:         scrubbedError{msg: "oauth2: cannot fetch token"},
		}
		if oe.Response != nil {
			out.Status = oe.Response.StatusCode
			out.RetryAfter, _ = ParseRetryAfter(oe.Response.Header.Get("Retry-After"), time.Now())
		}
		out.Permanent = IsPermanentCode(oe.ErrorCode)
		if out.Code == "" && out.Status == http.StatusUnauthorized {
			// A bare 401 from a token endpoint is how some servers say
			// invalid_client.
			out.Permanent = true
		}
		return out
	}
	return &RefreshError{Err: err}
}

// scrubbedError replaces an error whose text may contain a server's body.
type scrubbedError struct{ msg string }

func (e scrubbedError) Error() string { return e.msg }

// ParseRetryAfter parses an HTTP Retry-After value: delay-seconds or an
// HTTP date (RFC 9110, section 10.2.3), relative to now. It returns false for
// an empty or malformed value; a date in the past gives 0. The result is capped
// at 24 hours.
func ParseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	const maxDelay = 24 * time.Hour
	if v[0] >= '0' && v[0] <= '9' {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
				return maxDelay, true
			}
			return 0, false
		}
		if n > uint64(maxDelay/time.Second) {
			return maxDelay, true
		}
		return time.Duration(n) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	d := t.Sub(now)
	if d < 0 {
		d = 0
	}
	if d > maxDelay {
		d = maxDelay
	}
	return d, true
}

// PanicError is the error of a refresh whose Source panicked. The panic value
// is not kept (it could hold a secret); its type and the stack are.
type PanicError struct {
	Token string // the token's name
	Type  string // the panic value's type
	Stack []byte
}

func (e *PanicError) Error() string {
	return fmt.Sprintf("tokenkeeper: source of %q panicked (value of type %s)", e.Token, e.Type)
}

// CircuitOpenError is returned at once to a caller with no valid token while
// the circuit breaker of the token's group is open. It matches
// ErrCircuitOpen with errors.Is and wraps the last failure's cause.
type CircuitOpenError struct {
	Group string
	// Until is when the breaker lets a probe through; zero while a probe is
	// already in flight.
	Until time.Time
	Cause error
}

func (e *CircuitOpenError) Error() string {
	s := fmt.Sprintf("tokenkeeper: circuit breaker open for group %q", e.Group)
	if !e.Until.IsZero() {
		s += " until " + e.Until.UTC().Format(time.RFC3339)
	}
	if e.Cause != nil {
		s += ": " + e.Cause.Error()
	}
	return s
}

func (e *CircuitOpenError) Is(target error) bool { return target == ErrCircuitOpen }
func (e *CircuitOpenError) Unwrap() error        { return e.Cause }

// reauthError matches ErrReauthRequired and wraps the cause.
type reauthError struct {
	name  string
	cause error
}

func (e *reauthError) Error() string {
	return fmt.Sprintf("tokenkeeper: token %q needs re-authentication: %v", e.name, e.cause)
}
func (e *reauthError) Is(target error) bool { return target == ErrReauthRequired }
func (e *reauthError) Unwrap() error        { return e.cause }

// nameError attaches a token name to a sentinel.
type nameError struct {
	name string
	err  error
}

func (e *nameError) Error() string { return fmt.Sprintf("%v: %q", e.err, e.name) }
func (e *nameError) Unwrap() error { return e.err }

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// tokenFields are the names whose values ScrubBody hides.
var tokenFields = []string{"access_token", "refresh_token", "id_token", "token", "client_secret", "assertion", "password", "code"}

// ScrubBody returns the first 256 bytes of an identity provider's answer with
// the values of token-bearing fields (JSON members or form parameters named
// access_token, refresh_token, id_token, token, client_secret, assertion,
// password, code) replaced by "[redacted]". It is meant for error messages.
func ScrubBody(body []byte) string {
	const limit = 256
	s := string(body)
	if len(s) > 4096 {
		s = s[:4096]
	}
	s = scrubFields(s)
	return truncate(s, limit)
}

// scrubFields replaces values after `"field"` + `:` (JSON) or `field=` (form).
func scrubFields(s string) string {
	// Lower-case ASCII only, byte by byte: strings.ToLower can change the
	// length of non-ASCII text, and the indices found in lower are applied
	// to s.
	lb := []byte(s)
	for i, c := range lb {
		if 'A' <= c && c <= 'Z' {
			lb[i] = c + 'a' - 'A'
		}
	}
	lower := string(lb)
	var out strings.Builder
	i := 0
	for i < len(s) {
		j, end := nextSecret(lower, i)
		if j < 0 {
			break
		}
		out.WriteString(s[i:j])
		out.WriteString("[redacted]")
		i = end
	}
	out.WriteString(s[i:])
	return out.String()
}

// nextSecret finds the next secret value at or after from; it returns the
// start and end of the value, or -1.
func nextSecret(lower string, from int) (start, end int) {
	best, bestEnd := -1, -1
	for _, f := range tokenFields {
		for _, pat := range [...]string{`"` + f + `"`, f + "="} {
			k := from
			for {
				idx := strings.Index(lower[k:], pat)
				if idx < 0 {
					break
				}
				p := k + idx
				k = p + len(pat)
				if pat[0] != '"' && p > 0 && isWordByte(lower[p-1]) {
					continue // part of a longer name (e.g. "my_token=")
				}
				vs, ve := valueBounds(lower, k, pat[0] == '"')
				if vs < 0 {
					continue
				}
				if best < 0 || vs < best {
					best, bestEnd = vs, ve
				}
				break
			}
		}
	}
	return best, bestEnd
}

func isWordByte(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
}

// valueBounds locates the value following a field name at i.
func valueBounds(s string, i int, json bool) (int, int) {
	if json {
		for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
			i++
		}
		if i >= len(s) || s[i] != ':' {
			return -1, -1
		}
		i++
		for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
			i++
		}
		if i >= len(s) {
			return -1, -1
		}
		if s[i] == '"' {
			j := i + 1
			for j < len(s) && s[j] != '"' {
				if s[j] == '\\' {
					j++
				}
				j++
			}
			if j >= len(s) {
				return i, len(s)
			}
			return i, j + 1
		}
		j := i
		for j < len(s) && s[j] != ',' && s[j] != '}' {
			j++
		}
		return i, j
	}
	j := i
	for j < len(s) && s[j] != '&' && s[j] != ' ' && s[j] != '\n' {
		j++
	}
	return i, j
}
