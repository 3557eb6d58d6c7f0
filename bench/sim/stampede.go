package sim

import (
	"context"
	"sync"
	"time"
)

// StampedeConfig: Callers goroutines ask at the same moment for a token that
// has expired (or, for a library that takes no initial token, that it has
// never fetched), Rounds times with a fresh instance, in real time, against
// a provider that answers every call in Latency.
type StampedeConfig struct {
	Callers int
	Rounds  int
	Latency time.Duration
}

// DefaultStampede is 1000 callers, 5 rounds, 50 ms per call.
var DefaultStampede = StampedeConfig{Callers: 1000, Rounds: 5, Latency: 50 * time.Millisecond}

// StampedeResult is what a stampede cost.
type StampedeResult struct {
	Library  string  `json:"library"`
	Callers  int     `json:"callers"`
	Rounds   int     `json:"rounds"`
	CallsPer float64 `json:"idp_calls_per_expiry"`
	MaxCalls int     `json:"idp_calls_max_round"`
	// Waited counts callers that took longer than half the provider's
	// latency: they waited for a call to it.
	Waited   int `json:"waited"`
	WaitMax  Dur `json:"wait_max_ms"`
	Expired  int `json:"expired_handed_out"`
	Errors   int `json:"errors"`
	Requests int `json:"requests"`
}

// RunStampede runs a stampede against c in real time.
func RunStampede(sc StampedeConfig, c Contender) (StampedeResult, error) {
	res := StampedeResult{Library: c.Name, Callers: sc.Callers, Rounds: sc.Rounds}
	calls := 0
	for range sc.Rounds {
		env := NewEnv(false)
		start := time.Now()
		idp := NewIdP(IdPConfig{Lifetime: time.Hour, Median: sc.Latency, ClientTimeout: 30 * time.Second}, start)
		old := idp.Issue(start.Add(-2 * time.Hour)) // expired an hour ago
		k, err := c.New(env)
		if err != nil {
			return res, err
		}
		inst, err := k.Add("token", idp.NewSource(&old))
		if err != nil {
			k.Close()
			return res, err
		}
		var (
			mu   sync.Mutex
			wg   sync.WaitGroup
			gate = make(chan struct{})
		)
		for range sc.Callers {
			wg.Go(func() {
				<-gate
				t0 := time.Now()
				v, err := inst.Token(context.Background())
				now := time.Now()
				w := now.Sub(t0)
				mu.Lock()
				defer mu.Unlock()
				res.Requests++
				if w > sc.Latency/2 {
					res.Waited++
				}
				res.WaitMax = max(res.WaitMax, Dur(w))
				if err != nil {
					res.Errors++
				} else if exp, ok := idp.ExpiryOf(v); !ok || !exp.After(now) {
					res.Expired++
				}
			})
		}
		close(gate)
		wg.Wait()
		time.Sleep(2 * sc.Latency) // let a refresh started in the background register
		n := idp.NumCalls()
		calls += n
		res.MaxCalls = max(res.MaxCalls, n)
		k.Close()
	}
	res.CallsPer = float64(calls) / float64(sc.Rounds)
	return res, nil
}
