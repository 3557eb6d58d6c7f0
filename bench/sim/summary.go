package sim

import (
	"encoding/json"
	"slices"
	"strconv"
	"time"
)

// Dur is a duration that marshals to JSON as milliseconds.
type Dur time.Duration

// MarshalJSON writes the duration in milliseconds.
func (d Dur) MarshalJSON() ([]byte, error) {
	return []byte(strconv.FormatFloat(float64(d)/1e6, 'f', -1, 64)), nil
}

// UnmarshalJSON reads milliseconds.
func (d *Dur) UnmarshalJSON(b []byte) error {
	var ms float64
	if err := json.Unmarshal(b, &ms); err != nil {
		return err
	}
	*d = Dur(ms * 1e6)
	return nil
}

// OutageWindow is how long after an outage's end its effects are counted.
const OutageWindow = 15 * time.Minute

// Summary is one library's figures on one trace, pooled over Runs runs
// (seeds). Counts are totals over the runs.
type Summary struct {
	Library string `json:"library"`
	Runs    int    `json:"runs"`

	Requests     int `json:"requests"`
	UserRequests int `json:"user_requests"`

	Waited     int `json:"waited"`      // requests that waited (any kind)
	UserWaited int `json:"user_waited"` // user requests that waited
	WaitTotal  Dur `json:"wait_total_ms"`
	WaitP99    Dur `json:"wait_p99_ms"` // over the requests that waited
	WaitMax    Dur `json:"wait_max_ms"`

	IdPCalls    int `json:"idp_calls"`
	IdPFailed   int `json:"idp_failed"`   // calls that failed, timed out or were cancelled
	ActiveCalls int `json:"active_calls"` // calls started during a user session
	// OverlapCalls counts calls that were in flight when the user made a
	// request (the request that triggered a call included).
	OverlapCalls int `json:"overlap_calls"`
	Peak         int `json:"peak_concurrent_calls"`

	Expired    int `json:"expired_handed_out"`
	Errors     int `json:"errors"`
	UserErrors int `json:"user_errors"`

	Outages []OutageSummary `json:"outages"`
}

// OutageSummary pools one outage of a trace over the runs; the counts cover
// the outage and the OutageWindow after it.
type OutageSummary struct {
	Label    string `json:"label"`
	Mode     string `json:"mode"`
	Requests int    `json:"requests"`
	Errors   int    `json:"errors"`
	Waited   int    `json:"waited"`
	WaitMax  Dur    `json:"wait_max_ms"`
	Expired  int    `json:"expired_handed_out"`
	// IdPCalls is the number of calls made during the outage itself.
	IdPCalls int `json:"idp_calls_during"`
	// ErrorsAfter is the number of errors after the provider was back.
	ErrorsAfter int `json:"errors_after_end"`
	// RecoveryMax is the longest time, after the provider was back, until
	// the library stopped returning errors.
	RecoveryMax Dur `json:"recovery_max_ms"`
}

// Summarize pools the runs of one library; runs[i] was played on traces[i].
func Summarize(traces []*Trace, runs []*TraceRun) Summary {
	s := Summary{Library: runs[0].Contender, Runs: len(runs)}
	var waits []time.Duration
	for i, run := range runs {
		tr := traces[i]
		for _, n := range run.Requests {
			s.Requests += n
		}
		s.UserRequests += run.Requests[User]
		for _, m := range run.Waits {
			s.Waited++
			if m.Kind == User {
				s.UserWaited++
			}
			s.WaitTotal += Dur(m.Wait)
			waits = append(waits, m.Wait)
		}
		s.IdPCalls += len(run.Calls)
		for _, c := range run.Calls {
			if c.Outcome != OK {
				s.IdPFailed++
			}
			if tr.Active(c.Start) {
				s.ActiveCalls++
			}
			if tr.userRequestIn(c.Start, c.End) {
				s.OverlapCalls++
			}
		}
		s.Peak = max(s.Peak, run.Peak)
		s.Expired += len(run.Expired)
		s.Errors += len(run.Errors)
		for _, m := range run.Errors {
			if m.Kind == User {
				s.UserErrors++
			}
		}
		for j, o := range tr.IdP.Outages {
			if len(s.Outages) <= j {
				s.Outages = append(s.Outages, OutageSummary{Label: o.Label, Mode: o.Mode.String()})
			}
			s.Outages[j].add(tr, run, o)
		}
	}
	s.WaitP99 = Dur(Percentile(waits, 0.99))
	if len(waits) > 0 {
		s.WaitMax = Dur(slices.Max(waits))
	}
	return s
}

func (os *OutageSummary) add(tr *Trace, run *TraceRun, o Outage) {
	end := o.End + OutageWindow
	in := func(t time.Duration) bool { return t >= o.Start && t < end }
	for _, rq := range tr.Requests {
		if in(rq.At) {
			os.Requests++
		}
	}
	var lastErr time.Duration = -1
	for _, m := range run.Errors {
		if in(m.At) {
			os.Errors++
			if m.At >= o.End {
				os.ErrorsAfter++
				lastErr = m.At
			}
		}
	}
	if lastErr >= 0 {
		os.RecoveryMax = max(os.RecoveryMax, Dur(lastErr-o.End))
	}
	for _, m := range run.Waits {
		if in(m.At) {
			os.Waited++
			os.WaitMax = max(os.WaitMax, Dur(m.Wait))
		}
	}
	for _, m := range run.Expired {
		if in(m.At) {
			os.Expired++
		}
	}
	for _, c := range run.Calls {
		if c.Start >= o.Start && c.Start < o.End {
			os.IdPCalls++
		}
	}
}

// Percentile returns the nearest-rank q-quantile of ds (0 if empty).
func Percentile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(q*float64(len(s)) + 0.9999999)
	i = min(max(i, 1), len(s))
	return s[i-1]
}
