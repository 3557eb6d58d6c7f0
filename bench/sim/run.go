package sim

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// Monday is where every trace starts: the first Monday after the synctest
// epoch (2000-01-01, a Saturday), midnight UTC.
var Monday = time.Date(2000, 1, 3, 0, 0, 0, 0, time.UTC)

// Mark is one noteworthy request.
type Mark struct {
	At   time.Duration // when the request was made
	Kind Kind
	Wait time.Duration // how long the library kept it waiting
	Err  string        // the error handed back, if any
	Late time.Duration // for an expired token: how long ago it expired
}

// TraceRun is the raw record of one library on one trace.
type TraceRun struct {
	Contender string
	Requests  [4]int // by Kind
	Waits     []Mark // requests that waited (Wait > 0)
	Errors    []Mark // requests that got an error
	Expired   []Mark // requests handed an expired token
	Calls     []Call // every call to the identity provider
	Peak      int    // most concurrent calls to the identity provider
}

// RunTrace plays tr against c in a synctest bubble of its own: virtual time,
// so days take seconds. Each request is made on a goroutine of its own at
// its scheduled moment, as concurrent callers would; its wait runs from
// that moment to the library's answer.
func RunTrace(t *testing.T, tr *Trace, c Contender) *TraceRun {
	t.Helper()
	var run *TraceRun
	synctest.Test(t, func(t *testing.T) {
		time.Sleep(time.Until(Monday))
		start := time.Now()
		env := NewEnv(true)
		idp := NewIdP(tr.IdP, start)
		seed := idp.Issue(start)
		k, err := c.New(env)
		if err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
		inst, err := k.Add("token", idp.NewSource(&seed))
		if err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
		run = &TraceRun{Contender: c.Name}
		var (
			mu sync.Mutex // held briefly, never across a wait
			wg sync.WaitGroup
		)
		ctx := context.Background()
		for _, rq := range tr.Requests {
			at := start.Add(rq.At)
			if d := time.Until(at); d > 0 {
				time.Sleep(d)
			}
			wg.Go(func() {
				v, err := inst.Token(ctx)
				now := time.Now()
				mu.Lock()
				run.observe(idp, rq, now.Sub(at), v, err, now)
				mu.Unlock()
			})
		}
		wg.Wait()
		k.Close()
		// Let refreshes a library started in the background finish.
		time.Sleep(tr.IdP.timeout() + time.Minute)
		synctest.Wait()
		run.Calls = idp.Calls()
		run.Peak = idp.Peak()
		for _, ms := range [][]Mark{run.Waits, run.Errors, run.Expired} {
			slices.SortStableFunc(ms, func(a, b Mark) int { return cmp.Compare(a.At, b.At) })
		}
	})
	return run
}

func (run *TraceRun) observe(idp *IdP, rq Request, wait time.Duration, v string, err error, now time.Time) {
	run.Requests[rq.Kind]++
	m := Mark{At: rq.At, Kind: rq.Kind, Wait: wait}
	if wait > 0 {
		run.Waits = append(run.Waits, m)
	}
	if err != nil {
		m.Err = err.Error()
		run.Errors = append(run.Errors, m)
		return
	}
	exp, ok := idp.ExpiryOf(v)
	if !ok {
		m.Err = fmt.Sprintf("harness: unknown token %q", v)
		run.Errors = append(run.Errors, m)
		return
	}
	if !exp.After(now) {
		m.Late = now.Sub(exp)
		run.Expired = append(run.Expired, m)
	}
}
