package cognito

import (
	"crypto/hmac"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeCognito speaks enough of the AWS JSON 1.1 protocol of Cognito user
// pools (AWSCognitoIdentityProviderService) and identity pools
// (AWSCognitoIdentityService) for the paths cognito-local cannot cover:
// GetTokensFromRefreshToken with rotation and reuse detection, SECRET_HASH
// checks over the internal user name, ExpiresIn, a server clock that is
// off, identity pools, and injected faults. Operations are chosen by the
// X-Amz-Target header; errors have Cognito's shape, {"__type", "message"}
// with status 400 (or the fault's status).
type fakeCognito struct {
	t      testing.TB
	region string
	poolID string

	mu            sync.Mutex
	clientID      string
	clientSecret  string
	users         map[string]*fakeUser // by internal user name
	refresh       map[string]*fakeRefresh
	accessLife    time.Duration
	idLife        time.Duration
	omitExpiresIn bool
	omitIat       bool
	omitIDToken   bool
	badAccessJWT  bool
	badIDJWT      bool
	refreshChall  bool          // answer REFRESH_TOKEN_AUTH with a challenge
	devices       bool          // the pool tracks devices
	offset        time.Duration // the server's clock minus the real one
	faults        []fakeFault
	calls         map[string]int
	hashesSeen    []string // SECRET_HASH values received on refresh
	seq           int

	identityPool string
	identities   map[string]string // sub -> identity id
	credsLife    time.Duration
	lastAuth     string // Authorization header of the last request
}

type fakeUser struct {
	username string // internal
	sub      string
	email    string
	password string
	newPass  bool // NEW_PASSWORD_REQUIRED at next sign-in
}

type fakeRefresh struct {
	user    string
	device  string
	used    bool
	revoked bool
}

// fakeFault is the answer to the next request for op ("" = any).
type fakeFault struct {
	op         string
	status     int
	typ, msg   string // Cognito error shape; typ == "" with body set: raw body
	body       string
	retryAfter string
	drop       bool // close the connection without an answer
}

const fakeRegion = "eu-west-1"

func newFake(t testing.TB) (*fakeCognito, *httptest.Server) {
	f := &fakeCognito{
		t:            t,
		region:       fakeRegion,
		poolID:       fakeRegion + "_FakePool",
		clientID:     "fakeclient",
		users:        map[string]*fakeUser{},
		refresh:      map[string]*fakeRefresh{},
		accessLife:   time.Hour,
		idLife:       time.Hour,
		calls:        map[string]int{},
		identityPool: fakeRegion + ":00000000-0000-0000-0000-000000000001",
		identities:   map[string]string{},
		credsLife:    time.Hour,
	}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

// addUser adds a user whose internal user name is its sub, as in a pool
// with e-mail as the user name attribute.
func (f *fakeCognito) addUser(sub, email, password string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.users[sub] = &fakeUser{username: sub, sub: sub, email: email, password: password}
}

func (f *fakeCognito) inject(faults ...fakeFault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults = append(f.faults, faults...)
}

func (f *fakeCognito) count(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[op]
}

func (f *fakeCognito) set(fn func(f *fakeCognito)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeCognito) issuer() string {
	return "https://cognito-idp." + f.region + ".amazonaws.com/" + f.poolID
}

func (f *fakeCognito) provider() string {
	return "cognito-idp." + f.region + ".amazonaws.com/" + f.poolID
}

type apiError struct {
	status   int
	typ, msg string
}

func (f *fakeCognito) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	target := r.Header.Get("X-Amz-Target")
	_, op, ok := strings.Cut(target, ".")
	if r.Method != http.MethodPost || !ok {
		http.Error(w, "not an AWS JSON 1.1 request", http.StatusBadRequest)
		return
	}
	body, _ := io.ReadAll(r.Body)
	var in map[string]any
	if err := json.Unmarshal(body, &in); err != nil {
		writeErr(w, apiError{400, "SerializationException", "bad JSON"})
		return
	}

	f.mu.Lock()
	f.calls[op]++
	f.lastAuth = r.Header.Get("Authorization")
	now := time.Now().Add(f.offset)
	var fault *fakeFault
	for i, ft := range f.faults {
		if ft.op == "" || ft.op == op {
			fault = &ft
			f.faults = append(f.faults[:i:i], f.faults[i+1:]...)
			break
		}
	}
	var out any
	var aerr *apiError
	if fault == nil {
		out, aerr = f.dispatch(op, in, now)
	}
	f.mu.Unlock()

	w.Header().Set("Date", now.UTC().Format(http.TimeFormat))
	w.Header().Set("X-Amzn-Requestid", "fake-request")
	switch {
	case fault != nil && fault.drop:
		hj, ok := w.(http.Hijacker)
		if !ok {
			f.t.Errorf("fake: cannot hijack")
			return
		}
		conn, _, err := hj.Hijack()
		if err == nil {
			conn.Close()
		}
	case fault != nil:
		if fault.retryAfter != "" {
			w.Header().Set("Retry-After", fault.retryAfter)
		}
		if fault.typ == "" {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(fault.status)
			io.WriteString(w, fault.body)
			return
		}
		writeErr(w, apiError{fault.status, fault.typ, fault.msg})
	case aerr != nil:
		writeErr(w, *aerr)
	default:
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		json.NewEncoder(w).Encode(out)
	}
}

func writeErr(w http.ResponseWriter, e apiError) {
	if e.status == 0 {
		e.status = http.StatusBadRequest
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.WriteHeader(e.status)
	json.NewEncoder(w).Encode(map[string]string{"__type": e.typ, "message": e.msg})
}

func str(in map[string]any, k string) string {
	s, _ := in[k].(string)
	return s
}

func strMap(in map[string]any, k string) map[string]string {
	out := map[string]string{}
	m, _ := in[k].(map[string]any)
	for k, v := range m {
		out[k], _ = v.(string)
	}
	return out
}

func notAuthorized(msg string) *apiError { return &apiError{400, "NotAuthorizedException", msg} }

// dispatch runs op with f.mu held.
func (f *fakeCognito) dispatch(op string, in map[string]any, now time.Time) (any, *apiError) {
	switch op {
	case "InitiateAuth", "GetTokensFromRefreshToken", "RespondToAuthChallenge", "RevokeToken":
		if str(in, "ClientId") != f.clientID {
			return nil, &apiError{400, "ResourceNotFoundException", "User pool client " + str(in, "ClientId") + " does not exist."}
		}
	}
	switch op {
	case "InitiateAuth":
		params := strMap(in, "AuthParameters")
		switch str(in, "AuthFlow") {
		case "USER_PASSWORD_AUTH":
			return f.signIn(params, now)
		case "REFRESH_TOKEN_AUTH", "REFRESH_TOKEN":
			return f.refreshAuth(params, now)
		}
		return nil, &apiError{400, "InvalidParameterException", "unsupported flow"}
	case "RespondToAuthChallenge":
		resp := strMap(in, "ChallengeResponses")
		u := f.users[resp["USERNAME"]]
		if str(in, "ChallengeName") != "NEW_PASSWORD_REQUIRED" || u == nil || !u.newPass || str(in, "Session") != "session-"+u.username {
			return nil, notAuthorized("Invalid session for the user.")
		}
		if f.clientSecret != "" && resp["SECRET_HASH"] != SecretHash(resp["USERNAME"], f.clientID, f.clientSecret) {
			return nil, notAuthorized("Unable to verify secret hash for client " + f.clientID)
		}
		u.password, u.newPass = resp["NEW_PASSWORD"], false
		return map[string]any{"AuthenticationResult": f.issue(u, now, true), "ChallengeParameters": map[string]string{}}, nil
	case "GetTokensFromRefreshToken":
		if f.clientSecret != "" && str(in, "ClientSecret") != f.clientSecret {
			return nil, notAuthorized("Client secret is invalid.")
		}
		rt := f.refresh[str(in, "RefreshToken")]
		switch {
		case rt == nil || rt.revoked:
			return nil, notAuthorized("Invalid Refresh Token")
		case rt.used:
			return nil, &apiError{400, "RefreshTokenReuseException", "Refresh token has been used already."}
		case rt.device != str(in, "DeviceKey"):
			return nil, notAuthorized("Invalid device key given.")
		}
		rt.used = true
		res := f.issue(f.users[rt.user], now, true)
		f.refresh[res["RefreshToken"].(string)].device = rt.device
		return map[string]any{"AuthenticationResult": res}, nil
	case "RevokeToken":
		if rt := f.refresh[str(in, "Token")]; rt != nil {
			rt.revoked = true
		}
		return map[string]any{}, nil
	case "GetId":
		if str(in, "IdentityPoolId") != f.identityPool {
			return nil, &apiError{400, "ResourceNotFoundException", "IdentityPool not found."}
		}
		u, err := f.checkLogins(in, now)
		if err != nil {
			return nil, err
		}
		id := f.identities[u.sub]
		if id == "" {
			f.seq++
			id = fmt.Sprintf("%s:identity-%d", f.region, f.seq)
			f.identities[u.sub] = id
		}
		return map[string]any{"IdentityId": id}, nil
	case "GetCredentialsForIdentity":
		u, err := f.checkLogins(in, now)
		if err != nil {
			return nil, err
		}
		if id := str(in, "IdentityId"); id == "" || f.identities[u.sub] != id {
			return nil, &apiError{400, "ResourceNotFoundException", "Identity not found."}
		}
		f.seq++
		exp := now.Add(f.credsLife)
		return map[string]any{
			"IdentityId": str(in, "IdentityId"),
			"Credentials": map[string]any{
				"AccessKeyId":  fmt.Sprintf("ASIAFAKE%04d", f.seq),
				"SecretKey":    fmt.Sprintf("secret-key-%d", f.seq),
				"SessionToken": fmt.Sprintf("session-token-%d", f.seq),
				"Expiration":   float64(exp.UnixMilli()) / 1000,
			},
		}, nil
	case "ListUserPools":
		// A signed admin call, to see which credentials a client used.
		return map[string]any{"UserPools": []any{}}, nil
	}
	return nil, &apiError{400, "UnknownOperationException", op}
}

func (f *fakeCognito) checkLogins(in map[string]any, now time.Time) (*fakeUser, *apiError) {
	logins := strMap(in, "Logins")
	jwt, ok := logins[f.provider()]
	if !ok || len(logins) != 1 {
		return nil, notAuthorized("Invalid login token. Issuer doesn't match providerName")
	}
	c, err := DecodeClaims(jwt)
	if err != nil || c.TokenUse != "id" {
		return nil, notAuthorized("Invalid login token. Not a valid OpenId Connect identity token.")
	}
	if !c.Expiry.After(now) {
		return nil, notAuthorized("Invalid login token. Token expired")
	}
	u := f.users[c.Username]
	if u == nil {
		return nil, notAuthorized("Invalid login token.")
	}
	return u, nil
}

func (f *fakeCognito) lookup(name string) *fakeUser {
	if u := f.users[name]; u != nil {
		return u
	}
	for _, u := range f.users {
		if u.email == name {
			return u
		}
	}
	return nil
}

func (f *fakeCognito) signIn(params map[string]string, now time.Time) (any, *apiError) {
	u := f.lookup(params["USERNAME"])
	if f.clientSecret != "" && params["SECRET_HASH"] != SecretHash(params["USERNAME"], f.clientID, f.clientSecret) {
		return nil, notAuthorized("Unable to verify secret hash for client " + f.clientID)
	}
	if u == nil || u.password != params["PASSWORD"] {
		return nil, notAuthorized("Incorrect username or password.")
	}
	if u.newPass {
		return map[string]any{
			"ChallengeName":       "NEW_PASSWORD_REQUIRED",
			"ChallengeParameters": map[string]string{"USER_ID_FOR_SRP": u.username, "requiredAttributes": "[]"},
			"Session":             "session-" + u.username,
		}, nil
	}
	res := f.issue(u, now, true)
	if f.devices {
		key := fmt.Sprintf("%s_device-%d", f.region, f.seq)
		res["NewDeviceMetadata"] = map[string]string{"DeviceKey": key, "DeviceGroupKey": "group"}
		f.refresh[res["RefreshToken"].(string)].device = key
	}
	return map[string]any{"AuthenticationResult": res, "ChallengeParameters": map[string]string{}}, nil
}

func (f *fakeCognito) refreshAuth(params map[string]string, now time.Time) (any, *apiError) {
	rt := f.refresh[params["REFRESH_TOKEN"]]
	if rt == nil || rt.revoked {
		return nil, notAuthorized("Invalid Refresh Token")
	}
	if f.clientSecret != "" {
		f.hashesSeen = append(f.hashesSeen, params["SECRET_HASH"])
		// Cognito checks the hash against the user the refresh token
		// belongs to, by internal user name.
		want := SecretHash(rt.user, f.clientID, f.clientSecret)
		if !hmac.Equal([]byte(params["SECRET_HASH"]), []byte(want)) {
			return nil, notAuthorized("Unable to verify secret hash for client " + f.clientID)
		}
	}
	if rt.device != params["DEVICE_KEY"] {
		return nil, notAuthorized("Invalid device key given.")
	}
	if f.refreshChall {
		return map[string]any{"ChallengeName": "SOFTWARE_TOKEN_MFA", "Session": "s", "ChallengeParameters": map[string]string{}}, nil
	}
	return map[string]any{"AuthenticationResult": f.issue(f.users[rt.user], now, false)}, nil
}

// issue makes tokens for u; withRefresh adds a new refresh token.
func (f *fakeCognito) issue(u *fakeUser, now time.Time, withRefresh bool) map[string]any {
	f.seq++
	iat := now.Unix()
	access := map[string]any{
		"sub": u.sub, "username": u.username, "client_id": f.clientID, "token_use": "access",
		"iss": f.issuer(), "exp": iat + int64(f.accessLife/time.Second), "jti": fmt.Sprintf("a%d", f.seq),
	}
	id := map[string]any{
		"sub": u.sub, "cognito:username": u.username, "aud": f.clientID, "token_use": "id",
		"email": u.email, "iss": f.issuer(), "exp": iat + int64(f.idLife/time.Second), "jti": fmt.Sprintf("i%d", f.seq),
	}
	if !f.omitIat {
		access["iat"], id["iat"] = iat, iat
	}
	res := map[string]any{"AccessToken": makeJWT(access), "TokenType": "Bearer"}
	if f.badAccessJWT {
		res["AccessToken"] = "not-a-jwt"
	}
	if !f.omitIDToken {
		res["IdToken"] = makeJWT(id)
		if f.badIDJWT {
			res["IdToken"] = "bad.jwt"
		}
	}
	if !f.omitExpiresIn {
		res["ExpiresIn"] = int(f.accessLife / time.Second)
	}
	if withRefresh {
		rt := fmt.Sprintf("eyJjdHkiOiJKV1QifQ.enc%d.iv.cipher.tag", f.seq)
		f.refresh[rt] = &fakeRefresh{user: u.username}
		res["RefreshToken"] = rt
	}
	return res
}

// makeJWT builds an unsigned compact JWS (the signature is never checked).
func makeJWT(claims map[string]any) string {
	h, _ := json.Marshal(map[string]string{"alg": "RS256", "kid": "fake"})
	p, _ := json.Marshal(claims)
	enc := base64.RawURLEncoding.EncodeToString
	return enc(h) + "." + enc(p) + "." + enc([]byte("signature"))
}

func mustFakeServer(t testing.TB) *httptest.Server {
	_, srv := newFake(t)
	return srv
}
