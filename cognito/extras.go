package cognito

// ExtraKeys returns the names of the token extras (oauth2.Token.Extra) this
// package reads and writes: "id_token" (the ID token of user-pool tokens),
// "cognito:username" (a user name set with [WithUsername]), "device_key"
// (see [DeviceKey]),
// "aws_secret_access_key", "aws_session_token" and "identity_id" (the rest
// of an identity pool's credentials).
//
// A Store that serializes tokens keeps only the extras it is told to keep:
// give it these (filestore's Options.ExtraKeys, redisstore's
// Options.Extras), or after a restart the user-pool token lacks its ID token
// until its next refresh and the AWS credentials lack their secret until
// theirs. The credentials are secrets: use an encrypted store.
func ExtraKeys() []string {
	return []string{idTokenExtra, usernameExtra, deviceKeyExtra, secretKeyExtra, sessionTokenExtra, identityIDExtra}
}
