package cognito

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cognitoidentityprovider"
	"github.com/tokenkeeper/tokenkeeper"
)

// HTTPClient sends the SDK's requests; *http.Client satisfies it.
type HTTPClient interface {
	Do(*http.Request) (*http.Response, error)
}

// Config describes a user-pool app client. Region and ClientID are
// required; every other field may be left zero.
type Config struct {
	// Region is the AWS region of the user pool, such as "eu-west-1".
	Region string
	// ClientID is the app client's id.
	ClientID string
	// ClientSecret is the app client's secret, if it has one. It is sent
	// only inside SECRET_HASH (see [SecretHash]) or, for
	// GetTokensFromRefreshToken and RevokeToken, as the ClientSecret field;
	// it never appears in an error.
	ClientSecret string
	// UserPoolID, if set, is checked against Region: a pool id starts with
	// its region ("eu-west-1_AbCdEf"), and a mismatch is reported by New as
	// ErrRegionMismatch instead of as a puzzling ResourceNotFoundException
	// at the first call.
	UserPoolID string
	// Endpoint overrides the Cognito endpoint, for an emulator such as
	// cognito-local ("http://127.0.0.1:9229"). If empty, the region's
	// public endpoint is used.
	Endpoint string
	// HTTPClient sends the requests. If nil, the SDK's default client.
	HTTPClient HTTPClient
	// Rotation says that the app client has refresh-token rotation enabled:
	// Refresh then calls GetTokensFromRefreshToken, which returns a new
	// refresh token with every answer and invalidates the old one (after the
	// client's grace period). If false, Refresh calls InitiateAuth with
	// REFRESH_TOKEN_AUTH, which Cognito refuses for clients with rotation.
	Rotation bool
	// ClientMetadata is passed to the pool's Lambda triggers.
	ClientMetadata map[string]string
}

// Errors New returns, wrapped with the reason.
var (
	// ErrBadConfig is wrapped by every error New and NewIdentitySource return.
	ErrBadConfig = errors.New("cognito: invalid configuration")
	// ErrRegionMismatch: the user pool (or identity pool) id names another
	// region than Config.Region. Errors wrapping it also wrap ErrBadConfig.
	ErrRegionMismatch = errors.New("cognito: pool id and region disagree")
)

// Client talks to one app client of a Cognito user pool. It needs no AWS
// credentials: the calls it makes (InitiateAuth, RespondToAuthChallenge,
// GetTokensFromRefreshToken, RevokeToken) are unauthenticated, so the SDK
// client is built with aws.AnonymousCredentials and without reading any
// shared AWS configuration or environment.
//
// The SDK's own retries are switched off (aws.NopRetryer): a failed call
// returns at once, classified as permanent or transient (see the package
// documentation), and the keeper's backoff, Retry-After handling and
// circuit breaker decide when to try again. Two retry layers would multiply
// the attempts and hide failures from the keeper's breaker.
//
// A Client is a [tokenkeeper.Source]; it is safe for concurrent use.
type Client struct {
	cfg Config
	idp *cognitoidentityprovider.Client
}

var _ tokenkeeper.Source = (*Client)(nil)

// New checks cfg and returns a Client. It does no I/O.
func New(cfg Config) (*Client, error) {
	if err := checkRegion(cfg.Region, cfg.Endpoint != ""); err != nil {
		return nil, err
	}
	if strings.TrimSpace(cfg.ClientID) == "" {
		return nil, fmt.Errorf("%w: ClientID is empty", ErrBadConfig)
	}
	if cfg.UserPoolID != "" {
		if err := checkPoolRegion("user pool", cfg.UserPoolID, '_', cfg.Region); err != nil {
			return nil, err
		}
	}
	endpoint, err := checkEndpoint(cfg.Endpoint)
	if err != nil {
		return nil, err
	}
	opts := cognitoidentityprovider.Options{
		Region:       cfg.Region,
		Credentials:  aws.AnonymousCredentials{},
		Retryer:      aws.NopRetryer{},
		BaseEndpoint: endpoint,
	}
	if cfg.HTTPClient != nil {
		opts.HTTPClient = cfg.HTTPClient
	}
	return &Client{cfg: cfg, idp: cognitoidentityprovider.New(opts)}, nil
}

// Group returns a name for the keeper's per-provider group
// ([tokenkeeper.TokenConfig.Group]): tokens of one user pool region share a
// circuit breaker and a concurrency limit.
func (c *Client) Group() string { return "cognito-idp:" + c.cfg.Region }

// String describes the client without its secret.
func (c *Client) String() string {
	return fmt.Sprintf("cognito.Client(region=%s, client=%s)", c.cfg.Region, c.cfg.ClientID)
}

// regionRE matches AWS region names: us-east-1, us-gov-west-1, eu-central-2.
var regionRE = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$`)

// anyRegionRE is what an emulator may call its region ("local").
var anyRegionRE = regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)*$`)

func checkRegion(region string, custom bool) error {
	switch {
	case region == "":
		return fmt.Errorf("%w: Region is empty", ErrBadConfig)
	case regionRE.MatchString(region):
		return nil
	case custom && anyRegionRE.MatchString(region):
		return nil
	}
	return fmt.Errorf("%w: %q is not an AWS region name", ErrBadConfig, region)
}

// checkPoolRegion checks that a pool id ("eu-west-1_AbC" or
// "eu-west-1:uuid") names region. Ids whose prefix is no region name (an
// emulator's "local_AbC") are not checked.
func checkPoolRegion(kind, id string, sep byte, region string) error {
	i := strings.IndexByte(id, sep)
	if i <= 0 || i == len(id)-1 {
		return fmt.Errorf("%w: %s id %q is not of the form <region>%c<id>", ErrBadConfig, kind, id, sep)
	}
	if prefix := id[:i]; regionRE.MatchString(prefix) && prefix != region {
		return fmt.Errorf("%w: %w: %s %q is in %s, not in Region %s", ErrBadConfig, ErrRegionMismatch, kind, id, prefix, region)
	}
	return nil
}

func checkEndpoint(s string) (*string, error) {
	if s == "" {
		return nil, nil
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: Endpoint %q is not an http or https URL", ErrBadConfig, s)
	}
	return aws.String(s), nil
}
