package filestore_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/tokenkeeper/tokenkeeper/filestore"
	"golang.org/x/oauth2"
)

func Example() {
	dir, err := os.MkdirTemp("", "filestore-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "tokens.db")

	// In production: key, err := filestore.KeyFromFile("/etc/tokenkeeper/key")
	// (make one with: head -c 32 /dev/urandom | base64 > key; chmod 600 key).
	key := make([]byte, filestore.KeySize)
	for i := range key {
		key[i] = byte(i + 200)
	}
	st, err := filestore.Open(path, filestore.Options{Key: key})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	tok := &oauth2.Token{AccessToken: "at", RefreshToken: "rt", Expiry: time.Now().Add(time.Hour)}
	if err := st.Save(ctx, "api", tok); err != nil {
		panic(err)
	}
	st.Close()

	// Only the right key opens the file again.
	_, err = filestore.Open(path, filestore.Options{})
	fmt.Println(errors.Is(err, filestore.ErrKeyRequired))
	st, err = filestore.Open(path, filestore.Options{Key: key})
	if err != nil {
		panic(err)
	}
	defer st.Close()
	got, err := st.Load(ctx, "api")
	if err != nil {
		panic(err)
	}
	fmt.Println(got.RefreshToken, st.Encrypted())
	// Output:
	// true
	// rt true
}
