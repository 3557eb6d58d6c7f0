package cognito

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
)

// TestErrorMapping sends a refresh through the SDK to a fake that answers
// with each fault, and checks the classification the keeper will see.
func TestErrorMapping(t *testing.T) {
	tests := []struct {
		name       string
		fault      fakeFault
		code       string
		status     int
		permanent  bool
		retryAfter time.Duration
	}{
		{"NotAuthorized", fakeFault{status: 400, typ: "NotAuthorizedException", msg: "Refresh Token has expired"}, "NotAuthorizedException", 400, true, 0},
		{"TokenRevoked", fakeFault{status: 400, typ: "TokenRevokedException", msg: "revoked"}, "TokenRevokedException", 400, true, 0},
		{"RefreshTokenReuse", fakeFault{status: 400, typ: "RefreshTokenReuseException", msg: "reused"}, "RefreshTokenReuseException", 400, true, 0},
		{"UserNotFound", fakeFault{status: 400, typ: "UserNotFoundException", msg: "User does not exist."}, "UserNotFoundException", 400, true, 0},
		{"PasswordResetRequired", fakeFault{status: 400, typ: "PasswordResetRequiredException", msg: "reset"}, "PasswordResetRequiredException", 400, true, 0},
		{"UserNotConfirmed", fakeFault{status: 400, typ: "UserNotConfirmedException", msg: "not confirmed"}, "UserNotConfirmedException", 400, true, 0},
		{"unknown client id", fakeFault{status: 400, typ: "ResourceNotFoundException", msg: "User pool client x does not exist."}, "ResourceNotFoundException", 400, true, 0},
		{"InvalidParameter", fakeFault{status: 400, typ: "InvalidParameterException", msg: "bad"}, "InvalidParameterException", 400, true, 0},
		{"qualified __type", fakeFault{status: 400, typ: "com.amazonaws.cognito#NotAuthorizedException", msg: "x"}, "NotAuthorizedException", 400, true, 0},
		{"TooManyRequests with Retry-After", fakeFault{status: 400, typ: "TooManyRequestsException", msg: "Rate exceeded", retryAfter: "7"}, "TooManyRequestsException", 400, false, 7 * time.Second},
		{"InternalError", fakeFault{status: 500, typ: "InternalErrorException", msg: "oops"}, "InternalErrorException", 500, false, 0},
		{"LimitExceeded", fakeFault{status: 400, typ: "LimitExceededException", msg: "limit"}, "LimitExceededException", 400, false, 0},
		{"Throttling 429", fakeFault{status: 429, typ: "ThrottlingException", msg: "slow down", retryAfter: "2"}, "ThrottlingException", 429, false, 2 * time.Second},
		{"unknown exception", fakeFault{status: 400, typ: "BrandNewException", msg: "?"}, "BrandNewException", 400, false, 0},
		{"permanent code with 5xx", fakeFault{status: 503, typ: "NotAuthorizedException", msg: "odd"}, "NotAuthorizedException", 503, false, 0},
		{"gateway HTML 502", fakeFault{status: 502, body: "<html>Bad Gateway</html>"}, "", 502, false, 0},
		{"503 HTML with Retry-After", fakeFault{status: 503, body: "<html>busy</html>", retryAfter: "30"}, "", 503, false, 30 * time.Second},
		{"connection dropped", fakeFault{drop: true}, "", 0, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, c, tok := signedIn(t, testSecret, false)
			f.inject(tt.fault)
			_, err := c.Refresh(context.Background(), tok)
			re := asRefreshError(t, err)
			if re.Permanent != tt.permanent {
				t.Errorf("Permanent = %v, want %v (err %v)", re.Permanent, tt.permanent, err)
			}
			if tt.code != "" && re.Code != tt.code {
				t.Errorf("Code = %q, want %q", re.Code, tt.code)
			}
			if re.Status != tt.status {
				t.Errorf("Status = %d, want %d", re.Status, tt.status)
			}
			if re.RetryAfter != tt.retryAfter {
				t.Errorf("RetryAfter = %v, want %v", re.RetryAfter, tt.retryAfter)
			}
			if got := tokenkeeper.Classify(err); got.Permanent != tt.permanent {
				t.Errorf("tokenkeeper.Classify disagrees: %+v", got)
			}
			assertNoSecrets(t, err, testSecret, tok.RefreshToken, tok.AccessToken, IDToken(tok))
			// The fault was one answer: the next refresh works.
			if _, err := c.Refresh(context.Background(), tok); err != nil {
				t.Errorf("refresh after the fault: %v", err)
			}
		})
	}
}

func TestClassify(t *testing.T) {
	if classify(nil) != nil {
		t.Errorf("classify(nil) != nil")
	}
	re := &tokenkeeper.RefreshError{Code: "x", Permanent: true}
	if got := classify(re); got != error(re) {
		t.Errorf("classify did not pass a *RefreshError through")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, srv := newFake(t)
	c := newTestClient(t, srv, nil)
	_, err := c.Refresh(ctx, tokWithRT("rt"))
	if got := asRefreshError(t, err); got.Permanent || !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: %+v, want transient wrapping context.Canceled", got)
	}
	if !IsPermanentCode("NotAuthorizedException") || IsPermanentCode("TooManyRequestsException") {
		t.Errorf("IsPermanentCode is wrong")
	}
	if got := truncate("abcdef", 3); got != "abc…" {
		t.Errorf("truncate = %q", got)
	}
}

// TestUnreachable: a wrong region or a dead endpoint are network errors:
// transient, never a reason to drop the session.
func TestUnreachable(t *testing.T) {
	_, srv := newFake(t)
	url := srv.URL
	srv.Close()
	c, err := New(Config{Region: fakeRegion, ClientID: "c", Endpoint: url, HTTPClient: &http.Client{Timeout: 5 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Refresh(context.Background(), tokWithRT("rt"))
	re := asRefreshError(t, err)
	if re.Permanent || re.Status != 0 || re.Code != "" {
		t.Errorf("unreachable endpoint: %+v, want a transient network error", re)
	}
	if _, err := c.SignIn(context.Background(), "u", "p4ssw0rd-secret"); err == nil {
		t.Errorf("SignIn to a dead endpoint succeeded")
	} else {
		assertNoSecrets(t, err, "p4ssw0rd-secret")
	}
}
