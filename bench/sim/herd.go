package sim

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// HerdConfig describes a herd: Tokens tokens issued at the same moment, each
// used every Every (from a random phase) for Duration.
type HerdConfig struct {
	Tokens   int
	Every    time.Duration
	Duration time.Duration
	IdP      IdPConfig
	Seed     uint64
}

// DefaultHerd is 500 one-hour tokens issued together, each used every 15 s
// for two hours, against DefaultIdP without failures or outages.
func DefaultHerd(seed uint64) HerdConfig {
	idp := DefaultIdP(seed)
	idp.FailureRate = 0
	return HerdConfig{Tokens: 500, Every: 15 * time.Second, Duration: 2 * time.Hour, IdP: idp, Seed: seed}
}

// HerdResult is what a herd did to the identity provider.
type HerdResult struct {
	Library  string `json:"library"`
	Tokens   int    `json:"tokens"`
	Requests int    `json:"requests"`
	IdPCalls int    `json:"idp_calls"`
	// Peak is the largest number of calls in flight at once.
	Peak int `json:"peak_concurrent_calls"`
	// PeakSecond is the largest number of calls started within one second.
	PeakSecond int `json:"peak_calls_per_second"`
	// Spread is the time between the first and the last call of the first
	// refresh round (calls started in the tokens' first lifetime).
	Spread  Dur `json:"first_round_spread_ms"`
	Waited  int `json:"waited"`
	WaitMax Dur `json:"wait_max_ms"`
	Expired int `json:"expired_handed_out"`
	Errors  int `json:"errors"`
}

// RunHerd plays a herd against c in a synctest bubble. All tokens live in
// one Kit (one tokenkeeper Keeper; one cache per token for the others).
func RunHerd(t *testing.T, hc HerdConfig, c Contender) HerdResult {
	t.Helper()
	res := HerdResult{Library: c.Name, Tokens: hc.Tokens}
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		env := NewEnv(true)
		idp := NewIdP(hc.IdP, start)
		k, err := c.New(env)
		if err != nil {
			t.Fatal(err)
		}
		r := rand.New(rand.NewPCG(hc.Seed, 0x68657264))
		var (
			mu    sync.Mutex
			waits []time.Duration
			wg    sync.WaitGroup
		)
		for i := range hc.Tokens {
			seed := idp.Issue(start)
			inst, err := k.Add(fmt.Sprintf("token-%03d", i), idp.NewSource(&seed))
			if err != nil {
				t.Fatal(err)
			}
			phase := time.Duration(r.Int64N(int64(hc.Every)))
			wg.Go(func() {
				ctx := context.Background()
				for at := start.Add(phase); at.Sub(start) < hc.Duration; at = at.Add(hc.Every) {
					time.Sleep(time.Until(at))
					v, err := inst.Token(ctx)
					now := time.Now()
					mu.Lock()
					res.Requests++
					if w := now.Sub(at); w > 0 {
						waits = append(waits, w)
					}
					if err != nil {
						res.Errors++
					} else if exp, ok := idp.ExpiryOf(v); !ok || !exp.After(now) {
						res.Expired++
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		k.Close()
		time.Sleep(hc.IdP.timeout() + time.Minute)
		synctest.Wait()

		calls := idp.Calls()
		res.IdPCalls = len(calls)
		res.Peak = idp.Peak()
		perSecond := map[time.Duration]int{}
		var first []time.Duration
		for _, c := range calls {
			perSecond[c.Start.Truncate(time.Second)]++
			if c.Start < hc.IdP.Lifetime {
				first = append(first, c.Start)
			}
		}
		for _, n := range perSecond {
			res.PeakSecond = max(res.PeakSecond, n)
		}
		if len(first) > 0 {
			res.Spread = Dur(slices.Max(first) - slices.Min(first))
		}
		res.Waited = len(waits)
		if len(waits) > 0 {
			res.WaitMax = Dur(slices.Max(waits))
		}
	})
	return res
}
