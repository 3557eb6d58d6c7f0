package queue

import (
	"fmt"
	"sync/atomic"
	"testing"
)

// BenchmarkPushPop measures the throughput of 10,000 jobs over 100 groups
// through 8 workers with a trivial run; one op is the whole batch.
func BenchmarkPushPop(b *testing.B) {
	const n = 10000
	keys := make([]string, n)
	groups := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprint("token-", i)
		groups[i] = fmt.Sprint("idp-", i%100)
	}
	var left atomic.Int64
	done := make(chan struct{})
	q := New(Config{Workers: 8}, func(string) {
		if left.Add(-1) == 0 {
			done <- struct{}{}
		}
	})
	defer q.Close()
	b.ReportAllocs()
	for b.Loop() {
		left.Store(n)
		for i, k := range keys {
			if _, err := q.Push(k, groups[i], Priority(i%3)); err != nil {
				b.Fatal(err)
			}
		}
		<-done
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/job")
}

// BenchmarkPushDedup measures Push for keys already queued (the keeper
// re-planning tokens whose refresh is still waiting).
func BenchmarkPushDedup(b *testing.B) {
	const n = 10000
	release := make(chan struct{})
	q := New(Config{Workers: 1}, func(string) { <-release })
	defer q.Close()
	defer close(release)
	q.Push("hold", "hold", Urgent)
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprint("token-", i)
		if _, err := q.Push(keys[i], fmt.Sprint("idp-", i%100), Scheduled); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if added, err := q.Push(keys[i], "ignored", Retry); added || err != nil {
			b.Fatal(added, err)
		}
		i++
		if i == n {
			i = 0
		}
	}
}
