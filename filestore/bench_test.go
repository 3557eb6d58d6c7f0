package filestore_test

import (
	"strings"
	"testing"

	"github.com/tokenkeeper/tokenkeeper/filestore"
	"golang.org/x/oauth2"
)

// benchToken is a realistic token: a JWT-sized access token and id_token.
func benchToken() *oauth2.Token {
	return (&oauth2.Token{
		AccessToken:  strings.Repeat("a", 900),
		TokenType:    "Bearer",
		RefreshToken: strings.Repeat("r", 64),
		Expiry:       sampleToken("x").Expiry,
	}).WithExtra(map[string]any{"id_token": strings.Repeat("i", 1200), "refresh_in": 2700.0})
}

func benchStores(b *testing.B, fn func(b *testing.B, s *filestore.Store)) {
	for _, c := range []struct {
		name string
		key  []byte
	}{{"plain", nil}, {"aes-256-gcm", key(1)}} {
		b.Run(c.name, func(b *testing.B) {
			fn(b, open(b, tempPath(b), filestore.Options{Key: c.key}))
		})
	}
}

// BenchmarkSave measures a durable Save: one bbolt transaction with its
// fsyncs, so it mostly measures the disk.
func BenchmarkSave(b *testing.B) {
	benchStores(b, func(b *testing.B, s *filestore.Store) {
		tok := benchToken()
		for b.Loop() {
			if err := s.Save(b.Context(), "api", tok); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkLoad measures a Load: a read transaction, decryption and
// decoding; no disk I/O once the page is cached.
func BenchmarkLoad(b *testing.B) {
	benchStores(b, func(b *testing.B, s *filestore.Store) {
		if err := s.Save(b.Context(), "api", benchToken()); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.Load(b.Context(), "api"); err != nil {
				b.Fatal(err)
			}
		}
	})
}
