package bench

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper/bench/report"
	"github.com/tokenkeeper/tokenkeeper/bench/sim"
)

var (
	update = flag.Bool("update", false, "run the full comparison and rewrite docs/benchmarks.md, docs/bench/ and bench/README-headline.md")
	seeds  = flag.Int("seeds", 10, "seeds (runs) per trace")
	out    = flag.String("out", "..", "repository root to write under")
	quick  = flag.Bool("quick", false, "short traces and a small herd: checks the pipeline, not for publishing")
)

func progress(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, a...)...)
}

// TestCompare runs the whole comparison and writes the documents. It runs
// only with -update; see cmd/compare.
func TestCompare(t *testing.T) {
	if !*update {
		t.Skip("regenerate with: cd bench && go run ./cmd/compare")
	}
	contenders := sim.Contenders()
	res := &report.Results{
		Date:        time.Now().UTC().Format("2006-01-02"),
		Command:     "cd bench && go run ./cmd/compare",
		Environment: environment(),
		Libraries:   libraries(contenders),
	}
	userDays, serviceDays, rate := 7, 3, 2.0
	herd := sim.DefaultHerd(1)
	if *quick {
		userDays, serviceDays = 2, 2
		herd.Tokens, herd.Duration = 50, 90*time.Minute
	}
	for i := range *seeds {
		res.Seeds = append(res.Seeds, uint64(i+1))
	}

	// 1. Traces.
	type traceSet struct {
		name   string
		traces []*sim.Trace
		runs   map[string][]*sim.TraceRun
	}
	sets := []*traceSet{{name: "user"}, {name: "service"}}
	for _, seed := range res.Seeds {
		sets[0].traces = append(sets[0].traces, sim.UserTrace(seed, userDays))
		sets[1].traces = append(sets[1].traces, sim.ServiceTrace(seed, serviceDays, rate))
	}
	variants := sim.TokenKeeperVariants()
	var mu sync.Mutex
	t.Run("traces", func(t *testing.T) {
		for _, c := range append(append([]sim.Contender(nil), contenders...), variants...) {
			t.Run(c.Name, func(t *testing.T) {
				t.Parallel()
				for _, set := range sets {
					for i, tr := range set.traces {
						start := time.Now()
						run := sim.RunTrace(t, tr, c)
						progress("%-8s seed %d  %-36s %v", set.name, res.Seeds[i], c.Name, time.Since(start).Round(time.Millisecond))
						mu.Lock()
						if set.runs == nil {
							set.runs = map[string][]*sim.TraceRun{}
						}
						set.runs[c.Name] = append(set.runs[c.Name], run)
						mu.Unlock()
					}
				}
			})
		}
	})
	if t.Failed() {
		t.FailNow()
	}
	for _, set := range sets {
		tr0 := set.traces[0]
		tres := report.TraceResult{
			Name: tr0.Name, Title: tr0.Title, Description: tr0.Description, Days: tr0.Days,
			Runs: len(set.traces), Outages: tr0.IdP.Outages,
		}
		for _, tr := range set.traces {
			tres.Requests += len(tr.Requests)
			tres.Sessions += len(tr.Sessions)
		}
		tres.Requests /= len(set.traces)
		tres.Sessions /= len(set.traces)
		var first []*sim.TraceRun
		for _, c := range contenders {
			tres.Summaries = append(tres.Summaries, sim.Summarize(set.traces, set.runs[c.Name]))
			first = append(first, set.runs[c.Name][0])
		}
		res.Traces = append(res.Traces, tres)
		for i, c := range append([]sim.Contender{contenders[0]}, variants...) {
			if len(res.Variants) <= i {
				res.Variants = append(res.Variants, report.Variant{Name: c.Name, Config: c.Config})
			}
			res.Variants[i].Summaries = append(res.Variants[i].Summaries, sim.Summarize(set.traces, set.runs[c.Name]))
		}
		// Pictures: a normal day (Wednesday) and the first outage's day.
		days := []int{2}
		if len(tr0.IdP.Outages) > 0 {
			days = append([]int{int(tr0.IdP.Outages[0].Start / (24 * time.Hour))}, days...)
		}
		for _, d := range days {
			if d >= tr0.Days {
				continue
			}
			title := fmt.Sprintf("%s, %s (seed %d)", tr0.Title, weekday(d), res.Seeds[0])
			for _, o := range tr0.IdP.Outages {
				if int(o.Start/(24*time.Hour)) == d {
					title += ", with an outage"
				}
			}
			res.Timelines = append(res.Timelines, report.Timeline{
				Trace: tr0.Name, Title: title, Day: d, Sessions: tr0.Sessions,
				Requests: tr0.Requests, Outages: tr0.IdP.Outages, Runs: first,
			})
		}
	}

	// 2. Herd (virtual time).
	herdContenders := append([]sim.Contender{contenders[0], sim.TokenKeeper("idp")}, contenders[1:]...)
	res.HerdConfig = report.HerdInfo{Tokens: herd.Tokens, EveryMs: sim.Dur(herd.Every), DurationMs: sim.Dur(herd.Duration)}
	for _, c := range herdContenders {
		start := time.Now()
		res.Herd = append(res.Herd, sim.RunHerd(t, herd, c))
		progress("herd     %-44s %v", c.Name, time.Since(start).Round(time.Millisecond))
	}

	// 3. Stampede (real time).
	res.StampedeConfig = sim.DefaultStampede
	for _, c := range contenders {
		r, err := sim.RunStampede(sim.DefaultStampede, c)
		if err != nil {
			t.Fatalf("stampede %s: %v", c.Name, err)
		}
		res.Stampede = append(res.Stampede, r)
		progress("stampede %-44s %.1f calls per expiry", c.Name, r.CallsPer)
	}

	// 4. Hot path (real time), last, with nothing else running.
	for _, c := range contenders {
		h := report.HotResult{Library: c.Name}
		s := best(func(b *testing.B) { hotSerial(b, c) })
		p := best(func(b *testing.B) { hotParallel(b, c) })
		if s.N == 0 || p.N == 0 {
			t.Fatalf("hot path %s: benchmark failed", c.Name)
		}
		h.SerialNs, h.SerialAllocs, h.SerialBytes = float64(s.T.Nanoseconds())/float64(s.N), s.AllocsPerOp(), s.AllocedBytesPerOp()
		h.ParallelNs, h.ParallelAllocs, h.ParallelBytes = float64(p.T.Nanoseconds())/float64(p.N), p.AllocsPerOp(), p.AllocedBytesPerOp()
		res.HotPath = append(res.HotPath, h)
		progress("hot path %-44s %.1f ns serial, %.1f ns parallel", c.Name, h.SerialNs, h.ParallelNs)
	}

	// 5. Documents.
	root := *out
	docs := filepath.Join(root, "docs")
	img := filepath.Join(docs, report.ImgDir)
	if err := os.MkdirAll(img, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(path string, b []byte) {
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		progress("wrote %s", path)
	}
	for name, b := range report.Pictures(res) {
		write(filepath.Join(img, name), b)
	}
	if err := report.WriteJSON(filepath.Join(img, "results.json"), res); err != nil {
		t.Fatal(err)
	}
	progress("wrote %s", filepath.Join(img, "results.json"))
	write(filepath.Join(docs, "benchmarks.md"), report.Markdown(res))
	write(filepath.Join(root, "bench", "README-headline.md"), report.Headline(res))
}

func weekday(d int) string {
	return [...]string{"Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"}[d%7]
}

func environment() report.Environment {
	env := report.Environment{GoVersion: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH, CPUs: runtime.GOMAXPROCS(0), CPU: "unknown CPU"}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				env.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	return env
}

// libraries describes the contenders, with the versions bench/go.mod
// requires.
func libraries(cs []sim.Contender) []report.Library {
	versions := map[string]string{}
	if b, err := os.ReadFile("go.mod"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(strings.TrimPrefix(strings.TrimSpace(line), "require "))
			if len(f) >= 2 && strings.HasPrefix(f[1], "v") {
				versions[f[0]] = f[1]
			}
		}
	}
	var out []report.Library
	for _, c := range cs {
		v := versions[c.Module]
		switch {
		case strings.HasPrefix(c.Module, "github.com/tokenkeeper/tokenkeeper"):
			v = "this repository"
		case v == "":
			v = "-"
		}
		out = append(out, report.Library{Name: c.Name, Module: c.Module, Version: v, Config: c.Config})
	}
	return out
}

// best runs a benchmark three times and keeps the fastest run.
func best(f func(b *testing.B)) testing.BenchmarkResult {
	var r testing.BenchmarkResult
	for range 3 {
		x := testing.Benchmark(f)
		if x.N == 0 {
			return x
		}
		if r.N == 0 || x.NsPerOp() < r.NsPerOp() || float64(x.T)/float64(x.N) < float64(r.T)/float64(r.N) {
			r = x
		}
	}
	return r
}

// hotSerial and hotParallel measure one call that finds a valid token.
func hotSerial(b *testing.B, c sim.Contender) {
	inst, closeFn, err := sim.HotInstance(c)
	if err != nil {
		b.Fatal(err)
	}
	defer closeFn()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := inst.Token(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

func hotParallel(b *testing.B, c sim.Contender) {
	inst, closeFn, err := sim.HotInstance(c)
	if err != nil {
		b.Fatal(err)
	}
	defer closeFn()
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := inst.Token(ctx); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkHotPath is the hot-path comparison as Go benchmarks.
func BenchmarkHotPath(b *testing.B) {
	for _, c := range sim.Contenders() {
		b.Run("serial/"+c.Name, func(b *testing.B) { hotSerial(b, c) })
		b.Run("parallel/"+c.Name, func(b *testing.B) { hotParallel(b, c) })
	}
}
