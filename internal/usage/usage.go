// Package usage models how busy the application is, from the moments it
// asks for tokens (and any other activity it reports).
//
// A Model answers two questions for the planner:
//
//   - Is the application busy right now? [Model.LastActivity] gives the last
//     moment anything happened, so "idle for 30 s" is a subtraction.
//   - How busy is it usually at a given time? [Model.Predict] looks the time
//     up in two decayed histograms of active seconds per 5-minute slot: one
//     over the day (288 slots, learns within a day) and one over the week
//     (2016 slots, learns weekly rhythms).
//
// Recording is lock-free and almost free: [Model.Record] does real work at
// most once per second of wall time (activity is counted in active seconds,
// not in calls), and otherwise costs one atomic load and a compare. Finished
// slots are folded into the histograms by [Model.Roll], which the owner calls
// from a single goroutine (the keeper's clock); readers of the histograms take
// a mutex that Record never touches.
//
// All times are Unix nanoseconds of wall-clock time, supplied by the caller:
// the model never reads the clock itself.
package usage

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// SlotWidth is the width of one histogram slot.
const SlotWidth = slotMinutes * time.Minute

const (
	slotMinutes = 5                // SlotWidth in minutes
	slotSeconds = slotMinutes * 60 // SlotWidth in seconds: 300
	secondNanos = int64(time.Second)
	minuteNanos = int64(time.Minute)
	slotNanos   = int64(SlotWidth)

	ringMinutes = 24 * 60               // minutes kept by the ring: 1440
	ringSeconds = 3600                  // seconds kept by the second ring: one hour
	daySlots    = 24 * 60 / slotMinutes // 288
	weekSlots   = 7 * daySlots          // 2016

	// countBits is how many low bits of a ring bucket hold the count; the
	// bits above hold the absolute minute number (Unix minutes, signed).
	countBits = 8
	countMask = 1<<countBits - 1
	// maxCount caps a minute's count: a minute has 60 seconds, and a second
	// can be counted twice after a backward clock jump.
	maxCount = 60

	// jumpTolerance is how far (in seconds) Record's argument may step back
	// before it is taken for a wall-clock jump rather than a late caller.
	jumpTolerance = 10

	// noSecond marks "no Record yet"; no Unix second can take this value.
	noSecond = math.MinInt64

	defaultDayDecay  = 0.7
	defaultWeekDecay = 0.5
)

// Config tunes a Model. The zero value is usable.
type Config struct {
	// DayDecay is the weight the time-of-day histogram keeps of its old value
	// when a day's observation of a slot is folded in (new = old*DayDecay +
	// obs*(1-DayDecay)). If zero, 0.7 is used (an old day counts about half
	// after two days). Otherwise it must be in (0, 1].
	DayDecay float64
	// WeekDecay is the same for the time-of-week histogram. If zero, 0.5 is
	// used. Otherwise it must be in (0, 1].
	WeekDecay float64
	// Location is the time zone whose days and weeks the histograms follow.
	// If nil, time.Local is used.
	Location *time.Location
}

// Model is the activity model. Its zero value is not usable; call New.
// Record and LastActivity may be called from any goroutine; Roll from one
// goroutine at a time; Predict, Timeline and HasHistory from any goroutine.
//
// # Recording
//
// Activity is measured in active seconds: a second of wall time is active if
// Record was called with a time inside it, however often. The model keeps the
// last recorded second; a Record in that same second does nothing else. The
// first Record of a new second adds one to that minute's counter in a ring of
// 1440 per-minute counters (24 hours). Each ring bucket holds its absolute
// minute number next to the count in one atomic word, so a bucket that still
// holds an older day's minute is reclaimed with a CompareAndSwap and read as
// zero for any other minute.
//
// Two rare races can lose a second: a caller that read the clock just before
// a second boundary but calls Record after another caller has already
// recorded the next second (the late second is ignored), and a Record in the
// last moment of a slot that lands after Roll has folded that slot. Both cost
// at most a second or two of a 300-second slot.
//
// Record's argument may go backwards. A step back of up to 10 seconds is
// taken for a late caller and ignored (LastActivity keeps the later value).
// A larger step is taken for a wall-clock jump: the model restarts from the
// new time, so LastActivity moves back and seconds after it count again
// (capped at 60 per minute).
//
// # Histograms
//
// Roll folds each completed 5-minute slot into a time-of-day histogram (288
// slots) and a time-of-week histogram (2016 slots) of the slot's location
// (Config.Location). The observation is the fraction of active seconds,
// activeSeconds/300, and each histogram slot is an exponentially decayed
// average of its observations: the first observation sets it, later ones
// give new = old*decay + obs*(1-decay). A slot's local position is taken at
// its start; around daylight-saving changes a local slot may be observed
// twice or not at all that day.
type Model struct {
	_ [cacheLine]byte
	// sec is the latest recorded Unix second (noSecond before any Record).
	// It is what every Record loads, so it sits alone on its cache line(s)
	// and is written at most once per second.
	sec atomic.Int64
	_   [cacheLine - 8]byte

	last  atomic.Int64 // Unix ns of the latest Record, 0 before any
	first atomic.Int64 // Unix second of the first Record, noSecond before any

	// ring holds per-minute active seconds, indexed by Unix minute mod 1440;
	// see pack.
	ring [ringMinutes]atomic.Int64

	// secs holds, per Unix second mod ringSeconds, the latest active second
	// that fell there: second s was active if secs[s mod ringSeconds] == s.
	secs [ringSeconds]atomic.Int64

	// rolled is the slot of the latest Roll's now, for Roll's fast path.
	rolled atomic.Int64

	loc       *time.Location
	dayDecay  float64
	weekDecay float64

	mu      sync.RWMutex
	started bool   // Roll has been called
	next    int64  // first absolute slot (Unix ns / SlotWidth) not yet folded
	folded  uint64 // slots folded so far
	day     [daySlots]float64
	dayN    [daySlots]uint32 // observations per day slot (saturating)
	week    [weekSlots]float64
	weekN   [weekSlots]uint32 // observations per week slot (saturating)
}

// cacheLine is twice the common 64-byte line, because adjacent-line
// prefetchers make neighbouring lines behave as one.
const cacheLine = 128

// New returns a model that has seen no activity. It panics if a decay in cfg
// is neither zero nor in (0, 1].
func New(cfg Config) *Model {
	m := &Model{
		loc:       cfg.Location,
		dayDecay:  decayOrDefault("DayDecay", cfg.DayDecay, defaultDayDecay),
		weekDecay: decayOrDefault("WeekDecay", cfg.WeekDecay, defaultWeekDecay),
	}
	if m.loc == nil {
		m.loc = time.Local
	}
	m.sec.Store(noSecond)
	m.first.Store(noSecond)
	m.rolled.Store(math.MinInt64)
	return m
}

func decayOrDefault(name string, v, def float64) float64 {
	if v == 0 {
		return def
	}
	if !(v > 0 && v <= 1) { // also rejects NaN
		panic("usage: Config." + name + " must be zero or in (0, 1]")
	}
	return v
}

// Record notes activity at now (Unix nanoseconds). It is lock-free, does not
// allocate, and is cheap enough for every token fetch: within the second of
// the previous Record it is one atomic load and a compare. See [Model] for
// what happens when now goes backwards.
func (m *Model) Record(now int64) {
	sec := floorDiv(now, secondNanos)
	last := m.sec.Load()
	if sec == last {
		return
	}
	m.recordSecond(now, sec, last)
}

// recordSecond is Record's slow path, taken at most about once per second:
// it claims the transition of m.sec to sec and counts the second.
func (m *Model) recordSecond(now, sec, last int64) {
	for {
		if sec < last && sec >= last-jumpTolerance {
			return // a late caller: a later second is already recorded
		}
		if m.sec.CompareAndSwap(last, sec) {
			break
		}
		last = m.sec.Load()
		if last == sec {
			return // another caller recorded this second
		}
	}
	if last == noSecond {
		m.first.CompareAndSwap(noSecond, sec)
	}
	if last == noSecond || sec < last {
		m.last.Store(now) // first Record or a backward jump: start again
	} else {
		for {
			old := m.last.Load()
			if old >= now || m.last.CompareAndSwap(old, now) {
				break
			}
		}
	}
	m.secs[floorMod(sec, ringSeconds)].Store(sec)
	m.addSecond(floorDiv(sec, 60))
}

// addSecond adds one active second to the ring bucket of Unix minute minute,
// claiming the bucket if it holds another minute. Minute and count share one
// word, so concurrent claims and increments never lose a count.
func (m *Model) addSecond(minute int64) {
	b := &m.ring[floorMod(minute, ringMinutes)]
	for {
		w := b.Load()
		var nw int64
		if w>>countBits == minute {
			if w&countMask >= maxCount {
				return
			}
			nw = w + 1
		} else {
			nw = pack(minute, 1)
		}
		if b.CompareAndSwap(w, nw) {
			return
		}
	}
}

// pack makes a ring word from a Unix minute and a count. The zero word reads
// as minute 0 (1970-01-01 00:00 UTC) with count 0, which is correct for a
// bucket that has never been written.
func pack(minute, count int64) int64 { return minute<<countBits | count }

// minuteCount returns the active seconds recorded in Unix minute minute, or 0
// if its bucket holds another minute.
func (m *Model) minuteCount(minute int64) int {
	w := m.ring[floorMod(minute, ringMinutes)].Load()
	if w>>countBits != minute {
		return 0
	}
	return int(w & countMask)
}

// LastActivity returns the Unix nanoseconds of the latest Record, or 0 if
// there was none. It is exact to the second at least (a Record within the same
// second as the previous one may leave the older value).
func (m *Model) LastActivity() int64 { return m.last.Load() }

// Roll folds every 5-minute slot that ended at or before now into the
// histograms. Calling it often is cheap (it returns at once while the slot is
// unchanged). Slots with no Record count as zero activity. After a long gap
// (or a wall-clock jump), at most one week of missed slots is folded.
//
// The first Roll starts from the slot of the first Record (if that is earlier
// and within a week), so activity recorded before it is not lost. If now is
// in an earlier slot than the previous Roll's (the clock went back), nothing
// is folded and folding resumes from now's slot.
func (m *Model) Roll(now int64) {
	cur := floorDiv(now, slotNanos)
	if m.rolled.Load() == cur {
		return
	}
	m.roll(cur)
}

// roll is Roll's slow path. It holds the histogram mutex throughout, so
// overlapping calls are safe, if pointless.
func (m *Model) roll(cur int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rolled.Store(cur)
	if !m.started {
		m.started = true
		m.next = cur
		if f := m.first.Load(); f != noSecond {
			m.next = min(cur, floorDiv(f, slotSeconds))
		}
	}
	from := m.next
	m.next = cur
	if cur <= from {
		return // nothing completed, or a backward jump
	}
	from = max(from, cur-int64(weekSlots))
	for s := from; s < cur; s++ {
		m.fold(s)
	}
}

// fold folds absolute slot s into the histograms. m.mu must be held.
func (m *Model) fold(s int64) {
	active := 0
	for i := range int64(slotMinutes) {
		active += m.minuteCount(s*slotMinutes + i)
	}
	obs := float64(active) / float64(slotSeconds)
	d, w := m.slotIndex(s)
	observe(&m.day[d], &m.dayN[d], obs, m.dayDecay)
	observe(&m.week[w], &m.weekN[w], obs, m.weekDecay)
	m.folded++
}

// observe folds obs into the decayed average v, which has been observed n
// times.
func observe(v *float64, n *uint32, obs, decay float64) {
	if *n == 0 {
		*v = obs
	} else {
		*v = *v*decay + obs*(1-decay)
	}
	if *n < math.MaxUint32 {
		*n++
	}
}

// slotIndex returns the day and week slots of absolute slot s (Unix time /
// SlotWidth) in the model's location.
func (m *Model) slotIndex(s int64) (day, week int) {
	_, off := time.Unix(s*slotSeconds, 0).In(m.loc).Zone()
	return localSlot(s, int64(off))
}

// localSlot returns the day and week slots of absolute slot s, placed by the
// local time of its start at UTC offset off (seconds). In a zone whose offset
// is not a multiple of 5 minutes, local slots straddle two absolute ones; this
// way a slot has one place, whatever instant in it is asked about.
func localSlot(s, off int64) (day, week int) {
	const dayLen = 24 * 60 * 60
	local := s*slotSeconds + off
	day = int(floorMod(local, dayLen) / slotSeconds)
	weekday := floorMod(floorDiv(local, dayLen)+4, 7) // 1970-01-01 was a Thursday
	return day, int(weekday)*daySlots + day
}

// Predict returns the expected fraction of active seconds (0..1) in the
// 5-minute slot that contains t, and whether the model has any history for
// that slot. With both histograms observed, it averages them; with only the
// day histogram, it uses that.
func (m *Model) Predict(t time.Time) (activity float64, ok bool) {
	d, w := m.slotIndex(floorDiv(t.Unix(), slotSeconds))
	m.mu.RLock()
	defer m.mu.RUnlock()
	switch {
	case m.dayN[d] > 0 && m.weekN[w] > 0:
		return (m.day[d] + m.week[w]) / 2, true
	case m.dayN[d] > 0:
		return m.day[d], true
	}
	return 0, false
}

// HasHistory reports whether at least one slot has been folded into the
// histograms.
func (m *Model) HasHistory() bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.folded > 0
}

// Seconds reports, for each of the n seconds that end with the second
// containing now (oldest first, at most one hour), whether it was active.
// It is for status pages that show short-lived tokens.
func (m *Model) Seconds(now int64, n int) []bool {
	n = min(max(n, 0), ringSeconds)
	out := make([]bool, n)
	end := floorDiv(now, secondNanos)
	for i := range out {
		sec := end - int64(n-1-i)
		out[i] = m.secs[floorMod(sec, ringSeconds)].Load() == sec
	}
	return out
}

// Timeline returns active seconds per minute for the n minutes that end with
// the minute containing now (oldest first), at most 24 hours. It is for
// status pages. n is clamped to [0, 1440]; a minute the ring no longer (or
// not yet) holds reads as 0.
func (m *Model) Timeline(now int64, n int) []int {
	n = max(0, min(n, ringMinutes))
	out := make([]int, n)
	end := floorDiv(now, minuteNanos)
	for i := range out {
		out[i] = m.minuteCount(end - int64(n-1-i))
	}
	return out
}

// floorDiv returns a/b rounded towards minus infinity, for b > 0.
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b < 0 {
		q--
	}
	return q
}

// floorMod returns a mod b in [0, b), for b > 0.
func floorMod(a, b int64) int64 {
	r := a % b
	if r < 0 {
		r += b
	}
	return r
}
