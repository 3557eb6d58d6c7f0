package daemon

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/config"
	"github.com/tokenkeeper/tokenkeeper/redisstore"
)

// openRedis opens the store shared with other agents through Redis. It
// does not contact Redis: an unreachable one makes the store start degraded
// (and the first read of the store fail).
func (d *Daemon) openRedis(s config.Store) error {
	setRedisLogger(d.log)
	ro := &redis.Options{Addr: s.Address, DB: s.DB, Username: s.Username, Password: s.Password}
	if s.TLS {
		host, _, _ := net.SplitHostPort(s.Address)
		ro.TLSConfig = &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	}
	rdb := redis.NewClient(ro)
	rs, err := redisstore.New(rdb, redisstore.Options{
		Prefix:  s.Prefix,
		Key:     s.Key,
		LockTTL: s.LockTTL,
		Extras:  extraKeys(),
		OnEvent: d.storeEvent,
	})
	if err != nil {
		rdb.Close()
		return err
	}
	d.store, d.shared, d.rdb = rs, rs, rdb
	return nil
}

// coordinate wraps the source of t so that the agents sharing the redis
// store refresh it once per cycle, and never spend a refresh token twice.
func (d *Daemon) coordinate(t config.Token, src tokenkeeper.Source) tokenkeeper.Source {
	if d.shared == nil {
		return src
	}
	var opts []redisstore.CoordinateOption
	switch t.Source.Type {
	case config.SourceClientCredentials:
		// No refresh token: while Redis is unreachable each agent may
		// fetch its own.
		opts = append(opts, redisstore.Rotates(false))
	case config.SourceCognito:
		opts = append(opts, redisstore.Rotates(t.Source.Rotation))
	}
	// oidc and command sources are assumed to rotate: they are not
	// refreshed while Redis is unreachable (their valid token is served).
	return d.shared.Coordinate(src, t.Name, opts...)
}

// storeEvent logs what the redis store reports. It runs on the store's own
// goroutine.
func (d *Daemon) storeEvent(e redisstore.Event) {
	attrs := []any{"event", e.Kind.String()}
	if e.Token != "" {
		attrs = append(attrs, "token", e.Token)
	}
	if e.Version != 0 {
		attrs = append(attrs, "version", e.Version)
	}
	if e.Err != nil {
		attrs = append(attrs, "error", e.Err.Error()) // secret-free
	}
	switch e.Kind {
	case redisstore.EventDegraded:
		d.log.Warn("tokenkeeper agent: redis unreachable; serving the tokens held, refreshing only those whose refresh tokens do not rotate", attrs...)
	case redisstore.EventRecovered:
		d.log.Info("tokenkeeper agent: redis reachable again", attrs...)
	case redisstore.EventConflict, redisstore.EventError:
		d.log.Warn("tokenkeeper agent: redis store", attrs...)
	case redisstore.EventTakeover, redisstore.EventLocalRefresh, redisstore.EventWroteBack:
		d.log.Info("tokenkeeper agent: redis store", attrs...)
	default:
		d.log.Debug("tokenkeeper agent: redis store", attrs...)
	}
}

// closeStore closes the store, then its redis client.
func (d *Daemon) closeStore() error {
	err := closeStore(d.store)
	if d.rdb != nil {
		d.rdb.Close()
	}
	return err
}

var (
	redisLoggerOnce sync.Once
	redisLogger     struct {
		sync.Mutex
		log *slog.Logger
	}
)

// setRedisLogger sends go-redis's own log lines (reconnection failures
// while Redis is down, which the store reports as degradation already) to
// log at debug level. go-redis has one logger per process.
func setRedisLogger(log *slog.Logger) {
	redisLogger.Lock()
	redisLogger.log = log
	redisLogger.Unlock()
	redisLoggerOnce.Do(func() { redis.SetLogger(redisLogAdapter{}) })
}

type redisLogAdapter struct{}

func (redisLogAdapter) Printf(ctx context.Context, format string, v ...any) {
	redisLogger.Lock()
	log := redisLogger.log
	redisLogger.Unlock()
	if log != nil {
		log.Debug("redis: " + fmt.Sprintf(format, v...))
	}
}

// redisCollector exports the redis store's state and counters.
type redisCollector struct{ s *redisstore.Store }

var (
	descRedisDegraded = prometheus.NewDesc("tokenkeeper_store_degraded",
		"1 while the shared (redis) store is unreachable: tokens are served from memory and only those whose refresh tokens do not rotate are refreshed.",
		nil, nil)
	descRedisOps = prometheus.NewDesc("tokenkeeper_store_coordination_total",
		"What the shared (redis) store did, by kind: source_calls (refreshes made under the fleet's lock), joined (refreshes answered with another agent's token), adopted, waits, takeovers, conflicts, local_refreshes (made while redis was unreachable), write_backs, writes, errors.",
		[]string{"kind"}, nil)
)

func (c redisCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descRedisDegraded
	ch <- descRedisOps
}

func (c redisCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.Status()
	ch <- prometheus.MustNewConstMetric(descRedisDegraded, prometheus.GaugeValue, b2f(st.Degraded))
	for _, kv := range []struct {
		kind string
		n    uint64
	}{
		{"source_calls", st.SourceCalls}, {"joined", st.Joined}, {"adopted", st.Adopted}, {"waits", st.Waits},
		{"takeovers", st.Takeovers}, {"conflicts", st.Conflicts}, {"local_refreshes", st.LocalRefreshes},
		{"write_backs", st.WriteBacks}, {"writes", st.Writes}, {"errors", st.Errors},
	} {
		ch <- prometheus.MustNewConstMetric(descRedisOps, prometheus.CounterValue, float64(kv.n), kv.kind)
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
