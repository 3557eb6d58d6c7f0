package redisstore

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

var benchRun atomic.Int64

// BenchmarkRefresh measures what a refresh through Redis adds to a call to
// the identity provider (here an in-memory one, so the difference is all
// Redis), and counts the Redis commands per refresh: those of the process
// that refreshes (lock and fenced write; the keeper's Save after it sends
// nothing) and those of two other processes that install the new token
// when the news arrives.
//
//	go test -run '^$' -bench Refresh -benchtime 2000x ./redisstore/
func BenchmarkRefresh(b *testing.B) {
	srv := startRedis(b)
	ctx := context.Background()
	b.Run("direct", func(b *testing.B) {
		p := newIDP(time.Hour, true)
		src := p.source("x", "b")
		cur := p.seed("x")
		b.ReportAllocs()
		for b.Loop() {
			tok, err := src.Refresh(ctx, cur)
			if err != nil {
				b.Fatal(err)
			}
			cur = tok
		}
	})
	for _, enc := range []bool{false, true} {
		name := "redis"
		var key []byte
		if enc {
			name, key = "redis-encrypted", testKey
		}
		b.Run(name, func(b *testing.B) {
			prefix := fmt.Sprintf("bench-%s-%d:", name, benchRun.Add(1))
			p := newIDP(time.Hour, true)
			var ops counter
			c := srv.client(b)
			c.AddHook(&ops)
			s, err := New(c, Options{Prefix: prefix, Key: key})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			cur := seed(b, s, p, "x")
			// Two other processes holding the token, told of each refresh.
			var followers []*Store
			var fops [2]counter
			for i := range fops {
				fc := srv.client(b)
				fc.AddHook(&fops[i])
				fs, err := New(fc, Options{Prefix: prefix, Key: key})
				if err != nil {
					b.Fatal(err)
				}
				defer fs.Close()
				k, err := tokenkeeper.New(tokenkeeper.Config{Store: fs, Location: time.UTC})
				if err != nil {
					b.Fatal(err)
				}
				defer k.Close()
				if _, err := k.Add(tokenkeeper.TokenConfig{Name: "x", Source: fs.Coordinate(p.source("x", "f"), "x")}); err != nil {
					b.Fatal(err)
				}
				if err := fs.Attach(k); err != nil {
					b.Fatal(err)
				}
				followers = append(followers, fs)
			}
			src := s.Coordinate(p.source("x", "b"), "x")
			ops.n.Store(0)
			fops[0].n.Store(0)
			fops[1].n.Store(0)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				tok, err := src.Refresh(ctx, cur)
				if err != nil {
					b.Fatal(err)
				}
				if err := s.Save(ctx, "x", tok); err != nil { // what the keeper does next
					b.Fatal(err)
				}
				cur = tok
			}
			b.StopTimer()
			n := float64(b.N)
			b.ReportMetric(float64(ops.n.Load())/n, "redis-ops/refresh")
			// The followers install tokens as news arrives (several pieces
			// of news may be handled by one read).
			for _, f := range followers {
				eventually(b, 10*time.Second, "followers to catch up", func() bool {
					f.mu.Lock()
					e := f.entries["x"]
					f.mu.Unlock()
					return e != nil && e.highest() == int64(b.N)+1
				})
			}
			b.ReportMetric(float64(fops[0].n.Load()+fops[1].n.Load())/(2*n), "follower-ops/refresh")
		})
	}
}
