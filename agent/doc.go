// Package agent is the HTTP side of the tokenkeeper agent: the local API
// that hands tokens to programs in any language, a server-sent event stream,
// Prometheus metrics, health checks and a self-contained status page.
//
// A [Server] wraps a running [tokenkeeper.Keeper]. The command creates the
// keeper first, with Config.OnEvent forwarding to [Server.Event] through a
// closure, then the server, then serves [Server.Handler] on a listener from
// [Listen]:
//
//	var srv *agent.Server
//	k, _ := tokenkeeper.New(tokenkeeper.Config{OnEvent: func(e tokenkeeper.Event) {
//		if s := srv; s != nil { // set below, before any token is added
//			s.Event(e)
//		}
//	}})
//	srv, _ = agent.New(agent.Options{Keeper: k, Secret: secret})
//	ln, _ := agent.Listen("127.0.0.1:8377")
//	go http.Serve(ln, srv.Handler())
//
// # Security model
//
// The agent only listens on a Unix socket (created with mode 0600, so only
// its owner can connect) or on a loopback TCP address ([Listen] refuses
// anything else with [ErrNotLoopback]). On TCP every request except
// /healthz and the static status page must carry the bearer secret (see
// [LoadOrCreateSecret]); the comparison takes constant time. Because a web
// page in the user's browser can also reach loopback addresses, every
// request's Host header must name a loopback address or "localhost" (a
// DNS-rebinding guard), a request with an Origin other than the agent's own
// is refused, and so is one a browser marks as cross-site (Sec-Fetch-Site).
// The status page authenticates once, with the secret in the URL fragment
// (never sent to the server or written to logs), and then holds an HttpOnly,
// SameSite=Strict cookie derived from the secret; that cookie is never
// accepted by the one endpoint that returns a token value.
//
// # Performance
//
// GET /v1/tokens/{name} is the hot path. While the token is valid it never
// waits for a refresh: it takes the keeper's cached token (a few atomic
// loads) and writes a JSON body that is encoded once per token version and
// then reused, so a request allocates nothing beyond what net/http itself
// does. See docs/agent-api.md for measured throughput.
package agent
