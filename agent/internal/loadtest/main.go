// Command loadtest compares the agent's token endpoint with a bare net/http
// handler that writes the same JSON, under wrk, in one run.
//
//	go run ./agent/internal/loadtest -duration 10s -rounds 3
//
// It starts a keeper holding one token, the agent (with a bearer secret,
// as on TCP) and the bare handler, each on its own loopback port in this
// process, then runs `wrk -t2 -c32 --latency` against each in turn,
// alternating which goes first, and prints requests per second and p99
// latency per round, the medians, and the agent's ratio to the bare handler.
// Both servers receive the same Authorization header; the bare handler
// ignores it.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/agent"
	"golang.org/x/oauth2"
)

func main() {
	var (
		duration = flag.Duration("duration", 10*time.Second, "length of each wrk run")
		rounds   = flag.Int("rounds", 3, "rounds (each runs both servers)")
		threads  = flag.Int("t", 2, "wrk threads")
		conns    = flag.Int("c", 32, "wrk connections")
		wrk      = flag.String("wrk", "wrk", "wrk binary")
		serve    = flag.Bool("serve", false, "only start the servers and print their URLs (run wrk yourself)")
		profile  = flag.String("cpuprofile", "", "write a CPU profile of the agent's runs to this file")
	)
	flag.Parse()
	log.SetFlags(0)

	k, err := tokenkeeper.New(tokenkeeper.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer k.Close()
	src := tokenkeeper.SourceFunc(func(ctx context.Context, _ *oauth2.Token) (*oauth2.Token, error) {
		return token(), nil
	})
	if _, err := k.Add(tokenkeeper.TokenConfig{Name: "app", Source: src, Token: token()}); err != nil {
		log.Fatal(err)
	}
	var raw [32]byte
	rand.Read(raw[:])
	secret := hex.EncodeToString(raw[:])
	srv, err := agent.New(agent.Options{Keeper: k, Secret: secret, Version: "loadtest"})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()

	agentURL := start(srv.Handler()) + "/v1/tokens/app"
	// The bare handler answers with the agent's own JSON, fetched once.
	body := fetch(agentURL, secret)
	bare := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	})
	bareURL := start(bare) + "/v1/tokens/app"
	if string(fetch(bareURL, secret)) != string(body) {
		log.Fatal("the two servers disagree")
	}
	fmt.Printf("answer: %d bytes of JSON\n", len(body))
	if *serve {
		fmt.Printf("agent: %s\nbare:  %s\nheader: Authorization: Bearer %s\n", agentURL, bareURL, secret)
		select {}
	}

	type result struct{ rps, p99 []float64 }
	res := map[string]*result{"bare": {}, "agent": {}}
	targets := map[string]string{"bare": bareURL, "agent": agentURL}
	var ratios []float64
	for i := range *rounds {
		order := []string{"bare", "agent"}
		if i%2 == 1 {
			order = []string{"agent", "bare"}
		}
		got := map[string]float64{}
		for _, name := range order {
			args := []string{"-t" + strconv.Itoa(*threads), "-c" + strconv.Itoa(*conns),
				"-d" + strconv.Itoa(int(duration.Seconds())) + "s", "--latency",
				"-H", "Authorization: Bearer " + secret, targets[name]}
			if name == "agent" && *profile != "" && i == 0 {
				f, err := os.Create(*profile)
				if err != nil {
					log.Fatal(err)
				}
				pprof.StartCPUProfile(f)
			}
			out, err := exec.Command(*wrk, args...).CombinedOutput()
			if name == "agent" && *profile != "" && i == 0 {
				pprof.StopCPUProfile()
			}
			if err != nil {
				log.Fatalf("wrk: %v\n%s", err, out)
			}
			rps, p99, err := parseWrk(string(out))
			if err != nil {
				log.Fatalf("%v\n%s", err, out)
			}
			res[name].rps = append(res[name].rps, rps)
			res[name].p99 = append(res[name].p99, p99)
			got[name] = rps
			fmt.Printf("round %d %-5s %9.0f req/s  p99 %6.2f ms\n", i+1, name, rps, p99)
		}
		ratios = append(ratios, got["agent"]/got["bare"])
	}
	fmt.Printf("\ncommand: wrk -t%d -c%d -d%ds --latency -H 'Authorization: Bearer $SECRET' URL\n",
		*threads, *conns, int(duration.Seconds()))
	for _, name := range []string{"bare", "agent"} {
		fmt.Printf("median %-5s %9.0f req/s  p99 %6.2f ms\n", name, median(res[name].rps), median(res[name].p99))
	}
	fmt.Printf("agent / bare: %.2f (median of per-round ratios; goal >= 0.80)\n", median(ratios))
}

func token() *oauth2.Token {
	return (&oauth2.Token{
		AccessToken: "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJsb2FkdGVzdCIsImF1ZCI6ImFwaSJ9." + strings.Repeat("s", 342),
		TokenType:   "Bearer",
		Expiry:      time.Now().Add(time.Hour),
	}).WithExtra(map[string]any{"id_token": "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJsb2FkdGVzdCJ9." + strings.Repeat("i", 342)})
}

func start(h http.Handler) string {
	ln, err := agent.Listen("127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go (&http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}).Serve(ln)
	return "http://" + ln.Addr().String()
}

func fetch(url, secret string) []byte {
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		log.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return b
}

var (
	reRPS = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	reP99 = regexp.MustCompile(`\s99%\s+([0-9.]+)(us|ms|s)`)
)

// parseWrk reads requests/s and the p99 latency (ms) from wrk's output.
func parseWrk(out string) (rps, p99ms float64, err error) {
	m := reRPS.FindStringSubmatch(out)
	l := reP99.FindStringSubmatch(out)
	if m == nil || l == nil {
		return 0, 0, fmt.Errorf("cannot read wrk's output")
	}
	if strings.Contains(out, "Non-2xx") {
		return 0, 0, fmt.Errorf("wrk saw errors")
	}
	rps, _ = strconv.ParseFloat(m[1], 64)
	p99ms, _ = strconv.ParseFloat(l[1], 64)
	switch l[2] {
	case "us":
		p99ms /= 1000
	case "s":
		p99ms *= 1000
	}
	return rps, p99ms, nil
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}
