package cognito

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cognitoidentity"
	"github.com/aws/aws-sdk-go-v2/service/cognitoidentity/types"
	"github.com/tokenkeeper/tokenkeeper"
	"golang.org/x/oauth2"
)

// TokenGetter hands out a kept token; *tokenkeeper.Handle satisfies it.
type TokenGetter interface {
	TokenContext(ctx context.Context) (*oauth2.Token, error)
}

// IdentityConfig describes a Cognito identity pool that exchanges the
// user-pool ID token for temporary AWS credentials. IdentityPoolID is
// required.
type IdentityConfig struct {
	// IdentityPoolID is the pool's id, "eu-west-1:0f1e...".
	IdentityPoolID string
	// Region is the identity pool's region. If empty, the id's prefix.
	Region string
	// Endpoint overrides the Cognito Identity endpoint (an emulator). If
	// empty, the region's public endpoint.
	Endpoint string
	// HTTPClient sends the requests. If nil, the SDK's default client.
	HTTPClient HTTPClient
	// ProviderName is the key of the Logins map, the user pool as a login
	// provider: "cognito-idp.<region>.amazonaws.com/<user pool id>". If
	// empty, it is taken from the ID token's iss claim.
	ProviderName string
	// AccountID is passed to GetId; it is optional.
	AccountID string
	// CustomRoleArn asks for a role other than the pool's default
	// authenticated role (with role-based access control).
	CustomRoleArn string
}

// Errors of an IdentitySource.
var (
	// ErrNoIDToken: the user-pool token has no ID token. Transient: the
	// user pool's next refresh brings one.
	ErrNoIDToken = errors.New("cognito: the user-pool token carries no ID token")
	// ErrNoCredentials: the answer of GetCredentialsForIdentity held no
	// complete credentials, or a kept token is not a credentials token.
	ErrNoCredentials = errors.New("cognito: no AWS credentials")
)

// Extras of a credentials token.
const (
	secretKeyExtra    = "aws_secret_access_key"
	sessionTokenExtra = "aws_session_token"
	identityIDExtra   = "identity_id"
)

// IdentitySource is a [tokenkeeper.Source] of temporary AWS credentials from
// a Cognito identity pool (the second half of Amplify's fetchAuthSession).
// Each Refresh takes the current ID token from the user-pool tokens (a
// TokenGetter, normally the keeper's handle of the user-pool tokens), finds
// the user's identity id with GetId (once; it is remembered per user), and
// calls GetCredentialsForIdentity. The calls need no AWS credentials.
//
// The credentials travel as an *oauth2.Token: AccessToken is the access key
// id, the extras "aws_secret_access_key", "aws_session_token" and
// "identity_id" carry the rest, Expiry is the credentials' expiration
// (corrected for the skew between the server's clock and ours when that
// exceeds a few seconds). [CredentialsFromToken] reads them back;
// [CredentialsProvider] serves them to AWS SDK clients.
//
// Taking the ID token can wait for a refresh of the user-pool tokens, which
// needs a second keeper worker: keep both in a keeper with at least two
// workers (the default is eight).
type IdentitySource struct {
	cfg      IdentityConfig
	ci       *cognitoidentity.Client
	idTokens TokenGetter

	mu          sync.Mutex // guards the cached identity id; never held across I/O
	identitySub string
	identityID  string
}

var _ tokenkeeper.Source = (*IdentitySource)(nil)

// NewIdentitySource checks cfg and returns a source that takes ID tokens
// from idTokens. It does no I/O.
func NewIdentitySource(cfg IdentityConfig, idTokens TokenGetter) (*IdentitySource, error) {
	if idTokens == nil {
		return nil, fmt.Errorf("%w: no TokenGetter for the ID token", ErrBadConfig)
	}
	if cfg.IdentityPoolID == "" {
		return nil, fmt.Errorf("%w: IdentityPoolID is empty", ErrBadConfig)
	}
	if cfg.Region == "" {
		if i := strings.IndexByte(cfg.IdentityPoolID, ':'); i > 0 {
			cfg.Region = cfg.IdentityPoolID[:i]
		}
	}
	if err := checkRegion(cfg.Region, cfg.Endpoint != ""); err != nil {
		return nil, err
	}
	if err := checkPoolRegion("identity pool", cfg.IdentityPoolID, ':', cfg.Region); err != nil {
		return nil, err
	}
	endpoint, err := checkEndpoint(cfg.Endpoint)
	if err != nil {
		return nil, err
	}
	opts := cognitoidentity.Options{
		Region:       cfg.Region,
		Credentials:  aws.AnonymousCredentials{},
		Retryer:      aws.NopRetryer{},
		BaseEndpoint: endpoint,
	}
	if cfg.HTTPClient != nil {
		opts.HTTPClient = cfg.HTTPClient
	}
	return &IdentitySource{cfg: cfg, ci: cognitoidentity.New(opts), idTokens: idTokens}, nil
}

// Group returns a name for the keeper's per-provider group.
func (s *IdentitySource) Group() string { return "cognito-identity:" + s.cfg.Region }

// Refresh fetches new AWS credentials. The current token is not needed (the
// ID token is the grant), so a nil current is fine.
//
// If the user-pool tokens need re-authentication (or were removed), Refresh
// fails permanently. Errors of the identity pool are classified as the
// user pool's are: NotAuthorizedException (the ID token was refused),
// ResourceNotFoundException (an unknown pool) and
// InvalidIdentityPoolConfigurationException are permanent;
// TooManyRequestsException, LimitExceededException, ExternalServiceException,
// server and network errors transient. An identity id that Cognito no longer
// knows is forgotten and looked up again within the same attempt.
func (s *IdentitySource) Refresh(ctx context.Context, _ *oauth2.Token) (*oauth2.Token, error) {
	up, err := s.idTokens.TokenContext(ctx)
	if err != nil {
		if errors.Is(err, tokenkeeper.ErrReauthRequired) || errors.Is(err, tokenkeeper.ErrUnknownToken) {
			return nil, tokenkeeper.Permanent(fmt.Errorf("cognito: no user-pool session for AWS credentials: %w", err))
		}
		return nil, fmt.Errorf("cognito: waiting for the user-pool ID token: %w", err)
	}
	idToken := IDToken(up)
	if idToken == "" {
		return nil, ErrNoIDToken
	}
	claims, err := DecodeClaims(idToken)
	if err != nil {
		return nil, fmt.Errorf("cognito: the user-pool ID token: %w", err)
	}
	provider := s.cfg.ProviderName
	if provider == "" {
		provider = providerName(claims.Issuer)
		if provider == "" {
			return nil, tokenkeeper.Permanent(fmt.Errorf("%w: the ID token has no iss claim; set IdentityConfig.ProviderName", ErrBadConfig))
		}
	}
	logins := map[string]string{provider: idToken}

	s.mu.Lock()
	id := ""
	if s.identitySub == claims.Subject {
		id = s.identityID
	}
	s.mu.Unlock()
	cached := id != ""
	for {
		if id == "" {
			in := &cognitoidentity.GetIdInput{IdentityPoolId: aws.String(s.cfg.IdentityPoolID), Logins: logins}
			if s.cfg.AccountID != "" {
				in.AccountId = aws.String(s.cfg.AccountID)
			}
			out, err := s.ci.GetId(ctx, in)
			if err != nil {
				return nil, classify(err)
			}
			id = aws.ToString(out.IdentityId)
			if id == "" {
				return nil, fmt.Errorf("%w: GetId returned no identity id", ErrNoCredentials)
			}
			s.remember(claims.Subject, id)
		}
		in := &cognitoidentity.GetCredentialsForIdentityInput{IdentityId: aws.String(id), Logins: logins}
		if s.cfg.CustomRoleArn != "" {
			in.CustomRoleArn = aws.String(s.cfg.CustomRoleArn)
		}
		out, err := s.ci.GetCredentialsForIdentity(ctx, in)
		var nf *types.ResourceNotFoundException
		if cached && errors.As(err, &nf) {
			// The identity was deleted: find (or create) the user's
			// identity again.
			s.remember("", "")
			id, cached = "", false
			continue
		}
		if err != nil {
			return nil, classify(err)
		}
		return credentialsToken(out.Credentials, id, skewOf(out.ResultMetadata))
	}
}

func (s *IdentitySource) remember(sub, id string) {
	s.mu.Lock()
	s.identitySub, s.identityID = sub, id
	s.mu.Unlock()
}

// IdentityID returns the identity id found by the last Refresh, or "".
func (s *IdentitySource) IdentityID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.identityID
}

// providerName turns an issuer URL into a Logins key.
func providerName(iss string) string {
	iss = strings.TrimPrefix(iss, "https://")
	iss = strings.TrimPrefix(iss, "http://")
	return strings.TrimSuffix(iss, "/")
}

func credentialsToken(c *types.Credentials, identityID string, skew time.Duration) (*oauth2.Token, error) {
	if c == nil || aws.ToString(c.AccessKeyId) == "" || aws.ToString(c.SecretKey) == "" || c.Expiration == nil {
		return nil, fmt.Errorf("%w: incomplete answer", ErrNoCredentials)
	}
	exp := *c.Expiration
	if skew > minSkew || skew < -minSkew {
		exp = exp.Add(-skew)
	}
	tok := &oauth2.Token{AccessToken: aws.ToString(c.AccessKeyId), TokenType: "aws", Expiry: exp}
	return tok.WithExtra(map[string]any{
		secretKeyExtra:    aws.ToString(c.SecretKey),
		sessionTokenExtra: aws.ToString(c.SessionToken),
		identityIDExtra:   identityID,
	}), nil
}

// CredentialsFromToken reads AWS credentials from a token an IdentitySource
// returned. It fails with ErrNoCredentials for any other token.
func CredentialsFromToken(tok *oauth2.Token) (aws.Credentials, error) {
	if tok == nil || tok.AccessToken == "" {
		return aws.Credentials{}, ErrNoCredentials
	}
	secret, _ := tok.Extra(secretKeyExtra).(string)
	if secret == "" {
		return aws.Credentials{}, fmt.Errorf("%w: the token carries no secret access key", ErrNoCredentials)
	}
	session, _ := tok.Extra(sessionTokenExtra).(string)
	return aws.Credentials{
		AccessKeyID:     tok.AccessToken,
		SecretAccessKey: secret,
		SessionToken:    session,
		Source:          credentialsSource,
		CanExpire:       !tok.Expiry.IsZero(),
		Expires:         tok.Expiry,
	}, nil
}

// credentialsSource names where credentials came from (aws.Credentials.Source).
const credentialsSource = "tokenkeeper/cognito"
