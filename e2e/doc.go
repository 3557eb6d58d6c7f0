// Package e2e holds tokenkeeper's end-to-end tests against a real OAuth2
// authorization server: Ory fosite, embedded in the test binary, with
// refresh-token rotation and reuse detection. It is a module of its own so
// that fosite never enters the library's module graph; the workspace file at
// the repository root makes `go test ./...` there run these tests too.
//
// The tests run in real time on loopback sockets with token lifetimes of a
// few seconds. The package has no non-test code.
package e2e
