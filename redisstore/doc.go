// Package redisstore shares tokens between processes through Redis, so that
// a fleet of keepers (replicas of a service, several agents) refreshes each
// token once per cycle instead of once per process, and never sends a
// rotated refresh token twice.
//
// # Wiring
//
//	rdb := redis.NewClient(&redis.Options{Addr: "localhost:6379"})
//	s, err := redisstore.New(rdb, redisstore.Options{Prefix: "myapp:", Key: key})
//	k, err := tokenkeeper.New(tokenkeeper.Config{Store: s})
//	err = s.Attach(k)
//	h, err := k.Add(tokenkeeper.TokenConfig{Name: "api", Source: s.Coordinate(src, "api")})
//	...
//	k.Close(); s.Close(); rdb.Close()
//
// The [Store] is the keeper's tokenkeeper.Store, [Store.Coordinate] wraps
// each token's Source, and [Store.Attach] lets the store install in the
// keeper the tokens other processes obtain.
//
// # Protocol
//
// For a token named N under prefix P, Redis holds a hash P{N}:tok with the
// stored value (d, AES-256-GCM encrypted when Options.Key is set) and a
// version (v, a fencing counter that rises with every write), and, while a
// process refreshes the token, a lock P{N}:lock whose value is a random
// owner and whose lease is a Redis PX expiry. Every write publishes
// "<version> <name>" on the channel P+"events"; the token itself never
// travels on the channel.
//
//  1. Every process serves the token from its own keeper's memory. A
//     process learns of a new token from the channel at once (and from a
//     re-read every Options.ResyncInterval, in case a message is lost),
//     reads it and installs it with Handle.Adopt.
//  2. When a keeper decides to refresh, the coordinated source runs one
//     script that either reports that the stored version moved past the
//     caller's token (the caller installs the stored token: no identity
//     provider call), or takes the lock (SET NX PX) and returns the stored
//     token, or reports the lock's holder.
//  3. The lock holder calls the real source with the newest token of the
//     chain, extending its lease every LockTTL/3, then runs a second script
//     that writes the answer only if it still owns the lock and the version
//     is the one it read, releases the lock and publishes the news. A
//     process that lost its lock (paused past its lease, say) cannot write;
//     it installs the newer token instead. The keeper's Save that follows
//     writes nothing: one write per refresh, two Redis round trips.
//  4. A process that finds the lock held waits for the holder's token (the
//     channel, and a poll every Options.PollInterval) and installs it. If
//     the holder dies, its lease runs out and a waiting process takes the
//     lock over: at most one lease (Options.LockTTL) later.
//  5. While Redis is unreachable ([Store.Degraded], [EventDegraded]) every
//     process keeps serving the tokens it holds. A token whose source does
//     not rotate refresh tokens (Options.NonRotating, [Rotates]) is
//     refreshed by each process on its own; one whose source rotates is not
//     refreshed, since two processes would spend the same refresh token.
//     When Redis returns, the tokens refreshed meanwhile are written back
//     with the version check (the first process to write wins, the others
//     install its token), and so are tokens Redis lost.
//
// See docs/scale-out.md for the guarantees and the limits (Redis failover,
// clocks).
//
// # Goroutines
//
// A Store runs a subscriber (the pub/sub connection) and a watcher (reads,
// re-reads, probes, write-backs), plus an event dispatcher if
// Options.OnEvent is set; Close stops them and waits. A coordinated
// refresh runs one more goroutine, to extend its lease, for the duration of
// the source call.
package redisstore
