package oidc

import (
	"errors"
	"strings"
)

// Errors a Source wraps in the *tokenkeeper.RefreshError it returns. Test
// for them with errors.Is.
var (
	// ErrNoRefreshToken: the refresh_token grant was asked to refresh a
	// token that carries no refresh token. Permanent.
	ErrNoRefreshToken = errors.New("oidc: no refresh token to refresh with")
	// ErrMalformedResponse: the token endpoint's success answer is not a
	// token response (not JSON, an HTML page, truncated, wrong field types).
	ErrMalformedResponse = errors.New("oidc: malformed token response")
	// ErrMissingAccessToken: the success answer has no access_token.
	ErrMissingAccessToken = errors.New("oidc: token response has no access_token")
	// ErrUnsupportedTokenType: the success answer's token_type is not
	// "Bearer". Permanent: the client cannot use such a token.
	ErrUnsupportedTokenType = errors.New("oidc: unsupported token_type")
	// ErrResponseTooLarge: the answer exceeded Config.MaxResponseBytes.
	ErrResponseTooLarge = errors.New("oidc: token response too large")
	// ErrOutcomeUnknown: a refresh request was sent but its answer was lost
	// or unusable, so the server may have rotated the refresh token. Sending
	// it again could trip the server's reuse detection (which revokes the
	// whole grant), so the Source does not, unless Config.ReuseGrace allows
	// it. Permanent when no resend is allowed.
	ErrOutcomeUnknown = errors.New("oidc: outcome of the refresh request is unknown; the refresh token may be spent")
	// ErrRefreshTokenSpent: the Source was asked to send a refresh token
	// that the server already exchanged for a new one. Permanent.
	ErrRefreshTokenSpent = errors.New("oidc: refresh token already exchanged")
	// ErrTokenEndpoint: the token endpoint answered with an error status.
	// The RefreshError's Code, Description and Status say more.
	ErrTokenEndpoint = errors.New("oidc: token endpoint refused the request")
	// ErrDiscovery: the issuer's metadata could not be fetched or is unusable.
	ErrDiscovery = errors.New("oidc: discovery failed")
)

// detailError is a sentinel with a secret-free detail.
type detailError struct {
	err    error
	detail string
}

func (e *detailError) Error() string { return e.err.Error() + ": " + e.detail }
func (e *detailError) Unwrap() error { return e.err }

// withDetail returns err with a detail appended, after removing secrets
// from it.
func withDetail(err error, detail string, secrets []string) error {
	return &detailError{err: err, detail: redact(detail, secrets)}
}

// minSecretLen is the length from which a known secret is removed from
// messages. Shorter values are not secrets worth the name, and replacing
// them would garble every message.
const minSecretLen = 4

// redact replaces every occurrence of a secret in s by "[redacted]".
func redact(s string, secrets []string) string {
	for _, sec := range secrets {
		if len(sec) >= minSecretLen && strings.Contains(s, sec) {
			s = strings.ReplaceAll(s, sec, "[redacted]")
		}
	}
	return s
}

// clean makes a server-supplied string fit for a message: secrets removed,
// control characters replaced, at most n bytes (cut at a rune boundary).
func clean(s string, n int, secrets []string) string {
	s = redact(s, secrets)
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == 0xfffd {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, "\ufffd"))
	if len(s) > n {
		cut := n
		for cut > 0 && !utf8Start(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

func utf8Start(b byte) bool { return b&0xC0 != 0x80 }

// validCode reports whether s is a plausible RFC 6749 error code: 1 to 64
// characters from %x20-21 / %x23-5B / %x5D-7E.
func validCode(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}
