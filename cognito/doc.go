// Package cognito keeps an AWS Cognito session fresh with a
// [tokenkeeper.Keeper]: the user-pool tokens (access, ID and refresh token)
// and, optionally, the temporary AWS credentials of an identity pool, all
// that Amplify's fetchAuthSession returns, refreshed in the background
// instead of on the request path.
//
// # Lifecycle
//
// A program signs the user in once ([Client.SignIn], USER_PASSWORD_AUTH;
// [Client.RespondToChallenge] for NEW_PASSWORD_REQUIRED and MFA) and hands
// the tokens to a keeper, with [Keep] or as the initial token of a
// [tokenkeeper.TokenConfig] whose Source is the [Client]. From then on the
// keeper refreshes them before they expire ([Client.Refresh]:
// REFRESH_TOKEN_AUTH, or GetTokensFromRefreshToken for app clients with
// refresh-token rotation), for as long as the refresh token lives (30 days
// by default, up to ten years). With an [IdentityConfig] a second kept token
// holds AWS credentials, renewed from the current ID token
// ([IdentitySource]) and served to AWS SDK clients by a
// [CredentialsProvider] without waiting.
//
// Tokens are *oauth2.Token values: AccessToken is Cognito's access token,
// the ID token travels as the "id_token" extra ([IDToken]), Expiry is the
// earlier of the two tokens' expiries. In a pool that tracks devices, the
// device key from the sign-in travels as the "device_key" extra and is sent
// with every refresh, as Cognito requires. A keeper's Store must be told to
// keep these extras ([ExtraKeys]).
//
// # No AWS credentials, no shared configuration
//
// The user-pool and identity-pool calls used here are unauthenticated. The
// SDK clients are built from explicit options (region, optional endpoint,
// optional HTTP client) with aws.AnonymousCredentials; nothing reads
// ~/.aws, the environment or an instance role. Config.Endpoint points them
// at an emulator such as cognito-local.
//
// # SECRET_HASH and the internal user name
//
// App clients with a secret need a SECRET_HASH ([SecretHash]). For a
// sign-in it is computed over the name the user typed; for
// REFRESH_TOKEN_AUTH over the user's internal user name, the
// "cognito:username" claim, which for a pool that signs users in by e-mail
// is the sub (a UUID), not the e-mail address. [Client.Refresh] reads it
// from the current tokens ([InternalUsername]); a hash over the e-mail fails
// with NotAuthorizedException, which is why this pitfall shows up as a
// "random logout" after the first hour.
//
// # Expiry and clocks
//
// The expiry is the local send time plus ExpiresIn or the JWT's own
// lifetime (exp - iat, less a second because iat is truncated), whichever is
// shorter, and the earlier of the access and the ID token's. So a local
// clock that is minutes or hours off from Cognito's does not make tokens
// look expired or valid for too long. The JWT payload is decoded without
// checking the signature ([DecodeClaims]): the token came straight from
// Cognito over TLS, and only its lifetime and user name are read. AWS
// credentials expire at a server time; it is corrected by the clock
// difference the SDK measures from each answer's Date header.
//
// # Errors
//
// Failed calls return a *tokenkeeper.RefreshError whose Code is the Cognito
// exception's name and whose Err is the SDK's error (errors.As finds the
// typed exception, such as *types.NotAuthorizedException).
//
//   - Permanent (the keeper stops, and callers get
//     tokenkeeper.ErrReauthRequired): NotAuthorizedException,
//     TokenRevokedException, RefreshTokenReuseException,
//     UserNotFoundException, PasswordResetRequiredException,
//     UserNotConfirmedException, and the configuration errors
//     ResourceNotFoundException (an app client id unknown in this region: a
//     wrong ClientID or a wrong Region), InvalidParameterException,
//     InvalidUserPoolConfigurationException,
//     InvalidIdentityPoolConfigurationException,
//     UnsupportedOperationException, UserLambdaValidationException; also a
//     token without a refresh token ([ErrNoRefreshToken]) or, for a client
//     with a secret, without a user name ([ErrNoUsername]).
//   - Transient (the keeper retries with backoff, honouring Retry-After,
//     while it keeps serving the still-valid token; the session is never
//     dropped): TooManyRequestsException, InternalErrorException,
//     LimitExceededException, any throttling or unknown exception, every
//     5xx, network errors and timeouts. A region name that does not exist
//     fails to resolve and is a network error; one that does exist but
//     does not hold the pool answers ResourceNotFoundException.
//
// [New] rejects what it can see without I/O: an empty or malformed region,
// an empty client id, a user pool id of another region
// ([ErrRegionMismatch]), a bad endpoint URL ([ErrBadConfig]).
//
// The SDK's own retries are off (aws.NopRetryer): each call is one attempt,
// and the keeper's backoff, breaker and Retry-After handling are in charge.
//
// No error or log line holds a token, a password, a session or the client
// secret.
package cognito
