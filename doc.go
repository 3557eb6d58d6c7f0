// Package tokenkeeper keeps expiring credentials (OAuth2 and OIDC access
// tokens, AWS Cognito user-pool tokens, anything a [Source] can renew) fresh
// in the background, so that the code using a token never waits for an
// identity provider.
//
// # Lifecycle
//
// A [Keeper] holds named tokens. [Keeper.Add] registers one with its
// [Source] and, optionally, its current value; the keeper then plans its
// refresh. [Handle.TokenContext] (or [Keeper.Token]) hands out the cached
// token. A refresh runs on the keeper's worker pool, calls Source.Refresh
// with the current token (which carries the refresh token), saves the answer
// in the [Store] if there is one, and only then publishes it atomically; the
// next hand-out sees the new token. [Keeper.Close] stops everything.
//
// # When a token is refreshed
//
// Each token has a refresh window before its expiry: by default from a third
// to a quarter of its lifetime before it (20 to 15 minutes before expiry for a
// one-hour token); [Policy] sets other leads. Inside the window the keeper
// refreshes at the first idle moment (no token fetch or reported activity for
// Policy.IdleGap, 30 s by default), or at the start of the time slot its usage
// model predicts to be the quietest of the window, and at the window's end
// regardless. The usage model learns from every token fetch (and from
// [Keeper.NoteActivity]) how busy the application is now and at each
// 5-minute slot of the day and week. The window opens earlier when measured
// refresh latency and failure rate leave too little room for retries, and at
// a server's refresh_in hint; window openings are spread with jitter so that
// tokens issued together do not refresh together. A token unused for
// Policy.UnusedAfter is not refreshed ahead of time until its next use.
//
// # Concurrency guarantees
//
//   - While the cached token is valid, handing it out does no I/O, takes no
//     lock and allocates nothing; it never waits for a refresh.
//   - Only a caller with no valid token waits, for the single refresh in
//     flight for that token (callers join it); its ctx ends its own wait,
//     never the refresh.
//   - One queue and worker pool serves all tokens; urgent refreshes (a caller
//     waits, a server rejected the token, a forced refresh) run before planned
//     ones, at most one refresh runs per token, and a concurrency limit per
//     group protects each identity provider.
//   - No lock is held across a call to a Source, a Store or an event
//     consumer.
//
// # Failures
//
// Errors are classified with [Classify]. A permanent failure (invalid_grant,
// invalid_client, a revoked token) puts the token in the re-authentication
// state: callers without a valid token get [ErrReauthRequired], once an event
// says so, and no further attempt is made. A transient failure (network,
// timeout, 5xx, 429) is retried with exponential backoff and full jitter,
// honouring Retry-After, while the still-valid token keeps being served. A
// circuit breaker per group stops calls to a failing provider; while it is
// open, a caller with no valid token gets [ErrCircuitOpen] at once. When the
// background path cannot take an urgent refresh (its queue is full), the
// waiting caller runs it on its own goroutine, still deduplicated. A valid
// token is never discarded because a refresh failed.
//
// # Time
//
// Tokens expire in wall-clock time, but Go timers stop while a machine
// sleeps. The keeper's clock compares wall-clock and monotonic progress every
// tick and re-plans every token at once after a jump; the first hand-out
// after a pause reads the precise wall-clock time, and a token is only handed
// out while it stays valid for at least Policy.ExpiryMargin.
//
// # Secrets
//
// Token values never appear in the keeper's errors, events, statuses, logs or
// panics. The *oauth2.Token values it returns are the caller's to protect.
package tokenkeeper
