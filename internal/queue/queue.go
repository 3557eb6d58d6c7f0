// Package queue runs refresh jobs on a bounded pool of workers, most urgent
// first, with at most one queued job per key and a concurrency limit per group.
//
// A job is a key (one per token) in a group (one per identity provider). Push
// adds it, or raises the priority of the job already queued for that key.
// Workers take the highest-priority job (FIFO within a priority) whose group
// is below its limit; jobs of a saturated group wait without blocking other
// groups. The queue holds at most MaxQueued jobs; Push beyond that fails with
// ErrFull, and the caller decides (the keeper refreshes inline for a waiting
// caller and re-plans scheduled work).
//
// The run function is called on a worker goroutine with the key. A panic in it
// is recovered and counted; the worker goes on.
//
// # Model
//
// Each group keeps its queued jobs in a heap ordered by (priority, arrival).
// A group is ready when it has queued jobs and fewer running jobs than its
// limit; ready groups sit in a second heap ordered by their best job. A worker
// takes the best job of the best ready group, so picking, pushing and removing
// cost O(log n) whatever the number of queued jobs or saturated groups.
//
// Idle workers wait on a [sync.Cond], never on a mutex or a timer, so a queue
// inside a testing/synctest bubble lets the bubble become durably blocked.
// No lock is held while run is called.
package queue

import (
	"errors"
	"sync"
)

// Priority orders jobs; higher runs first.
type Priority uint8

const (
	Scheduled Priority = iota // planned background refresh
	Retry                     // retry after a failure
	Urgent                    // a caller waits, the server rejected the token, or a forced refresh
)

var (
	ErrFull   = errors.New("tokenkeeper: refresh queue is full")
	ErrClosed = errors.New("tokenkeeper: refresh queue is closed")
)

// Defaults for the zero fields of [Config].
const (
	DefaultWorkers    = 8
	DefaultMaxQueued  = 65536
	DefaultGroupLimit = 4
)

// Config configures a Queue. Zero (or negative) fields take the documented
// defaults.
type Config struct {
	// Workers is the number of worker goroutines. If zero, 8.
	Workers int
	// MaxQueued bounds the jobs waiting (not running). If zero, 65536.
	MaxQueued int
	// GroupLimit is the default number of jobs of one group that may run at
	// once. If zero, 4. [Queue.SetGroupLimit] overrides it per group.
	GroupLimit int
}

// Queue is the priority queue and its workers. Create with New; Close stops it.
// All methods are safe for concurrent use, including from inside run.
type Queue[K comparable] struct {
	run        func(K)
	maxQueued  int
	groupLimit int

	mu      sync.Mutex
	work    sync.Cond // signalled when a job may be ready for an idle worker, or on Close
	exited  sync.Cond // broadcast when a worker goroutine exits
	jobs    map[K]*job[K]
	groups  map[string]*group[K]
	ready   groupHeap[K] // groups with queued jobs and running < limit, best job first
	seq     uint64       // arrival counter: FIFO within a priority
	running int
	panics  uint64
	closed  bool

	idle        int                 // workers waiting on work
	live        int                 // worker goroutines not yet exited
	workerIDs   map[uint64]struct{} // goroutine ids of the workers, to detect Close from run
	selfClosing int                 // Close calls made from inside run, still waiting
}

// job is one queued job. It is owned by q.mu and forgotten once a worker takes it.
type job[K comparable] struct {
	key   K
	group *group[K]
	seq   uint64
	index int // position in group.jobs
	prio  Priority
}

// before reports whether j runs before o: higher priority, then earlier arrival.
func (j *job[K]) before(o *job[K]) bool {
	if j.prio != o.prio {
		return j.prio > o.prio
	}
	return j.seq < o.seq
}

// group is the per-group state. A group with no queued or running jobs and no
// limit of its own is deleted from q.groups.
type group[K comparable] struct {
	name    string
	jobs    jobHeap[K]
	running int
	limit   int // set by SetGroupLimit; 0 means the queue's default
	index   int // position in q.ready, or -1 if not ready
}

// New starts cfg.Workers workers that call run for each job. It panics if run
// is nil.
func New[K comparable](cfg Config, run func(K)) *Queue[K] {
	if run == nil {
		panic("queue: New with nil run")
	}
	q := &Queue[K]{
		run:        run,
		maxQueued:  orDefault(cfg.MaxQueued, DefaultMaxQueued),
		groupLimit: orDefault(cfg.GroupLimit, DefaultGroupLimit),
		jobs:       make(map[K]*job[K]),
		groups:     make(map[string]*group[K]),
		workerIDs:  make(map[uint64]struct{}),
	}
	q.work.L = &q.mu
	q.exited.L = &q.mu
	q.mu.Lock()
	for range orDefault(cfg.Workers, DefaultWorkers) {
		q.spawnLocked()
	}
	q.mu.Unlock()
	return q
}

func orDefault(n, def int) int {
	if n <= 0 {
		return def
	}
	return n
}

// Push queues key in group with priority p. If key is already queued, its
// priority is raised to p if higher (it keeps its place among jobs of that
// priority by arrival, and its group is unchanged) and Push returns
// added=false; this works even when the queue is full. A key whose job is
// running may be queued again. It fails with ErrFull when MaxQueued jobs are
// waiting, and with ErrClosed after Close; a failed Push changes nothing.
func (q *Queue[K]) Push(key K, group string, p Priority) (added bool, err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return false, ErrClosed
	}
	if j, ok := q.jobs[key]; ok {
		if p > j.prio {
			j.prio = p
			g := j.group
			g.jobs.up(j.index)
			if j.index == 0 && g.index >= 0 {
				q.ready.up(g.index)
			}
		}
		return false, nil
	}
	if len(q.jobs) >= q.maxQueued {
		return false, ErrFull
	}
	g := q.groupLocked(group)
	j := &job[K]{key: key, group: g, seq: q.seq, prio: p}
	q.seq++
	q.jobs[key] = j
	g.jobs.push(j)
	switch {
	case g.index >= 0:
		if j.index == 0 {
			q.ready.up(g.index)
		}
	case g.running < q.limitOf(g):
		q.ready.push(g)
	}
	if g.index >= 0 && q.idle > 0 {
		q.work.Signal()
	}
	return true, nil
}

// Remove drops key's queued job, if any, and reports whether there was one.
// A running job is not affected.
func (q *Queue[K]) Remove(key K) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	j, ok := q.jobs[key]
	if !ok {
		return false
	}
	delete(q.jobs, key)
	g := j.group
	g.jobs.remove(j.index)
	if g.index >= 0 {
		if len(g.jobs) == 0 {
			q.ready.remove(g.index)
		} else {
			q.ready.fix(g.index)
		}
	}
	q.forgetIfIdleLocked(g)
	return true
}

// SetGroupLimit sets how many jobs of group may run at once (n < 1 means 1).
// The limit stays for the life of the queue. Lowering it below the number of
// running jobs stops no job: the group takes no new job until it is below the
// new limit.
func (q *Queue[K]) SetGroupLimit(group string, n int) {
	n = max(n, 1)
	q.mu.Lock()
	defer q.mu.Unlock()
	g := q.groupLocked(group)
	g.limit = n
	q.updateReadyLocked(g)
	if g.index >= 0 && q.idle > 0 {
		q.work.Signal() // the worker that takes it wakes the next one if more are ready
	}
}

// Stats is a snapshot of the queue.
type Stats struct {
	Queued, Running int
	// Panics counts the calls of run that panicked.
	Panics uint64
}

// Stats returns a snapshot.
func (q *Queue[K]) Stats() Stats {
	q.mu.Lock()
	defer q.mu.Unlock()
	return Stats{Queued: len(q.jobs), Running: q.running, Panics: q.panics}
}

// Close stops accepting jobs, drops the queued ones, and waits for running
// jobs to return and for all worker goroutines to exit. It is idempotent, and
// safe to call concurrently.
//
// Close may be called from inside run: it then stops the queue in the same
// way but does not wait for the job that called it (nor for other jobs that
// are themselves inside Close); it returns once every other worker has
// exited, and the calling worker exits when run returns.
func (q *Queue[K]) Close() {
	id := goid()
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.closed {
		q.closed = true
		for _, g := range q.groups {
			g.jobs = nil
			g.index = -1
		}
		clear(q.ready)
		q.ready = nil
		q.jobs = make(map[K]*job[K])
		q.work.Broadcast()
	}
	if _, fromRun := q.workerIDs[id]; fromRun {
		q.selfClosing++
		for q.live > q.selfClosing {
			q.exited.Wait()
		}
		q.selfClosing--
		return
	}
	for q.live > 0 {
		q.exited.Wait()
	}
}

// spawnLocked starts one worker goroutine.
func (q *Queue[K]) spawnLocked() {
	q.live++
	go q.worker()
}

// worker takes jobs until the queue is closed. The slot of a finished job is
// returned under the same lock that takes the next one.
func (q *Queue[K]) worker() {
	id := goid()
	var cur *job[K]
	defer func() {
		if cur != nil {
			// run called runtime.Goexit: free its slot and replace this
			// worker, unless the queue is closed.
			q.mu.Lock()
			q.finishLocked(cur, false)
			q.exitLocked(id)
			if !q.closed {
				q.spawnLocked()
			}
			q.mu.Unlock()
		}
	}()
	q.mu.Lock()
	q.workerIDs[id] = struct{}{}
	for {
		cur = q.nextLocked()
		if cur == nil {
			break
		}
		q.mu.Unlock()
		panicked := q.call(cur.key)
		q.mu.Lock()
		q.finishLocked(cur, panicked)
	}
	q.exitLocked(id)
	q.mu.Unlock()
}

// call runs key with no lock held and recovers a panic.
func (q *Queue[K]) call(key K) (panicked bool) {
	panicked = true
	defer func() {
		if panicked {
			recover() // nil if run called runtime.Goexit, which goes on
		}
	}()
	q.run(key)
	return false
}

// finishLocked returns the slot of j, which has run, to its group.
func (q *Queue[K]) finishLocked(j *job[K], panicked bool) {
	if panicked {
		q.panics++
	}
	g := j.group
	g.running--
	q.running--
	q.updateReadyLocked(g)
	q.forgetIfIdleLocked(g)
}

func (q *Queue[K]) exitLocked(id uint64) {
	delete(q.workerIDs, id)
	q.live--
	q.exited.Broadcast()
}

// nextLocked waits for a job whose group is below its limit and marks it
// running. It returns nil once the queue is closed.
func (q *Queue[K]) nextLocked() *job[K] {
	for len(q.ready) == 0 {
		if q.closed {
			return nil
		}
		q.idle++
		q.work.Wait()
		q.idle--
	}
	g := q.ready[0]
	j := g.jobs.pop()
	delete(q.jobs, j.key)
	g.running++
	q.running++
	if len(g.jobs) == 0 || g.running >= q.limitOf(g) {
		q.ready.remove(0)
	} else {
		q.ready.fix(0)
	}
	if len(q.ready) > 0 && q.idle > 0 {
		// Pass the wake-up on: each worker that takes a job wakes one
		// more while ready jobs remain.
		q.work.Signal()
	}
	return j
}

// groupLocked returns the named group, creating it if needed.
func (q *Queue[K]) groupLocked(name string) *group[K] {
	g, ok := q.groups[name]
	if !ok {
		g = &group[K]{name: name, index: -1}
		q.groups[name] = g
	}
	return g
}

func (q *Queue[K]) limitOf(g *group[K]) int {
	if g.limit > 0 {
		return g.limit
	}
	return q.groupLimit
}

// updateReadyLocked puts g into, or takes it out of, the ready heap according
// to its queued jobs, running jobs and limit.
func (q *Queue[K]) updateReadyLocked(g *group[K]) {
	ready := len(g.jobs) > 0 && g.running < q.limitOf(g)
	switch {
	case ready && g.index < 0:
		q.ready.push(g)
	case !ready && g.index >= 0:
		q.ready.remove(g.index)
	}
}

// forgetIfIdleLocked deletes g when nothing refers to it any more, so that
// short-lived groups do not accumulate. Groups with their own limit stay.
func (q *Queue[K]) forgetIfIdleLocked(g *group[K]) {
	if len(g.jobs) == 0 && g.running == 0 && g.limit == 0 && q.groups[g.name] == g {
		delete(q.groups, g.name)
	}
}
