package cognito

import (
	"context"
	"sync/atomic"

	"github.com/aws/aws-sdk-go-v2/aws"
	"golang.org/x/oauth2"
)

// CredentialsProvider serves the AWS credentials kept by a keeper (from an
// [IdentitySource]) to AWS SDK clients: it is an aws.CredentialsProvider.
// Set it as aws.Config.Credentials or a service client's
// Options.Credentials.
//
// Retrieve takes the credentials from the keeper's hot path: while they are
// valid it does no I/O and waits for nothing, and the keeper refreshes them
// in the background before they expire. Only when the keeper holds no valid
// credentials (at the very start, or after a long suspend) does Retrieve wait
// for the refresh, until ctx is done. There is no need to wrap it in an
// aws.CredentialsCache: the keeper is the cache.
type CredentialsProvider struct {
	tokens TokenGetter
	last   atomic.Pointer[converted]
}

type converted struct {
	tok   *oauth2.Token
	creds aws.Credentials
}

var _ aws.CredentialsProvider = (*CredentialsProvider)(nil)

// NewCredentialsProvider returns a provider serving the credentials tokens
// hands out (normally the keeper's handle of an IdentitySource's token).
func NewCredentialsProvider(tokens TokenGetter) *CredentialsProvider {
	return &CredentialsProvider{tokens: tokens}
}

// Retrieve returns the current credentials. Errors are the keeper's
// (tokenkeeper.ErrReauthRequired once the session is gone for good) or
// ErrNoCredentials.
func (p *CredentialsProvider) Retrieve(ctx context.Context) (aws.Credentials, error) {
	tok, err := p.tokens.TokenContext(ctx)
	if err != nil {
		return aws.Credentials{}, err
	}
	// The keeper hands out the same *oauth2.Token until it refreshes, so
	// the conversion is done once per refresh.
	if c := p.last.Load(); c != nil && c.tok == tok {
		return c.creds, nil
	}
	creds, err := CredentialsFromToken(tok)
	if err != nil {
		return aws.Credentials{}, err
	}
	p.last.Store(&converted{tok: tok, creds: creds})
	return creds, nil
}
