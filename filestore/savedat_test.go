package filestore

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"golang.org/x/oauth2"
)

var _ tokenkeeper.SavedAtLoader = (*Store)(nil)

func TestLoadSavedAt(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "tokens.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	before := time.Now().Add(-time.Second)
	if err := s.Save(ctx, "a", &oauth2.Token{AccessToken: "x", Expiry: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	tok, at, err := s.LoadSavedAt(ctx, "a")
	if err != nil || tok.AccessToken != "x" {
		t.Fatalf("LoadSavedAt: %v, %v", tok, err)
	}
	if at.Before(before) || at.After(time.Now().Add(time.Second)) {
		t.Errorf("saved at %v, want about now", at)
	}
	if _, _, err := s.LoadSavedAt(ctx, "missing"); err == nil {
		t.Error("missing name loaded")
	}
}
