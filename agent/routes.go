package agent

import (
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// route is one endpoint.
type route struct {
	method, path string
	auth         authMode
	h            http.HandlerFunc
}

func (s *Server) routes() {
	metricsHandler := promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{
		ErrorHandling:     promhttp.ContinueOnError,
		Registry:          s.reg, // promhttp_metric_handler_errors_total
		EnableOpenMetrics: true,
	})
	rs := []route{
		{"GET", "/{$}", authNone, s.servePage},
		{"GET", "/healthz", authNone, s.serveHealthz},
		{"GET", "/readyz", authAny, s.serveReadyz},
		{"GET", "/metrics", authAny, metricsHandler.ServeHTTP},
		{"GET", "/v1/tokens", authAny, s.serveList},
		{"GET", "/v1/tokens/{name}", authBearer, func(w http.ResponseWriter, r *http.Request) {
			s.serveToken(w, r, r.PathValue("name"))
		}},
		{"POST", "/v1/tokens/{name}/refresh", authAny, s.serveRefresh},
		{"POST", "/v1/activity", authAny, s.serveActivity},
		{"GET", "/v1/events", authAny, s.serveEvents},
		{"GET", "/v1/overview", authAny, s.serveOverview},
		{"POST", "/v1/session", authBearer, s.serveLogin},
		{"DELETE", "/v1/session", authNone, s.serveLogout},
	}
	s.mux = http.NewServeMux()
	allow := map[string][]string{}
	for _, rt := range rs {
		rt := rt
		s.mux.HandleFunc(rt.method+" "+rt.path, func(w http.ResponseWriter, r *http.Request) {
			if s.guard(w, r, rt.auth) {
				rt.h(w, r)
			}
		})
		if rt.method == "GET" {
			allow[rt.path] = append(allow[rt.path], "GET", "HEAD")
		} else {
			allow[rt.path] = append(allow[rt.path], rt.method)
		}
	}
	// The same paths with any other method: 405 with an Allow header.
	for path, methods := range allow {
		a := strings.Join(methods, ", ")
		s.mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			if s.guard(w, r, authNone) {
				w.Header().Set("Allow", a)
				writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", r.Method+" is not allowed here; use "+a)
			}
		})
	}
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if s.guard(w, r, authNone) {
			writeError(w, http.StatusNotFound, "not_found", "no such endpoint; see docs/agent-api.md")
		}
	})
	s.handler = http.HandlerFunc(s.serveHTTP)
}

// serveHTTP routes the token endpoint itself, ahead of the ServeMux: it is
// the hot path, and the mux's pattern matching costs an allocation per
// request. Every other request goes through the mux.
func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet && r.URL.RawPath == "" {
		if name, ok := strings.CutPrefix(r.URL.Path, "/v1/tokens/"); ok &&
			name != "" && name != "." && name != ".." && strings.IndexByte(name, '/') < 0 {
			if s.guard(w, r, authBearer) {
				s.serveToken(w, r, name)
			}
			return
		}
	}
	s.mux.ServeHTTP(w, r)
}
