package agent

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// The guards run before routing, on every request. They are written to
// allocate nothing on the accepted path: the token endpoint's throughput
// depends on it.

// allowedHost reports whether a Host header names the agent on a loopback
// address: "localhost", a loopback IP, either with an optional port. Any
// other name could be an attacker's domain re-bound to 127.0.0.1 (DNS
// rebinding), through which a web page would reach the agent.
func allowedHost(host string) bool {
	h := host
	if strings.HasPrefix(h, "[") {
		end := strings.IndexByte(h, ']')
		if end < 0 || !validPort(h[end+1:]) {
			return false
		}
		h = h[1:end]
	} else if i := strings.IndexByte(h, ':'); i >= 0 {
		if !validPort(h[i:]) {
			return false
		}
		h = h[:i]
	}
	if h == "" {
		return false
	}
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(h)
	return err == nil && ip.Zone() == "" && ip.Unmap().IsLoopback()
}

// validPort accepts "" or ":" followed by 1 to 5 digits.
func validPort(p string) bool {
	if p == "" {
		return true
	}
	if p[0] != ':' || len(p) < 2 || len(p) > 6 {
		return false
	}
	for i := 1; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return false
		}
	}
	return true
}

// overUnixSocket reports whether r arrived on a Unix socket, which a browser
// cannot reach: the Host check does not apply there (clients send all sorts
// of names, such as the socket path).
func overUnixSocket(r *http.Request) bool {
	a, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	_, ok := a.(*net.UnixAddr)
	return ok
}

// sameOrigin reports whether an Origin header names the agent itself
// (scheme and the Host the request was sent to).
func sameOrigin(origin string, r *http.Request) bool {
	scheme := "http://"
	if r.TLS != nil {
		scheme = "https://"
	}
	rest, ok := strings.CutPrefix(origin, scheme)
	return ok && rest != "" && strings.EqualFold(rest, r.Host)
}

// crossSite reports whether a browser marked the request as coming from
// another site or another port of this host (Sec-Fetch-Site "cross-site" or
// "same-site"; cookies do not distinguish ports).
func crossSite(r *http.Request) bool {
	v := header(r, "Sec-Fetch-Site")
	return v == "cross-site" || v == "same-site"
}

// header returns the first value of the header with the canonical name
// key. It indexes the map directly: Header.Get would canonicalise the key
// on every call, which the hot path can do without (net/http canonicalises
// the names of received headers).
func header(r *http.Request, key string) string {
	if v := r.Header[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// constantTimeEqual compares a and b in time that depends only on their
// lengths (the secret's length is not a secret).
func constantTimeEqual(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	var v byte
	for i := 0; i < len(a); i++ {
		v |= a[i] ^ b[i]
	}
	return v == 0
}

// authMode says which credentials an endpoint accepts.
type authMode uint8

const (
	authNone   authMode = iota // open (health, static page)
	authBearer                 // the bearer secret only
	authAny                    // the bearer secret or the page's session cookie
)

// authorized checks r's credentials. It returns "" when they are accepted,
// else why not.
func (s *Server) authorized(r *http.Request, mode authMode) string {
	if s.secret == "" || mode == authNone {
		return ""
	}
	if a := header(r, "Authorization"); a != "" {
		const p = "bearer "
		if len(a) > len(p) && strings.EqualFold(a[:len(p)], p) && constantTimeEqual(a[len(p):], s.secret) {
			return ""
		}
		return "wrong bearer secret"
	}
	if mode == authAny {
		if c, err := r.Cookie(s.cookie); err == nil {
			if constantTimeEqual(c.Value, s.session) {
				return ""
			}
			return "stale session cookie: open the link printed by the agent again"
		}
	}
	return "missing bearer secret (Authorization: Bearer <secret>)"
}

// guard applies the Host, Origin, fetch-site and credential checks and
// writes the refusal. It reports whether the request may proceed.
func (s *Server) guard(w http.ResponseWriter, r *http.Request, mode authMode) bool {
	if !allowedHost(r.Host) && !overUnixSocket(r) {
		s.refuse(w, r, http.StatusMisdirectedRequest, "bad_host",
			"the Host header must name a loopback address or localhost")
		return false
	}
	if o := header(r, "Origin"); o != "" && !sameOrigin(o, r) {
		s.refuse(w, r, http.StatusForbidden, "foreign_origin", "requests from other origins are refused")
		return false
	}
	if mode == authNone {
		return true
	}
	if crossSite(r) {
		s.refuse(w, r, http.StatusForbidden, "foreign_origin", "cross-site requests are refused")
		return false
	}
	if why := s.authorized(r, mode); why != "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="tokenkeeper"`)
		s.refuse(w, r, http.StatusUnauthorized, "unauthorized", why)
		return false
	}
	return true
}

// refuse writes an error for a request the guards refused and logs it
// (without any header value).
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, status int, code, msg string) {
	if s.log != nil {
		s.log.Warn("tokenkeeper agent: request refused", "method", r.Method, "path", r.URL.Path,
			"remote", r.RemoteAddr, "status", status, "code", code)
	}
	writeError(w, status, code, msg)
}
