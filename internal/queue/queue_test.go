package queue

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// recorder is a run function that records the keys it is called with and
// blocks on the gate of a key, if the test set one.
type recorder struct {
	mu    sync.Mutex
	order []string
	gates map[string]chan struct{}
}

func newRecorder() *recorder {
	return &recorder{gates: make(map[string]chan struct{})}
}

// gate makes run(key) block until open(key) is called.
func (r *recorder) gate(keys ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, k := range keys {
		r.gates[k] = make(chan struct{})
	}
}

func (r *recorder) open(key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	close(r.gates[key])
	delete(r.gates, key)
}

func (r *recorder) run(key string) {
	r.mu.Lock()
	r.order = append(r.order, key)
	g := r.gates[key]
	r.mu.Unlock()
	if g != nil {
		<-g
	}
}

func (r *recorder) ran() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.order)
}

// op is one call in a scripted test: a Push, or a Remove if remove is set.
type op struct {
	remove bool
	key    string
	group  string
	prio   Priority
	want   bool  // added (Push) or found (Remove)
	err    error // Push's error
}

func push(key, group string, p Priority) op {
	return op{key: key, group: group, prio: p, want: true}
}

func dup(key, group string, p Priority) op {
	return op{key: key, group: group, prio: p}
}

func full(key, group string, p Priority) op {
	return op{key: key, group: group, prio: p, err: ErrFull}
}

func remove(key string, found bool) op {
	return op{remove: true, key: key, want: found}
}

func (o op) apply(t *testing.T, q *Queue[string]) {
	t.Helper()
	if o.remove {
		if got := q.Remove(o.key); got != o.want {
			t.Errorf("Remove(%q) = %v, want %v", o.key, got, o.want)
		}
		return
	}
	added, err := q.Push(o.key, o.group, o.prio)
	if added != o.want || !errors.Is(err, o.err) {
		t.Errorf("Push(%q, %q, %d) = %v, %v; want %v, %v", o.key, o.group, o.prio, added, err, o.want, o.err)
	}
}

// TestScript runs scripted pushes and removes while a single worker is held
// by a "gate" job, then releases it and checks what ran, in which order.
func TestScript(t *testing.T) {
	// 40 jobs over 5 groups with random priorities: the order must be by
	// priority, then by arrival, whatever the group.
	rng := rand.New(rand.NewPCG(1, 2))
	var randomOps []op
	var randomWant []string
	for i := range 40 {
		o := push(fmt.Sprint("k", i), fmt.Sprint("g", rng.IntN(5)), Priority(rng.IntN(3)))
		randomOps = append(randomOps, o)
	}
	for p := Urgent; ; p-- {
		for _, o := range randomOps {
			if o.prio == p {
				randomWant = append(randomWant, o.key)
			}
		}
		if p == Scheduled {
			break
		}
	}

	tests := []struct {
		name       string
		maxQueued  int
		ops        []op
		wantQueued int
		want       []string // keys run after the gate, in order
	}{
		{
			name: "priority",
			ops:  []op{push("s", "g", Scheduled), push("r", "g", Retry), push("u", "g", Urgent)},
			want: []string{"u", "r", "s"}, wantQueued: 3,
		},
		{
			name: "fifo within priority",
			ops:  []op{push("a", "g", Retry), push("b", "g", Retry), push("c", "g", Retry)},
			want: []string{"a", "b", "c"}, wantQueued: 3,
		},
		{
			name: "mixed",
			ops: []op{push("s1", "g", Scheduled), push("u1", "g", Urgent),
				push("s2", "g", Scheduled), push("u2", "g", Urgent)},
			want: []string{"u1", "u2", "s1", "s2"}, wantQueued: 4,
		},
		{
			name: "across groups",
			ops:  []op{push("a", "g1", Scheduled), push("b", "g2", Urgent), push("c", "g1", Urgent), push("d", "g3", Retry)},
			want: []string{"b", "c", "d", "a"}, wantQueued: 4,
		},
		{
			name: "duplicate keeps place",
			ops:  []op{push("a", "g", Retry), push("b", "g", Retry), dup("a", "g", Retry), dup("a", "g", Scheduled)},
			want: []string{"a", "b"}, wantQueued: 2,
		},
		{
			name: "raise keeps arrival",
			ops: []op{push("u1", "g", Urgent), push("a", "g", Scheduled), push("u2", "g", Urgent),
				push("s", "g", Scheduled), dup("a", "other", Urgent)},
			want: []string{"u1", "a", "u2", "s"}, wantQueued: 4,
		},
		{
			name: "raise moves group ahead",
			ops: []op{push("a", "g1", Retry), push("b", "g2", Scheduled), push("c", "g2", Scheduled),
				dup("c", "g2", Urgent)},
			want: []string{"c", "a", "b"}, wantQueued: 3,
		},
		{
			name: "raise below the top of the heap",
			ops: []op{push("a", "g", Urgent), push("b", "g", Scheduled), push("c", "g", Scheduled),
				push("d", "g", Scheduled), dup("d", "g", Retry)},
			want: []string{"a", "d", "b", "c"}, wantQueued: 4,
		},
		{
			name: "running key queued again",
			ops:  []op{push("gate", "gate", Scheduled), dup("gate", "gate", Urgent)},
			want: []string{"gate"}, wantQueued: 1,
		},
		{
			name: "remove",
			ops: []op{push("a", "g", Scheduled), push("b", "g", Urgent), push("c", "g2", Retry),
				push("d", "g", Retry), push("e", "g", Scheduled),
				remove("b", true), remove("b", false), remove("gate", false), remove("nope", false),
				remove("e", true), remove("c", true)},
			want: []string{"d", "a"}, wantQueued: 2,
		},
		{
			name: "remove then push again",
			ops:  []op{push("a", "g", Urgent), push("b", "g", Scheduled), remove("a", true), push("a", "g", Scheduled)},
			want: []string{"b", "a"}, wantQueued: 2,
		},
		{
			name:      "full",
			maxQueued: 3,
			ops: []op{push("a", "g", Scheduled), push("b", "g", Scheduled), push("c", "g2", Scheduled),
				full("d", "g", Urgent), full("e", "new", Scheduled),
				dup("c", "g2", Urgent), dup("a", "g", Scheduled), // raising still works when full
				remove("b", true), push("d", "g", Retry), full("e", "g", Urgent)},
			want: []string{"c", "d", "a"}, wantQueued: 3,
		},
		{
			name:      "running jobs do not count",
			maxQueued: 1,
			ops: []op{push("a", "g", Scheduled), full("b", "g", Scheduled), full("gate", "gate", Retry),
				remove("a", true), push("gate", "gate", Retry)},
			want: []string{"gate"}, wantQueued: 1,
		},
		{
			name: "random",
			ops:  randomOps,
			want: randomWant, wantQueued: len(randomOps),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				rec := newRecorder()
				rec.gate("gate")
				q := New(Config{Workers: 1, MaxQueued: tt.maxQueued}, rec.run)
				defer q.Close()
				if _, err := q.Push("gate", "gate", Urgent); err != nil {
					t.Fatal(err)
				}
				synctest.Wait()
				for _, o := range tt.ops {
					o.apply(t, q)
					checkInvariants(t, q)
				}
				if diff := cmp.Diff(Stats{Queued: tt.wantQueued, Running: 1}, q.Stats()); diff != "" {
					t.Errorf("Stats before release (-want +got):\n%s", diff)
				}
				rec.open("gate")
				synctest.Wait()
				if diff := cmp.Diff(append([]string{"gate"}, tt.want...), rec.ran()); diff != "" {
					t.Errorf("run order (-want +got):\n%s", diff)
				}
				if diff := cmp.Diff(Stats{}, q.Stats()); diff != "" {
					t.Errorf("Stats after (-want +got):\n%s", diff)
				}
			})
		})
	}
}

// limitRun is a run function that counts running jobs per group (the key's
// prefix before '/') and their maximum, and blocks until release receives.
type limitRun struct {
	release          chan struct{}
	running, maximum map[string]*atomic.Int32
}

func newLimitRun(groups ...string) *limitRun {
	l := &limitRun{
		release: make(chan struct{}),
		running: make(map[string]*atomic.Int32),
		maximum: make(map[string]*atomic.Int32),
	}
	for _, g := range groups {
		l.running[g] = new(atomic.Int32)
		l.maximum[g] = new(atomic.Int32)
	}
	return l
}

func (l *limitRun) run(key string) {
	g, _, _ := cutSlash(key)
	n := l.running[g].Add(1)
	for m := l.maximum[g].Load(); n > m && !l.maximum[g].CompareAndSwap(m, n); m = l.maximum[g].Load() {
	}
	<-l.release
	l.running[g].Add(-1)
}

func cutSlash(s string) (before, after string, ok bool) {
	for i := range len(s) {
		if s[i] == '/' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

func (l *limitRun) counts(m map[string]*atomic.Int32) map[string]int {
	out := make(map[string]int)
	for g, n := range m {
		out[g] = int(n.Load())
	}
	return out
}

func TestGroupLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newLimitRun("a", "b", "c")
		q := New(Config{Workers: 16, GroupLimit: 3}, l.run)
		defer q.Close()
		q.SetGroupLimit("a", 2)
		for i := range 10 {
			for _, g := range []string{"a", "b", "c"} {
				if _, err := q.Push(fmt.Sprintf("%s/%d", g, i), g, Priority(i%3)); err != nil {
					t.Fatal(err)
				}
			}
		}
		limits := map[string]int{"a": 2, "b": 3, "c": 3}
		synctest.Wait()
		if diff := cmp.Diff(limits, l.counts(l.running)); diff != "" {
			t.Errorf("running per group (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(Stats{Queued: 22, Running: 8}, q.Stats()); diff != "" {
			t.Errorf("Stats (-want +got):\n%s", diff)
		}
		for range 30 {
			l.release <- struct{}{}
			synctest.Wait()
			checkInvariants(t, q)
		}
		if diff := cmp.Diff(limits, l.counts(l.maximum)); diff != "" {
			t.Errorf("maximum running per group (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(Stats{}, q.Stats()); diff != "" {
			t.Errorf("Stats (-want +got):\n%s", diff)
		}
	})
}

// TestSaturatedGroup checks that jobs of a group at its limit, even urgent
// ones, do not hold back the jobs of other groups.
func TestSaturatedGroup(t *testing.T) {
	// Workers woken together start in no set order: compare sets.
	asSet := cmpopts.SortSlices(func(a, b string) bool { return a < b })
	synctest.Test(t, func(t *testing.T) {
		rec := newRecorder()
		keys := []string{"slow1", "slow2", "slow3", "fast1", "fast2", "fast3"}
		rec.gate(keys...)
		q := New(Config{Workers: 4}, rec.run)
		defer q.Close()
		q.SetGroupLimit("slow", 1)
		for _, k := range keys[:3] {
			q.Push(k, "slow", Urgent)
		}
		for _, k := range keys[3:] {
			q.Push(k, "fast", Scheduled)
		}
		synctest.Wait()
		want := []string{"slow1", "fast1", "fast2", "fast3"}
		if diff := cmp.Diff(want, rec.ran(), asSet); diff != "" {
			t.Errorf("running (-want +got):\n%s", diff)
		}
		rec.open("fast1") // a free worker, but slow is still saturated
		synctest.Wait()
		if diff := cmp.Diff(want, rec.ran(), asSet); diff != "" {
			t.Errorf("after fast1 (-want +got):\n%s", diff)
		}
		rec.open("slow1")
		synctest.Wait()
		want = append(want, "slow2")
		if diff := cmp.Diff(want, rec.ran(), asSet); diff != "" {
			t.Errorf("after slow1 (-want +got):\n%s", diff)
		}
		for _, k := range []string{"slow2", "slow3", "fast2", "fast3"} {
			rec.open(k)
		}
		synctest.Wait()
		if diff := cmp.Diff(append(want, "slow3"), rec.ran(), asSet); diff != "" {
			t.Errorf("at the end (-want +got):\n%s", diff)
		}
	})
}

func TestSetGroupLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newLimitRun("g", "x")
		q := New(Config{Workers: 8}, l.run)
		defer q.Close()
		stats := func(step string, want Stats) {
			t.Helper()
			synctest.Wait()
			checkInvariants(t, q)
			if diff := cmp.Diff(want, q.Stats()); diff != "" {
				t.Errorf("%s: Stats (-want +got):\n%s", step, diff)
			}
		}
		q.SetGroupLimit("g", 1)
		for i := range 5 {
			q.Push(fmt.Sprint("g/", i), "g", Scheduled)
		}
		stats("limit 1", Stats{Queued: 4, Running: 1})
		q.SetGroupLimit("g", 3)
		stats("raised to 3", Stats{Queued: 2, Running: 3})
		q.SetGroupLimit("g", 0) // means 1; running jobs are not stopped
		stats("lowered to 1", Stats{Queued: 2, Running: 3})
		l.release <- struct{}{}
		stats("2 running", Stats{Queued: 2, Running: 2})
		l.release <- struct{}{}
		stats("1 running", Stats{Queued: 2, Running: 1})
		l.release <- struct{}{}
		stats("next starts", Stats{Queued: 1, Running: 1})
		l.release <- struct{}{}
		l.release <- struct{}{}
		stats("done", Stats{})

		// A limit stays after its group has gone idle, also for a group
		// that had no jobs when it was set.
		q.SetGroupLimit("x", -5)
		stats("set before use", Stats{})
		for range 2 {
			q.Push("x/1", "x", Urgent)
			q.Push("x/2", "x", Urgent)
			stats("x limited", Stats{Queued: 1, Running: 1})
			l.release <- struct{}{}
			l.release <- struct{}{}
			stats("x done", Stats{})
		}
		if diff := cmp.Diff(map[string]int{"g": 3, "x": 1}, l.counts(l.maximum)); diff != "" {
			t.Errorf("maximum running (-want +got):\n%s", diff)
		}
	})
}

// TestLowerLimitOfReadyGroup lowers the limit of a group that has queued
// jobs waiting only for a free worker: the worker that frees up must not take
// them.
func TestLowerLimitOfReadyGroup(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := newRecorder()
		rec.gate("hold", "g1", "other")
		q := New(Config{Workers: 2}, rec.run)
		defer q.Close()
		q.Push("hold", "hold", Urgent)
		q.Push("g1", "g", Urgent)
		q.Push("g2", "g", Retry)
		q.Push("other", "other", Scheduled)
		synctest.Wait()
		q.SetGroupLimit("g", 1)
		checkInvariants(t, q)
		rec.open("hold")
		synctest.Wait()
		want := []string{"hold", "g1", "other"}
		if diff := cmp.Diff(want, rec.ran()); diff != "" {
			t.Errorf("run (-want +got):\n%s", diff)
		}
		rec.open("g1")
		rec.open("other")
		synctest.Wait()
		if diff := cmp.Diff(append(want, "g2"), rec.ran()); diff != "" {
			t.Errorf("run (-want +got):\n%s", diff)
		}
	})
}

func TestPanic(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := newRecorder()
		run := func(key string) {
			rec.run(key)
			switch key {
			case "panic":
				panic("boom")
			case "panic-nil":
				panic(nil)
			case "panic-error":
				panic(errors.New("boom"))
			}
		}
		q := New(Config{Workers: 2}, run)
		defer q.Close()
		q.SetGroupLimit("g", 1) // a slot lost to a panic would stall the group
		keys := []string{"panic", "ok1", "panic-nil", "ok2", "panic-error", "ok3"}
		for _, k := range keys {
			q.Push(k, "g", Scheduled)
		}
		synctest.Wait()
		if diff := cmp.Diff(keys, rec.ran()); diff != "" {
			t.Errorf("run order (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(Stats{Panics: 3}, q.Stats()); diff != "" {
			t.Errorf("Stats (-want +got):\n%s", diff)
		}
		// Both workers are still there.
		rec.gate("a", "b")
		q.Push("a", "a", Scheduled)
		q.Push("b", "b", Scheduled)
		synctest.Wait()
		if diff := cmp.Diff(Stats{Running: 2, Panics: 3}, q.Stats()); diff != "" {
			t.Errorf("Stats (-want +got):\n%s", diff)
		}
		rec.open("a")
		rec.open("b")
	})
}

// TestGoexit checks that a run calling runtime.Goexit (t.FailNow in a test
// helper, say) frees its slot and its worker is replaced.
func TestGoexit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := newRecorder()
		run := func(key string) {
			rec.run(key)
			if strings.HasPrefix(key, "exit") {
				runtime.Goexit()
			}
		}
		q := New(Config{Workers: 2, GroupLimit: 1}, run)
		defer q.Close()
		keys := []string{"exit1", "exit2", "ok1", "exit3", "ok2"}
		for _, k := range keys {
			q.Push(k, "g", Scheduled)
		}
		synctest.Wait()
		if diff := cmp.Diff(keys, rec.ran()); diff != "" {
			t.Errorf("run order (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(Stats{}, q.Stats()); diff != "" {
			t.Errorf("Stats (-want +got):\n%s", diff)
		}
		rec.gate("a", "b", "c")
		for _, k := range []string{"a", "b", "c"} {
			q.Push(k, k, Scheduled)
		}
		synctest.Wait()
		if diff := cmp.Diff(Stats{Queued: 1, Running: 2}, q.Stats()); diff != "" {
			t.Errorf("Stats with the pool busy (-want +got):\n%s", diff)
		}
		for _, k := range []string{"a", "b", "c"} {
			rec.open(k)
		}
	})
}

// TestGoexitWhileClosing checks that a worker that leaves through Goexit
// after Close is not replaced.
func TestGoexitWhileClosing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gate := make(chan struct{})
		q := New(Config{Workers: 1}, func(string) {
			<-gate
			runtime.Goexit()
		})
		q.Push("a", "g", Scheduled)
		synctest.Wait()
		done := make(chan struct{})
		go func() {
			q.Close()
			close(done)
		}()
		synctest.Wait()
		close(gate)
		<-done
		if got := q.live; got != 0 {
			t.Errorf("live workers after Close = %d, want 0", got)
		}
	})
}

func TestClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := newRecorder()
		rec.gate("a", "b")
		q := New(Config{Workers: 2}, rec.run)
		for _, k := range []string{"a", "b", "c", "d"} {
			q.Push(k, "g", Scheduled)
		}
		synctest.Wait()
		var closed [2]atomic.Bool
		for i := range closed {
			go func() {
				q.Close()
				closed[i].Store(true)
			}()
		}
		synctest.Wait()
		if closed[0].Load() || closed[1].Load() {
			t.Fatal("Close returned while jobs were running")
		}
		if diff := cmp.Diff(Stats{Running: 2}, q.Stats()); diff != "" {
			t.Errorf("Stats while closing (-want +got):\n%s", diff)
		}
		if added, err := q.Push("e", "g", Urgent); added || !errors.Is(err, ErrClosed) {
			t.Errorf("Push after Close = %v, %v; want false, ErrClosed", added, err)
		}
		if added, err := q.Push("a", "g", Urgent); added || !errors.Is(err, ErrClosed) {
			t.Errorf("Push of a running key after Close = %v, %v; want false, ErrClosed", added, err)
		}
		if q.Remove("c") {
			t.Error("Remove after Close found a dropped job")
		}
		q.SetGroupLimit("g", 10) // harmless after Close
		rec.open("a")
		synctest.Wait()
		if closed[0].Load() || closed[1].Load() {
			t.Fatal("Close returned while a job was running")
		}
		rec.open("b")
		synctest.Wait()
		if !closed[0].Load() || !closed[1].Load() {
			t.Fatal("Close did not return after the jobs did")
		}
		q.Close() // idempotent
		if diff := cmp.Diff([]string{"a", "b"}, rec.ran()); diff != "" {
			t.Errorf("run (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(Stats{}, q.Stats()); diff != "" {
			t.Errorf("Stats (-want +got):\n%s", diff)
		}
	})
}

// TestCloseNoLeak closes a queue in real time and checks with goleak that no
// goroutine remains.
func TestCloseNoLeak(t *testing.T) {
	defer goleak.VerifyNone(t)
	release := make(chan struct{})
	started := make(chan string, 4)
	q := New(Config{Workers: 3}, func(key string) {
		started <- key
		<-release
	})
	for _, k := range []string{"a", "b", "c", "d"} {
		q.Push(k, k, Scheduled)
	}
	for range 3 {
		<-started
	}
	closed := make(chan struct{})
	go func() {
		q.Close()
		close(closed)
	}()
	close(release)
	<-closed
	q.Close()
}

func TestCloseFromRun(t *testing.T) {
	tests := []struct {
		name    string
		closers []string // jobs that call Close
		others  []string // jobs that block until released after Close was called
		outside bool     // Close is also called from outside
	}{
		{name: "alone", closers: []string{"c1"}},
		{name: "with another job", closers: []string{"c1"}, others: []string{"o1"}},
		{name: "two closers", closers: []string{"c1", "c2"}, others: []string{"o1"}},
		{name: "and outside", closers: []string{"c1", "c2"}, others: []string{"o1", "o2"}, outside: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var q *Queue[string]
				closeNow := make(chan struct{})
				release := make(chan struct{})
				var returned atomic.Int32
				var neverRan atomic.Bool
				run := func(key string) {
					switch {
					case key == "never":
						neverRan.Store(true)
					case slices.Contains(tt.closers, key):
						<-closeNow
						q.Close()
						returned.Add(1)
					default:
						<-release
					}
				}
				q = New(Config{Workers: len(tt.closers) + len(tt.others)}, run)
				for _, k := range append(slices.Clone(tt.others), tt.closers...) {
					q.Push(k, k, Urgent)
				}
				q.Push("never", "never", Scheduled) // all workers are busy: dropped by Close
				synctest.Wait()
				outsideDone := make(chan struct{})
				if tt.outside {
					go func() {
						q.Close()
						close(outsideDone)
					}()
				}
				close(closeNow)
				synctest.Wait()
				if got := returned.Load(); len(tt.others) > 0 && got != 0 {
					t.Errorf("%d Close calls from run returned while other jobs were running", got)
				}
				close(release)
				synctest.Wait()
				if got, want := int(returned.Load()), len(tt.closers); got != want {
					t.Errorf("%d Close calls from run returned, want %d", got, want)
				}
				if tt.outside {
					<-outsideDone
				}
				q.Close()
				if neverRan.Load() {
					t.Error("a job queued at Close ran")
				}
				if diff := cmp.Diff(Stats{}, q.Stats()); diff != "" {
					t.Errorf("Stats (-want +got):\n%s", diff)
				}
			})
		})
	}
}

func TestDefaults(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		q := New(Config{}, func(int) { <-release })
		defer q.Close() // after close(release)
		if q.maxQueued != DefaultMaxQueued || q.groupLimit != DefaultGroupLimit {
			t.Errorf("maxQueued, groupLimit = %d, %d; want %d, %d", q.maxQueued, q.groupLimit, DefaultMaxQueued, DefaultGroupLimit)
		}
		for i := range 5 {
			q.Push(i, "one", Scheduled)
		}
		synctest.Wait()
		if diff := cmp.Diff(Stats{Queued: 1, Running: DefaultGroupLimit}, q.Stats()); diff != "" {
			t.Errorf("one group (-want +got):\n%s", diff)
		}
		for i := range 10 {
			q.Push(100+i, fmt.Sprint(i), Scheduled)
		}
		synctest.Wait()
		if diff := cmp.Diff(Stats{Queued: 7, Running: DefaultWorkers}, q.Stats()); diff != "" {
			t.Errorf("many groups (-want +got):\n%s", diff)
		}
		for i := 0; ; i++ {
			_, err := q.Push(1000+i, "many", Scheduled)
			if err != nil {
				if !errors.Is(err, ErrFull) || q.Stats().Queued != DefaultMaxQueued {
					t.Errorf("Push failed with %v at %d queued, want ErrFull at %d", err, q.Stats().Queued, DefaultMaxQueued)
				}
				break
			}
		}
		close(release)
	})
}

func TestNewNilRun(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("New(nil run) did not panic")
		}
	}()
	New[string](Config{}, nil)
}

// TestManyJobs runs 10,000 jobs over 100 groups and checks each ran exactly
// once and no group state is left behind.
func TestManyJobs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n = 10000
		counts := make([]atomic.Int32, n)
		q := New(Config{}, func(k int) { counts[k].Add(1) })
		defer q.Close()
		rng := rand.New(rand.NewPCG(3, 4))
		for i := range n {
			if added, err := q.Push(i, fmt.Sprint("g", rng.IntN(100)), Priority(rng.IntN(3))); !added || err != nil {
				t.Fatalf("Push(%d) = %v, %v", i, added, err)
			}
		}
		synctest.Wait()
		for i := range counts {
			if c := counts[i].Load(); c != 1 {
				t.Errorf("job %d ran %d times", i, c)
			}
		}
		if diff := cmp.Diff(Stats{}, q.Stats()); diff != "" {
			t.Errorf("Stats (-want +got):\n%s", diff)
		}
		q.mu.Lock()
		if len(q.groups) != 0 {
			t.Errorf("%d groups left behind", len(q.groups))
		}
		q.mu.Unlock()
	})
}

// TestRandomOps applies random pushes, removes and limit changes while all
// workers are held, checking the heaps after each, then checks that exactly
// the jobs left queued run.
func TestRandomOps(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		var mu sync.Mutex
		ran := make(map[int]int)
		q := New(Config{Workers: 3}, func(k int) {
			if k < 0 {
				<-release
				return
			}
			mu.Lock()
			ran[k]++
			mu.Unlock()
		})
		defer q.Close()
		for i := range 3 {
			q.Push(-1-i, "hold", Urgent)
		}
		synctest.Wait()
		rng := rand.New(rand.NewPCG(5, 6))
		queued := make(map[int]bool)
		for range 5000 {
			k := rng.IntN(500)
			switch r := rng.IntN(10); {
			case r < 6:
				added, err := q.Push(k, fmt.Sprint("g", k%17), Priority(rng.IntN(3)))
				if err != nil || added == queued[k] {
					t.Fatalf("Push(%d) = %v, %v with queued=%v", k, added, err, queued[k])
				}
				queued[k] = true
			case r < 9:
				if got := q.Remove(k); got != queued[k] {
					t.Fatalf("Remove(%d) = %v, want %v", k, got, queued[k])
				}
				delete(queued, k)
			default:
				q.SetGroupLimit(fmt.Sprint("g", k%17), rng.IntN(4))
			}
			checkInvariants(t, q)
		}
		close(release)
		synctest.Wait()
		want := make(map[int]int)
		for k := range queued {
			want[k] = 1
		}
		if diff := cmp.Diff(want, ran); diff != "" {
			t.Errorf("jobs run (-want +got):\n%s", diff)
		}
	})
}

// checkInvariants checks the heaps, their indices and the ready set.
func checkInvariants[K comparable](t *testing.T, q *Queue[K]) {
	t.Helper()
	q.mu.Lock()
	defer q.mu.Unlock()
	total := 0
	for name, g := range q.groups {
		if g.name != name {
			t.Fatalf("group %q stored under %q", g.name, name)
		}
		total += len(g.jobs)
		for i, j := range g.jobs {
			if j.index != i || j.group != g || q.jobs[j.key] != j {
				t.Fatalf("group %q: job %v at %d has index %d", name, j.key, i, j.index)
			}
			if i > 0 && j.before(g.jobs[(i-1)/2]) {
				t.Fatalf("group %q: heap order broken at %d", name, i)
			}
		}
		ready := len(g.jobs) > 0 && g.running < q.limitOf(g)
		if ready != (g.index >= 0) || (ready && q.ready[g.index] != g) {
			t.Fatalf("group %q: ready=%v but index %d", name, ready, g.index)
		}
	}
	if total != len(q.jobs) {
		t.Fatalf("%d jobs in groups, %d in the map", total, len(q.jobs))
	}
	for i, g := range q.ready {
		if g.index != i || q.groups[g.name] != g {
			t.Fatalf("ready group %q at %d has index %d", g.name, i, g.index)
		}
		if i > 0 && q.ready.less(i, (i-1)/2) {
			t.Fatalf("ready heap order broken at %d", i)
		}
	}
}

// TestMemoryPerJob checks that a queued job costs well under 200 bytes.
func TestMemoryPerJob(t *testing.T) {
	const n = 20000
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("token-%d", i)
	}
	release := make(chan struct{})
	q := New(Config{Workers: 1}, func(string) { <-release })
	defer q.Close()
	defer close(release)
	q.Push("hold", "hold", Urgent)
	for q.Stats().Running == 0 {
		runtime.Gosched()
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i, k := range keys {
		if _, err := q.Push(k, fmt.Sprint("g", i%10), Priority(i%3)); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	perJob := float64(after.HeapAlloc-before.HeapAlloc) / n
	t.Logf("%.0f bytes per queued job", perJob)
	if perJob > 150 {
		t.Errorf("%.0f bytes per queued job, want at most 150", perJob)
	}
	runtime.KeepAlive(keys)
}

func TestGoid(t *testing.T) {
	ids := make(chan uint64, 2)
	for range 2 {
		go func() { ids <- goid() }()
	}
	a, b := <-ids, <-ids
	if a == 0 || b == 0 || a == b || goid() == 0 {
		t.Errorf("goid() = %d, %d in two goroutines", a, b)
	}
}
