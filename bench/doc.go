// Package bench compares tokenkeeper with the token caches Go programs use
// instead: golang.org/x/oauth2's ReuseTokenSource, cloud.google.com/go/auth's
// cached token provider, aws-sdk-go-v2's CredentialsCache, smithy-go's bearer
// TokenCache, and a hand-written timer. It is a module of its own so that
// these libraries never enter tokenkeeper's go.mod.
//
// The simulator is in [github.com/tokenkeeper/tokenkeeper/bench/sim], the
// documents are written by [github.com/tokenkeeper/tokenkeeper/bench/report].
// Regenerate everything (docs/benchmarks.md, docs/bench/ and
// bench/README-headline.md) with
//
//	cd bench && go run ./cmd/compare
//
// which runs this package's TestCompare with -update. Without -update,
// go test runs only quick smoke tests; the hot-path benchmarks run with
//
//	go test -bench HotPath -benchmem
package bench
