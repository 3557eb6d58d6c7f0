package redisstore_test

import (
	"context"
	"fmt"
	"log"

	"github.com/redis/go-redis/v9"
	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/redisstore"
	"golang.org/x/oauth2"
)

// Several replicas of a service share one token: each runs this, and the
// token is refreshed once per cycle by one of them. (Not run: it needs a
// Redis server.)
func Example() {
	rdb := redis.NewClient(&redis.Options{Addr: "localhost:6379"})
	defer rdb.Close()

	key := make([]byte, redisstore.KeySize) // in real life: from a secret file
	s, err := redisstore.New(rdb, redisstore.Options{Prefix: "myapp:", Key: key})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close() // after the keeper's Close (defers run last-in first-out)

	k, err := tokenkeeper.New(tokenkeeper.Config{Store: s})
	if err != nil {
		log.Fatal(err)
	}
	defer k.Close()
	if err := s.Attach(k); err != nil {
		log.Fatal(err)
	}

	var src tokenkeeper.Source = tokenkeeper.SourceFunc(func(ctx context.Context, cur *oauth2.Token) (*oauth2.Token, error) {
		return nil, fmt.Errorf("call the identity provider with %s's refresh token", "cur")
	})
	h, err := k.Add(tokenkeeper.TokenConfig{Name: "api", Source: s.Coordinate(src, "api")})
	if err != nil {
		log.Fatal(err)
	}
	tok, err := h.TokenContext(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	_ = tok
	fmt.Println("degraded:", s.Degraded())
}
