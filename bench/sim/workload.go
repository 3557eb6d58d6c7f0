package sim

import (
	"math"
	"math/rand/v2"
	"slices"
	"time"
)

// Kind says who made a request.
type Kind uint8

const (
	User    Kind = iota + 1 // the user did something
	Sync                    // the application's background sync
	Service                 // a service's steady load
)

func (k Kind) String() string {
	switch k {
	case User:
		return "user"
	case Sync:
		return "sync"
	case Service:
		return "service"
	}
	return "?"
}

// Request is one API request that needs the token, at an offset from the
// run's start.
type Request struct {
	At   time.Duration
	Kind Kind
}

// Interval is a span of time, as offsets from the run's start.
type Interval struct {
	Start, End time.Duration
}

func (iv Interval) contains(t time.Duration) bool { return t >= iv.Start && t <= iv.End }

// Trace is a workload and the identity provider it runs against: the same,
// request for request, for every library.
type Trace struct {
	Name        string // file-name friendly
	Title       string
	Description string
	Days        int
	Requests    []Request  // sorted by At
	Sessions    []Interval // the user's sessions (empty for a service)
	IdP         IdPConfig
}

// DefaultIdP is the identity provider of the traces: one-hour tokens,
// log-normal latency with a median of 200 ms and a p99 of 3 s, 1% of calls
// failing with a 503, and a 30 s client timeout.
func DefaultIdP(seed uint64) IdPConfig {
	return IdPConfig{
		Lifetime:      time.Hour,
		Median:        200 * time.Millisecond,
		P99:           3 * time.Second,
		FailureRate:   0.01,
		ClientTimeout: 30 * time.Second,
		Seed:          seed,
	}
}

const day = 24 * time.Hour

// UserTrace is a week (or days days, starting on a Monday) of one user of a
// desktop application:
//
//   - on weekdays, work from about 08:30 (sd 20 min) to about 17:30 (sd 30
//     min) with a lunch break of 35 to 60 minutes around 12:15; the work is
//     made of sessions (log-normal length, median 25 min) separated by idle
//     breaks (log-normal, median 7 min); every other evening a short session
//     between 20:00 and 22:00;
//   - at weekends, up to two short sessions between 10:00 and 21:00;
//   - inside a session the user acts, and each action makes one to three
//     requests 50 to 400 ms apart; between actions the user thinks: usually
//     a few seconds (exponential, mean 8 s), sometimes longer (mean 45 s,
//     20% of the time) or reads for a while (mean 150 s, 5%);
//   - the application syncs in the background every 10 minutes (plus or
//     minus 30 s), day and night: one request each time.
//
// The identity provider is DefaultIdP, with a 45-minute outage (503s) that
// starts on Tuesday between 10:00 and 11:00 and a 30-minute one where calls
// hang that starts on Thursday between 14:00 and 15:00 (the seed picks the
// minute).
func UserTrace(seed uint64, days int) *Trace {
	r := rand.New(rand.NewPCG(seed, 0x75736572))
	tr := &Trace{
		Name:  "user",
		Title: "A desktop user",
		Description: "One user of a desktop application, Monday to Sunday: working hours with sessions and idle breaks, " +
			"an evening session every other day, a little at the weekend, and a background sync every 10 minutes around the clock.",
		Days: days,
		IdP:  DefaultIdP(seed),
	}
	hm := func(h, m int) time.Duration { return time.Duration(h)*time.Hour + time.Duration(m)*time.Minute }
	session := func(a, b time.Duration) {
		t := a
		last := a
		for t < b {
			n := 1 + r.IntN(3)
			at := t
			for range n {
				tr.Requests = append(tr.Requests, Request{At: at, Kind: User})
				last = at
				at += 50*time.Millisecond + time.Duration(r.Int64N(int64(350*time.Millisecond)))
			}
			var think float64
			switch u := r.Float64(); {
			case u < 0.75:
				think = r.ExpFloat64() * 8
			case u < 0.95:
				think = r.ExpFloat64() * 45
			default:
				think = r.ExpFloat64() * 150
			}
			t = at + time.Duration(think*float64(time.Second))
		}
		tr.Sessions = append(tr.Sessions, Interval{Start: a, End: last})
	}
	logn := func(median time.Duration, sigma float64) time.Duration {
		return time.Duration(float64(median) * math.Exp(sigma*r.NormFloat64()))
	}
	work := func(a, b time.Duration) {
		for t := a; t < b; {
			end := min(t+max(logn(25*time.Minute, 0.6), 2*time.Minute), b)
			session(t, end)
			t = end + max(logn(7*time.Minute, 0.7), time.Minute)
		}
	}
	clampNorm := func(mean, sd, lo, hi time.Duration) time.Duration {
		return min(max(mean+time.Duration(r.NormFloat64()*float64(sd)), lo), hi)
	}
	for d := range days {
		base := time.Duration(d) * day
		if d%7 < 5 {
			start := clampNorm(hm(8, 30), 20*time.Minute, hm(7, 30), hm(9, 30))
			lunch := clampNorm(hm(12, 15), 15*time.Minute, hm(11, 45), hm(12, 45))
			back := lunch + 35*time.Minute + time.Duration(r.Int64N(int64(25*time.Minute)))
			end := clampNorm(hm(17, 30), 30*time.Minute, hm(16, 30), hm(18, 30))
			work(base+start, base+lunch)
			work(base+back, base+end)
			if r.IntN(2) == 0 {
				a := base + hm(20, 0) + time.Duration(r.Int64N(int64(2*time.Hour)))
				session(a, a+max(logn(20*time.Minute, 0.5), 3*time.Minute))
			}
		} else {
			for range r.IntN(3) {
				a := base + hm(10, 0) + time.Duration(r.Int64N(int64(11*time.Hour)))
				session(a, a+max(logn(15*time.Minute, 0.5), 3*time.Minute))
			}
		}
	}
	for t := 5 * time.Minute; t < time.Duration(days)*day; t += 10 * time.Minute {
		j := time.Duration(r.Int64N(int64(time.Minute))) - 30*time.Second
		tr.Requests = append(tr.Requests, Request{At: t + j, Kind: Sync})
	}
	sortTrace(tr)
	tr.IdP.Outages = []Outage{
		outage(r, "Tuesday morning, 45 min, 503s", day+hm(10, 0), 45*time.Minute, Down),
		outage(r, "Thursday afternoon, 30 min, calls hang", 3*day+hm(14, 0), 30*time.Minute, Hang),
	}
	tr.IdP.Outages = slices.DeleteFunc(tr.IdP.Outages, func(o Outage) bool { return o.Start >= time.Duration(days)*day })
	return tr
}

// ServiceTrace is days days (from a Monday) of a service that calls an API
// at a steady rate (Poisson arrivals, rate per second), against DefaultIdP
// with a 45-minute outage (503s) that starts on Tuesday between 10:00 and
// 11:00 and a 30-minute one where calls hang that starts on Wednesday between
// 14:00 and 15:00.
func ServiceTrace(seed uint64, days int, rate float64) *Trace {
	r := rand.New(rand.NewPCG(seed, 0x73657276))
	tr := &Trace{
		Name:        "service",
		Title:       "A service under steady load",
		Description: "A backend calling an API around the clock, Poisson arrivals.",
		Days:        days,
		IdP:         DefaultIdP(seed),
	}
	end := time.Duration(days) * day
	for t := time.Duration(0); ; {
		t += time.Duration(r.ExpFloat64() / rate * float64(time.Second))
		if t >= end {
			break
		}
		tr.Requests = append(tr.Requests, Request{At: t, Kind: Service})
	}
	tr.IdP.Outages = []Outage{
		outage(r, "Tuesday morning, 45 min, 503s", day+10*time.Hour, 45*time.Minute, Down),
		outage(r, "Wednesday afternoon, 30 min, calls hang", 2*day+14*time.Hour, 30*time.Minute, Hang),
	}
	tr.IdP.Outages = slices.DeleteFunc(tr.IdP.Outages, func(o Outage) bool { return o.Start >= end })
	return tr
}

// outage starts an outage of length d at a random moment of the hour from
// earliest, so that over several seeds it meets tokens at every age.
func outage(r *rand.Rand, label string, earliest, d time.Duration, mode OutageMode) Outage {
	start := earliest + time.Duration(r.Int64N(int64(time.Hour))).Truncate(time.Second)
	return Outage{Label: label, Start: start, End: start + d, Mode: mode}
}

func sortTrace(tr *Trace) {
	slices.SortStableFunc(tr.Requests, func(a, b Request) int {
		switch {
		case a.At < b.At:
			return -1
		case a.At > b.At:
			return 1
		}
		return 0
	})
	slices.SortFunc(tr.Sessions, func(a, b Interval) int {
		switch {
		case a.Start < b.Start:
			return -1
		case a.Start > b.Start:
			return 1
		}
		return 0
	})
	// Weekend sessions may overlap: merge them.
	var merged []Interval
	for _, iv := range tr.Sessions {
		if n := len(merged); n > 0 && iv.Start <= merged[n-1].End {
			merged[n-1].End = max(merged[n-1].End, iv.End)
			continue
		}
		merged = append(merged, iv)
	}
	tr.Sessions = merged
}

// Active reports whether the user is in a session at t.
func (tr *Trace) Active(t time.Duration) bool {
	i, _ := slices.BinarySearchFunc(tr.Sessions, t, func(iv Interval, t time.Duration) int {
		switch {
		case iv.End < t:
			return -1
		case iv.Start > t:
			return 1
		}
		return 0
	})
	return i < len(tr.Sessions) && tr.Sessions[i].contains(t)
}

// userRequestIn reports whether the user made a request in [a, b].
func (tr *Trace) userRequestIn(a, b time.Duration) bool {
	i, _ := slices.BinarySearchFunc(tr.Requests, a, func(r Request, t time.Duration) int {
		switch {
		case r.At < t:
			return -1
		case r.At > t:
			return 1
		}
		return 0
	})
	for ; i < len(tr.Requests) && tr.Requests[i].At <= b; i++ {
		if tr.Requests[i].Kind == User {
			return true
		}
	}
	return false
}
