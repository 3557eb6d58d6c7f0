package agent

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/tokenkeeper/tokenkeeper"
)

// metrics are the agent's Prometheus metrics. Counters that follow refreshes
// are fed by the keeper's events; gauges are read from Keeper.Status and
// Keeper.QueueStats at scrape time. Labels carry token and group names,
// never token values.
type metrics struct {
	refreshes   *prometheus.CounterVec   // token, result
	latency     *prometheus.HistogramVec // token, result
	transitions *prometheus.CounterVec   // group, state
	events      *prometheus.CounterVec   // kind

	tokenCached prometheus.Counter // token requests answered from the cache
	tokenWaited prometheus.Counter // token requests that waited for a refresh
	tokenErrors prometheus.Counter // token requests answered with an error
	waitSeconds prometheus.Histogram
	sseDropped  prometheus.Counter
}

func newMetrics(s *Server) *metrics {
	m := &metrics{
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenkeeper_refreshes_total",
			Help: "Refresh attempts by token and result (success, failure, permanent_failure).",
		}, []string{"token", "result"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tokenkeeper_refresh_duration_seconds",
			Help:    "Duration of refresh attempts (calls to the identity provider).",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"token", "result"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenkeeper_breaker_transitions_total",
			Help: "Circuit breaker state changes by group and new state.",
		}, []string{"group", "state"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenkeeper_events_total",
			Help: "Keeper events received by the agent, by kind.",
		}, []string{"kind"}),
		waitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tokenkeeper_agent_token_wait_seconds",
			Help:    "How long token requests that found no valid token waited for a refresh.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
		sseDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tokenkeeper_agent_sse_dropped_total",
			Help: "Event streams ended because their client fell behind (the browser reconnects and replays).",
		}),
	}
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tokenkeeper_agent_token_requests_total",
		Help: "Token requests (GET /v1/tokens/{name}) by result: cached (served at once), waited (had to wait for a refresh), error.",
	}, []string{"result"})
	m.tokenCached = requests.WithLabelValues("cached")
	m.tokenWaited = requests.WithLabelValues("waited")
	m.tokenErrors = requests.WithLabelValues("error")

	k := s.k
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "tokenkeeper_agent_info",
		Help:        "Always 1; the version label says which agent runs.",
		ConstLabels: prometheus.Labels{"version": s.version},
	})
	info.Set(1)
	s.reg.MustRegister(
		m.refreshes, m.latency, m.transitions, m.events, requests, m.waitSeconds, m.sseDropped, info,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tokenkeeper_queue_depth",
			Help: "Refreshes waiting for a worker.",
		}, func() float64 { q, _, _ := k.QueueStats(); return float64(q) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tokenkeeper_refreshes_running",
			Help: "Refreshes running on a worker.",
		}, func() float64 { _, r, _ := k.QueueStats(); return float64(r) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "tokenkeeper_worker_panics_total",
			Help: "Panics recovered in refresh workers and sources.",
		}, func() float64 { _, _, p := k.QueueStats(); return float64(p) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "tokenkeeper_events_dropped_total",
			Help: "Keeper events dropped because their consumer fell behind.",
		}, func() float64 { return float64(k.DroppedEvents()) }),
		&statusCollector{k: k},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// event updates the event-driven metrics.
func (m *metrics) event(e tokenkeeper.Event) {
	m.events.WithLabelValues(e.Kind.String()).Inc()
	switch e.Kind {
	case tokenkeeper.EventSucceeded:
		m.refreshes.WithLabelValues(e.Token, "success").Inc()
		m.latency.WithLabelValues(e.Token, "success").Observe(e.Latency.Seconds())
	case tokenkeeper.EventFailed:
		result := "failure"
		if re := tokenkeeper.Classify(e.Err); re != nil && re.Permanent {
			result = "permanent_failure"
		}
		m.refreshes.WithLabelValues(e.Token, result).Inc()
		if e.Latency > 0 {
			m.latency.WithLabelValues(e.Token, "failure").Observe(e.Latency.Seconds())
		}
	case tokenkeeper.EventBreaker:
		m.transitions.WithLabelValues(e.Group, e.Breaker.String()).Inc()
	}
}

// forget drops the series of a removed token.
func (m *metrics) forget(token string) {
	m.refreshes.DeletePartialMatch(prometheus.Labels{"token": token})
	m.latency.DeletePartialMatch(prometheus.Labels{"token": token})
}

var (
	descExpiresIn = prometheus.NewDesc("tokenkeeper_token_expires_in_seconds",
		"Seconds until the token expires (negative once expired); absent for a token without expiry or without a token.",
		[]string{"token"}, nil)
	descNextRefresh = prometheus.NewDesc("tokenkeeper_token_next_refresh_in_seconds",
		"Seconds until the next planned refresh; absent when none is planned.",
		[]string{"token", "reason"}, nil)
	descTokenState = prometheus.NewDesc("tokenkeeper_token_state",
		"1 for the token's current state, 0 for the others.",
		[]string{"token", "state"}, nil)
	descBreaker = prometheus.NewDesc("tokenkeeper_breaker_state",
		"1 for the circuit breaker's current state, 0 for the others (one breaker per group).",
		[]string{"group", "state"}, nil)
	descConsecutive = prometheus.NewDesc("tokenkeeper_token_consecutive_failures",
		"Failed refresh attempts since the last success.",
		[]string{"token"}, nil)
)

var (
	allStates = []tokenkeeper.State{
		tokenkeeper.StateEmpty, tokenkeeper.StateValid, tokenkeeper.StateRefreshing, tokenkeeper.StateRetrying,
		tokenkeeper.StateExpired, tokenkeeper.StateReauthRequired, tokenkeeper.StateDormant,
	}
	allBreakerStates = []tokenkeeper.BreakerState{
		tokenkeeper.BreakerClosed, tokenkeeper.BreakerOpen, tokenkeeper.BreakerHalfOpen,
	}
)

// statusCollector reads Keeper.Status once per scrape.
type statusCollector struct{ k *tokenkeeper.Keeper }

func (c *statusCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descExpiresIn
	ch <- descNextRefresh
	ch <- descTokenState
	ch <- descBreaker
	ch <- descConsecutive
}

func (c *statusCollector) Collect(ch chan<- prometheus.Metric) {
	now := time.Now()
	groups := map[string]bool{}
	for _, st := range c.k.Status() {
		if !st.Expiry.IsZero() {
			ch <- prometheus.MustNewConstMetric(descExpiresIn, prometheus.GaugeValue, st.Expiry.Sub(now).Seconds(), st.Name)
		}
		if !st.NextRefresh.IsZero() {
			ch <- prometheus.MustNewConstMetric(descNextRefresh, prometheus.GaugeValue, st.NextRefresh.Sub(now).Seconds(), st.Name, st.NextReason)
		}
		for _, s := range allStates {
			ch <- prometheus.MustNewConstMetric(descTokenState, prometheus.GaugeValue, b2f(st.State == s), st.Name, s.String())
		}
		ch <- prometheus.MustNewConstMetric(descConsecutive, prometheus.GaugeValue, float64(st.Failures), st.Name)
		if !groups[st.Group] {
			groups[st.Group] = true
			for _, b := range allBreakerStates {
				ch <- prometheus.MustNewConstMetric(descBreaker, prometheus.GaugeValue, b2f(st.Breaker == b), st.Group, b.String())
			}
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
