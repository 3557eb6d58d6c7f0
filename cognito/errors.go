package cognito

import (
	"errors"
	"net/http"
	"time"

	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/tokenkeeper/tokenkeeper"
)

// permanentCodes are the Cognito exceptions after which retrying cannot
// help: the user must sign in again, or the configuration is wrong.
var permanentCodes = map[string]bool{
	// The grant is gone: refresh token invalid, expired or revoked, user
	// disabled or deleted, or (for SECRET_HASH) the wrong client secret.
	"NotAuthorizedException":         true,
	"TokenRevokedException":          true,
	"RefreshTokenReuseException":     true,
	"UserNotFoundException":          true,
	"PasswordResetRequiredException": true,
	"UserNotConfirmedException":      true,
	// Sign-in only: a wrong password (cognito-local says this where
	// Cognito says NotAuthorizedException).
	"InvalidPasswordException": true,
	// The configuration is wrong: an unknown app client id (also what a
	// wrong region looks like), a missing parameter, a flow the client does
	// not allow.
	"ResourceNotFoundException":                 true,
	"InvalidParameterException":                 true,
	"InvalidUserPoolConfigurationException":     true,
	"InvalidIdentityPoolConfigurationException": true,
	"UnsupportedOperationException":             true,
	"UnsupportedTokenTypeException":             true,
	"UserLambdaValidationException":             true,
}

// IsPermanentCode reports whether a Cognito error code (the exception name,
// such as "NotAuthorizedException") means that retrying cannot help. Every
// other code is transient: TooManyRequestsException, InternalErrorException,
// LimitExceededException, throttling, Lambda failures and codes this package
// does not know.
func IsPermanentCode(code string) bool { return permanentCodes[code] }

// classify turns an error of an SDK call into a *tokenkeeper.RefreshError:
//
//   - A Cognito exception fills Code (its name, such as
//     "NotAuthorizedException") and Description (its message, truncated),
//     and is permanent if IsPermanentCode says so.
//   - The HTTP status fills Status; a Retry-After header fills RetryAfter.
//     An answer without a recognised exception is transient (5xx, 429, a
//     proxy's error page).
//   - Everything else (network errors, timeouts, a cancelled context) is
//     transient.
//
// Err keeps the SDK's error, so errors.As finds the typed exception
// (*types.NotAuthorizedException, ...). Its text holds the operation, the
// status, the request id and the server's message: no token, password or
// secret, which the SDK never puts into errors.
func classify(err error) error {
	if err == nil {
		return nil
	}
	var re *tokenkeeper.RefreshError
	if errors.As(err, &re) {
		return err
	}
	out := &tokenkeeper.RefreshError{Err: err}
	var resp *smithyhttp.ResponseError
	if errors.As(err, &resp) && resp.Response != nil {
		out.Status = resp.Response.StatusCode
		if d, ok := tokenkeeper.ParseRetryAfter(resp.Response.Header.Get("Retry-After"), time.Now()); ok {
			out.RetryAfter = d
		}
	}
	var api smithy.APIError
	if errors.As(err, &api) {
		out.Code = api.ErrorCode()
		out.Description = truncate(api.ErrorMessage(), 200)
		// A 5xx is never the user's fault, whatever the body says.
		out.Permanent = permanentCodes[out.Code] && out.Status < http.StatusInternalServerError
	}
	return out
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
