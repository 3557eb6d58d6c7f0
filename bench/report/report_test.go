package report

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper/bench/sim"
)

// small runs two libraries on a two-day user trace and builds the results.
func small(t *testing.T) *Results {
	t.Helper()
	tr := sim.UserTrace(3, 2)
	cs := []sim.Contender{sim.TokenKeeper(""), sim.OAuth2Reuse(0)}
	r := &Results{Date: "2000-01-03", Environment: Environment{GoVersion: "go", CPUs: 2}, Seeds: []uint64{3}}
	tres := TraceResult{Name: tr.Name, Title: tr.Title, Days: tr.Days, Runs: 1, Outages: tr.IdP.Outages}
	var runs []*sim.TraceRun
	for _, c := range cs {
		run := sim.RunTrace(t, tr, c)
		runs = append(runs, run)
		tres.Summaries = append(tres.Summaries, sim.Summarize([]*sim.Trace{tr}, []*sim.TraceRun{run}))
		r.Libraries = append(r.Libraries, Library{Name: c.Name, Module: c.Module, Config: c.Config})
		r.HotPath = append(r.HotPath, HotResult{Library: c.Name, SerialNs: 10, ParallelNs: 5})
		r.Stampede = append(r.Stampede, sim.StampedeResult{Library: c.Name, Rounds: 1, CallsPer: 1})
		r.Herd = append(r.Herd, sim.HerdResult{Library: c.Name, Peak: 3})
	}
	r.Traces = append(r.Traces, tres)
	r.Timelines = append(r.Timelines, Timeline{Trace: tr.Name, Title: "Tuesday", Day: 1, Sessions: tr.Sessions,
		Requests: tr.Requests, Outages: tr.IdP.Outages, Runs: runs})
	return r
}

func wellFormed(t *testing.T, name string, b []byte) {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(b))
	for {
		_, err := d.Token()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatalf("%s is not well-formed XML: %v", name, err)
		}
	}
}

func TestDocuments(t *testing.T) {
	r := small(t)
	pics := Pictures(r)
	for _, name := range []string{"timeline-user-day1.svg", "bars-user.svg", "bars-herd.svg"} {
		b, ok := pics[name]
		if !ok {
			t.Fatalf("no picture %s (have %d)", name, len(pics))
		}
		wellFormed(t, name, b)
		if !bytes.Contains(b, []byte("tokenkeeper")) || !bytes.Contains(b, []byte("oauth2.ReuseTokenSource")) {
			t.Errorf("%s does not name both libraries", name)
		}
	}
	md := string(Markdown(r))
	for _, want := range []string{"## Headline", "## Methodology", "bench/timeline-user-day1.svg", "bench/bars-user.svg",
		"| **tokenkeeper** |", "| oauth2.ReuseTokenSource |", "cd bench && go run ./cmd/compare"} {
		if !strings.Contains(md, want) {
			t.Errorf("benchmarks.md lacks %q", want)
		}
	}
	head := string(Headline(r))
	if n := strings.Count(head, "\n| "); n != 3 { // header + 2 libraries
		t.Errorf("headline has %d table rows, want 3:\n%s", n, head)
	}

	path := filepath.Join(t.TempDir(), "r.json")
	if err := WriteJSON(path, r); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var back Results
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if got, want := back.Traces[0].Summaries[1].WaitMax, r.Traces[0].Summaries[1].WaitMax; time.Duration(got-want).Abs() > time.Microsecond {
		t.Errorf("wait_max_ms round trip: %v, want %v", time.Duration(got), time.Duration(want))
	}
}

func TestFormat(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{0, "0"}, {500 * time.Microsecond, "0.50 ms"}, {250 * time.Millisecond, "250 ms"},
		{2500 * time.Millisecond, "2.5 s"}, {90 * time.Second, "1m30s"}, {2*time.Hour + 5*time.Minute, "2h05m"},
	} {
		if got := fmtDur(tc.d); got != tc.want {
			t.Errorf("fmtDur(%v) = %q, want %q", tc.d, got, tc.want)
		}
	}
	for _, tc := range []struct {
		n, runs int
		want    string
	}{{0, 5, "0"}, {7, 2, "3.5"}, {1000, 10, "100"}, {123, 10, "12.3"}, {1, 3, "0.33"}} {
		if got := perRun(tc.n, tc.runs); got != tc.want {
			t.Errorf("perRun(%d, %d) = %q, want %q", tc.n, tc.runs, got, tc.want)
		}
	}
}
