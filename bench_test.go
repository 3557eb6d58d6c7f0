package tokenkeeper_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"golang.org/x/oauth2"
)

func validToken() *oauth2.Token {
	return &oauth2.Token{AccessToken: "a", TokenType: "Bearer", RefreshToken: "r", Expiry: time.Now().Add(time.Hour)}
}

func benchKeeper(b *testing.B, cfg tokenkeeper.Config) *tokenkeeper.Keeper {
	k, err := tokenkeeper.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { k.Close() })
	return k
}

var freshSource = tokenkeeper.SourceFunc(func(ctx context.Context, _ *oauth2.Token) (*oauth2.Token, error) {
	return validToken(), nil
})

// BenchmarkToken measures handing out a valid cached token, next to
// x/oauth2's ReuseTokenSource in the same run.
func BenchmarkToken(b *testing.B) {
	k := benchKeeper(b, tokenkeeper.Config{})
	h, err := k.Add(tokenkeeper.TokenConfig{Name: "t", Source: freshSource, Token: validToken()})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	rts := oauth2.ReuseTokenSource(validToken(), oauth2.StaticTokenSource(validToken()))

	b.Run("impl=tokenkeeper/api=Handle", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := h.TokenContext(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("impl=tokenkeeper/api=Keeper.Token", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := k.Token(ctx, "t"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("impl=oauth2.ReuseTokenSource", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := rts.Token(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("impl=tokenkeeper/api=Handle/parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := h.TokenContext(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
	b.Run("impl=oauth2.ReuseTokenSource/parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := rts.Token(); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}

// BenchmarkCircuitOpen measures the answer a caller without a valid token
// gets while its group's breaker is open, and reports its p99.
func BenchmarkCircuitOpen(b *testing.B) {
	k := benchKeeper(b, tokenkeeper.Config{Breaker: tokenkeeper.BreakerSettings{Failures: 1, OpenFor: time.Hour}})
	failing := tokenkeeper.SourceFunc(func(ctx context.Context, _ *oauth2.Token) (*oauth2.Token, error) {
		return nil, errors.New("identity provider down")
	})
	h, _ := k.Add(tokenkeeper.TokenConfig{Name: "t", Source: failing})
	ctx := context.Background()
	for {
		_, err := h.TokenContext(ctx)
		if errors.Is(err, tokenkeeper.ErrCircuitOpen) {
			break
		}
	}
	lat := make([]time.Duration, 0, 1<<16)
	b.ReportAllocs()
	for b.Loop() {
		t0 := time.Now()
		_, err := h.TokenContext(ctx)
		d := time.Since(t0)
		if !errors.Is(err, tokenkeeper.ErrCircuitOpen) {
			b.Fatalf("err = %v", err)
		}
		if len(lat) < cap(lat) {
			lat = append(lat, d)
		}
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
}

// BenchmarkStampede measures 10,000 goroutines asking for an expired token
// at once (one refresh serves them all).
func BenchmarkStampede(b *testing.B) {
	const waiters = 10000
	var calls atomic.Int64
	src := tokenkeeper.SourceFunc(func(ctx context.Context, _ *oauth2.Token) (*oauth2.Token, error) {
		calls.Add(1)
		return validToken(), nil
	})
	k := benchKeeper(b, tokenkeeper.Config{})
	ctx := context.Background()
	for i := 0; b.Loop(); i++ {
		name := fmt.Sprint("t", i)
		h, _ := k.Add(tokenkeeper.TokenConfig{Name: name, Source: src,
			Token: &oauth2.Token{AccessToken: "old", Expiry: time.Now().Add(-time.Second)}})
		before := calls.Load()
		var start, wg sync.WaitGroup
		start.Add(1)
		for range waiters {
			wg.Go(func() {
				start.Wait()
				if _, err := h.TokenContext(ctx); err != nil {
					b.Error(err)
				}
			})
		}
		start.Done()
		wg.Wait()
		if c := calls.Load() - before; c != 1 {
			b.Fatalf("source calls for one expiry = %d, want 1", c)
		}
		k.Remove(name)
	}
}

// BenchmarkQueueThroughput forces a refresh of 10,000 tokens through the
// shared queue and worker pool.
func BenchmarkQueueThroughput(b *testing.B) {
	const tokens = 10000
	k := benchKeeper(b, tokenkeeper.Config{GroupConcurrency: 8})
	hs := make([]*tokenkeeper.Handle, tokens)
	for i := range hs {
		hs[i], _ = k.Add(tokenkeeper.TokenConfig{Name: fmt.Sprint("t", i), Source: freshSource, Token: validToken(),
			Group: fmt.Sprint("idp", i%10)})
	}
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		var wg sync.WaitGroup
		for _, h := range hs {
			wg.Go(func() {
				if _, err := h.Refresh(ctx); err != nil {
					b.Error(err)
				}
			})
		}
		wg.Wait()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*tokens), "ns/refresh")
}

// BenchmarkMemoryPerToken records the keeper's own memory per kept token
// (beyond the token values) with 100,000 tokens.
func BenchmarkMemoryPerToken(b *testing.B) {
	const n = 100000
	toks := make([]*oauth2.Token, n)
	names := make([]string, n)
	for i := range toks {
		toks[i] = validToken()
		names[i] = fmt.Sprint("token-", i)
	}
	for b.Loop() {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		k, _ := tokenkeeper.New(tokenkeeper.Config{})
		for i := range n {
			if _, err := k.Add(tokenkeeper.TokenConfig{Name: names[i], Source: freshSource, Token: toks[i]}); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "bytes/token")
		runtime.KeepAlive(k)
		k.Close()
	}
}
