// Package oidc is a tokenkeeper.Source for OAuth2 and OpenID Connect token
// endpoints, built on golang.org/x/oauth2's types.
//
// A [Source] renews a token with the refresh_token grant (RFC 6749, section
// 6) or obtains one with the client_credentials grant (section 4.4). The
// token endpoint is given in [Config].Endpoint or discovered from an
// issuer's /.well-known/openid-configuration ([Discover]). The client
// authenticates with HTTP Basic (client_secret_basic), in the request body
// (client_secret_post), or not at all (a public client).
//
// # Refresh-token rotation
//
// Many servers hand out a new refresh token with every refresh and treat a
// second use of the old one as theft, revoking the whole grant. So:
//
//   - The Source returns the new token, rotated refresh token included; the
//     keeper saves it in its Store before the new access token is handed
//     out. An answer without a refresh token keeps the current one.
//   - A refresh token is never sent twice. A request that provably never
//     left the client (connection refused, DNS failure) or that the server
//     answered with an error may be repeated; one whose outcome is unknown
//     (connection lost after sending, answer truncated or unusable) is not,
//     unless [Config].ReuseGrace says the server still accepts the old token.
//     Without that, the attempt fails permanently with [ErrOutcomeUnknown]:
//     the keeper keeps serving the still-valid access token and asks for
//     re-authentication, instead of risking the grant.
//   - A refresh token the server has exchanged is remembered and refused
//     ([ErrRefreshTokenSpent]).
//
// # Errors
//
// Errors are *tokenkeeper.RefreshError values: invalid_grant, invalid_client,
// unauthorized_client and the other codes tokenkeeper.IsPermanentCode lists,
// and a bare 401, are permanent; 5xx, 429, network errors and timeouts are
// transient, with the server's Retry-After (seconds or HTTP date). Their
// messages and bodies never contain a token or the client secret.
//
// # Expiry
//
// A token's expiry comes from expires_in, else from the exp claim of a JWT
// access token (read, not verified), else from Config.DefaultLifetime.
// Values that are zero, negative or not numbers are ignored and values beyond
// a year are clamped to [MaxLifetime], each with a logged warning. A
// refresh_in hint is passed on as the token's "refresh_in" extra, which the
// keeper uses to open the refresh window early. Answers are read up to
// Config.MaxResponseBytes.
package oidc
