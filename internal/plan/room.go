package plan

import (
	"math"
	"time"
)

const (
	defaultRetryBase = time.Second     // Room's base when it is not positive
	defaultRetryMax  = 5 * time.Minute // Room's max when it is not positive
	maxFailureRate   = 0.95            // failure rates above this count as this
	maxAttempts      = 10              // attempts Room plans for, at most
	targetFailure    = 0.001           // accepted probability that all attempts fail
)

// Room returns how much time before expiry a refresh needs so that, with the
// given p99 latency and failure rate, it succeeds with probability 0.999
// within the retries that fit.
//
// The failure rate is clamped to [0, 0.95] (NaN counts as 0). The number of
// attempts n is 1 when the rate is 0, else the smallest n with
// failureRate^n <= 0.001, that is ceil(log(0.001)/log(failureRate)), capped
// at 10. Attempt i (counting from 0) costs p99 plus the backoff waited
// before it: none before the first attempt, and for i >= 1 the mean of a
// full-jitter backoff, half of min(max, base*2^(i-1)). Room is the sum of
// the n costs:
//
//	Room = n*p99 + sum for i in [1, n) of min(max, base*2^(i-1))/2
//
// A non-positive base means 1 s, a non-positive max 5 min, and a negative
// p99 counts as 0. The result saturates at the largest [time.Duration].
//
// For example, Room(2*time.Second, 0.1, time.Second, time.Minute) plans 3
// attempts (0.1^3 = 0.001) and returns 3*2s + 0.5s + 1s = 7.5s.
func Room(p99 time.Duration, failureRate float64, base, max time.Duration) time.Duration {
	ceiling := max
	if ceiling <= 0 {
		ceiling = defaultRetryMax
	}
	if base <= 0 {
		base = defaultRetryBase
	}
	if p99 < 0 {
		p99 = 0
	}
	n := attempts(failureRate)
	var room time.Duration
	step := base // min(ceiling, base*2^(i-1)) for the current i >= 1
	for i := range n {
		cost := p99
		if i > 0 {
			cost = addSat(cost, min(step, ceiling)/2)
			if step > ceiling/2 {
				step = ceiling
			} else {
				step *= 2
			}
		}
		room = addSat(room, cost)
	}
	return room
}

// attempts returns how many attempts Room plans for at the given failure
// rate.
func attempts(rate float64) int {
	if math.IsNaN(rate) || rate <= 0 {
		return 1
	}
	rate = min(rate, maxFailureRate)
	// The tolerance keeps exact powers (0.1^3 = 0.001) from rounding up.
	x := math.Ceil(math.Log(targetFailure)/math.Log(rate) - 1e-9)
	return int(min(max(x, 1), maxAttempts))
}

// addSat returns a+b for non-negative durations, saturating at the largest
// Duration instead of overflowing.
func addSat(a, b time.Duration) time.Duration {
	if s := a + b; s >= a {
		return s
	}
	return math.MaxInt64
}
