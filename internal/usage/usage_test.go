package usage

import (
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// Fixed zones keep the tests independent of the machine's time zone.
var (
	india = time.FixedZone("IST", 5*3600+30*60)  // +05:30
	nepal = time.FixedZone("NPT", 5*3600+45*60)  // +05:45
	pdt   = time.FixedZone("PDT", -7*3600)       // -07:00
	odd   = time.FixedZone("LMT", 3600+17*60+30) // +01:17:30, not a slot multiple
)

// wed is Wednesday 2025-01-15 09:10 in India, the start of a slot.
var wed = time.Date(2025, 1, 15, 9, 10, 0, 0, india)

const approx = 1e-12

func ns(t time.Time) int64 { return t.UnixNano() }

// slotOf returns the absolute slot containing t.
func slotOf(t time.Time) int64 { return floorDiv(t.UnixNano(), slotNanos) }

// recordSeconds records one call in each of the n seconds starting at t.
func recordSeconds(m *Model, t time.Time, n int) {
	for i := range n {
		m.Record(ns(t.Add(time.Duration(i) * time.Second)))
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		name      string
		cfg       Config
		wantDay   float64
		wantWeek  float64
		wantLoc   *time.Location
		wantPanic bool
	}{
		{name: "zero", cfg: Config{}, wantDay: 0.7, wantWeek: 0.5, wantLoc: time.Local},
		{name: "custom", cfg: Config{DayDecay: 0.9, WeekDecay: 1, Location: india}, wantDay: 0.9, wantWeek: 1, wantLoc: india},
		{name: "negative day decay", cfg: Config{DayDecay: -0.1}, wantPanic: true},
		{name: "week decay above one", cfg: Config{WeekDecay: 1.5}, wantPanic: true},
		{name: "NaN", cfg: Config{DayDecay: math.NaN()}, wantPanic: true},
		{name: "infinity", cfg: Config{WeekDecay: math.Inf(1)}, wantPanic: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if r := recover(); (r != nil) != tt.wantPanic {
					t.Errorf("New(%+v) panic = %v, want panic %v", tt.cfg, r, tt.wantPanic)
				}
			}()
			m := New(tt.cfg)
			if m.dayDecay != tt.wantDay || m.weekDecay != tt.wantWeek || m.loc != tt.wantLoc {
				t.Errorf("New(%+v) = decays %v/%v in %v, want %v/%v in %v",
					tt.cfg, m.dayDecay, m.weekDecay, m.loc, tt.wantDay, tt.wantWeek, tt.wantLoc)
			}
			if m.LastActivity() != 0 || m.HasHistory() {
				t.Errorf("new model: LastActivity = %d, HasHistory = %v; want 0, false", m.LastActivity(), m.HasHistory())
			}
		})
	}
}

func TestRecordCountsActiveSeconds(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	everySecond := func(per int) []time.Duration {
		var d []time.Duration
		for s := range 60 {
			for i := range per {
				d = append(d, time.Duration(s)*time.Second+time.Duration(i)*time.Second/time.Duration(per))
			}
		}
		return d
	}
	tests := []struct {
		name string
		at   []time.Duration // offsets from the start of minute 1
		want []int           // Timeline of minutes 0..2
	}{
		{name: "none", want: []int{0, 0, 0}},
		{name: "one call", at: []time.Duration{0}, want: []int{0, 1, 0}},
		{name: "many calls in one second", at: []time.Duration{0, ms(1), ms(500), ms(999)}, want: []int{0, 1, 0}},
		{name: "two seconds", at: []time.Duration{0, ms(1000)}, want: []int{0, 2, 0}},
		{name: "either side of a second boundary", at: []time.Duration{ms(999), ms(1000)}, want: []int{0, 2, 0}},
		{name: "either side of a minute boundary", at: []time.Duration{-ms(1), 0}, want: []int{1, 1, 0}},
		{name: "late caller ignored", at: []time.Duration{0, ms(2000), ms(1500), ms(3000)}, want: []int{0, 3, 0}},
		{name: "every second once", at: everySecond(1), want: []int{0, 60, 0}},
		{name: "every second ten times", at: everySecond(10), want: []int{0, 60, 0}},
	}
	minute1 := wed.Add(time.Minute)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := New(Config{Location: india})
			for _, d := range tt.at {
				m.Record(ns(minute1.Add(d)))
			}
			got := m.Timeline(ns(minute1.Add(time.Minute)), 3)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Timeline (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRecordClockSteps(t *testing.T) {
	t0 := wed
	sec := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Second) }
	tests := []struct {
		name     string
		at       []time.Time
		wantLast time.Time
		wantLine []int // Timeline of the 10 minutes starting at t0
	}{
		{
			name:     "first record",
			at:       []time.Time{sec(5)},
			wantLast: sec(5),
			wantLine: []int{1, 0, 0, 0, 0, 0, 0, 0, 0, 0},
		},
		{
			name:     "same second keeps the older value",
			at:       []time.Time{sec(5), sec(5).Add(400 * time.Millisecond)},
			wantLast: sec(5),
			wantLine: []int{1, 0, 0, 0, 0, 0, 0, 0, 0, 0},
		},
		{
			name:     "next second",
			at:       []time.Time{sec(5), sec(6).Add(200 * time.Millisecond)},
			wantLast: sec(6).Add(200 * time.Millisecond),
			wantLine: []int{2, 0, 0, 0, 0, 0, 0, 0, 0, 0},
		},
		{
			name:     "small step back is ignored",
			at:       []time.Time{sec(15), sec(5)},
			wantLast: sec(15),
			wantLine: []int{1, 0, 0, 0, 0, 0, 0, 0, 0, 0},
		},
		{
			name:     "small step back then forward",
			at:       []time.Time{sec(15), sec(5), sec(16)},
			wantLast: sec(16),
			wantLine: []int{2, 0, 0, 0, 0, 0, 0, 0, 0, 0},
		},
		{
			name:     "large step back restarts",
			at:       []time.Time{sec(300), sec(5)},
			wantLast: sec(5),
			wantLine: []int{1, 0, 0, 0, 0, 1, 0, 0, 0, 0},
		},
		{
			name:     "large step back then forward counts again",
			at:       []time.Time{sec(300), sec(5), sec(299), sec(300), sec(301)},
			wantLast: sec(301),
			wantLine: []int{1, 0, 0, 0, 1, 3, 0, 0, 0, 0},
		},
		{
			name:     "step back over a day leaves future minutes unread",
			at:       []time.Time{t0.Add(24*time.Hour + 3*time.Minute), sec(5)},
			wantLast: sec(5),
			wantLine: []int{1, 0, 0, 0, 0, 0, 0, 0, 0, 0},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := New(Config{Location: india})
			for _, at := range tt.at {
				m.Record(ns(at))
			}
			if got, want := m.LastActivity(), ns(tt.wantLast); got != want {
				t.Errorf("LastActivity = %v, want %v", time.Unix(0, got).In(india), tt.wantLast)
			}
			got := m.Timeline(ns(t0.Add(9*time.Minute)), 10)
			if diff := cmp.Diff(tt.wantLine, got); diff != "" {
				t.Errorf("Timeline (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRecordCapsMinuteAtSixty(t *testing.T) {
	m := New(Config{Location: india})
	recordSeconds(m, wed, 3*60)
	// The clock steps back two minutes and runs over the same minutes again.
	recordSeconds(m, wed.Add(time.Minute), 2*60)
	got := m.Timeline(ns(wed.Add(2*time.Minute)), 3)
	if diff := cmp.Diff([]int{60, 60, 60}, got); diff != "" {
		t.Errorf("Timeline (-want +got):\n%s", diff)
	}
}

func TestRecordNegativeTimes(t *testing.T) {
	m := New(Config{Location: time.UTC})
	// Unix second -1 spans [-1s, 0): both calls fall in it.
	m.Record(-int64(time.Second))
	m.Record(-1)
	m.Record(0)
	got := m.Timeline(0, 2)
	if diff := cmp.Diff([]int{1, 1}, got); diff != "" {
		t.Errorf("Timeline (-want +got):\n%s", diff)
	}
	// Extreme times neither panic nor disturb the ring's arithmetic.
	for _, now := range []int64{math.MinInt64, math.MaxInt64, math.MinInt64 + 1, 0} {
		m.Record(now)
		m.Roll(now)
		if line := m.Timeline(now, 2); line[1] < 1 || line[1] > 60 {
			t.Errorf("Timeline(%d, 2) = %v, want the last minute active", now, line)
		}
	}
}

func TestTimeline(t *testing.T) {
	m := New(Config{Location: india})
	minute := func(n int) time.Time { return wed.Add(time.Duration(n) * time.Minute) }
	recordSeconds(m, minute(-2), 3)
	recordSeconds(m, minute(0), 5)
	full := make([]int, ringMinutes)
	full[ringMinutes-3], full[ringMinutes-1] = 3, 5

	tests := []struct {
		name string
		now  time.Time
		n    int
		want []int
	}{
		{name: "negative n", now: minute(0), n: -1, want: []int{}},
		{name: "zero n", now: minute(0), n: 0, want: []int{}},
		{name: "one minute", now: minute(0).Add(59 * time.Second), n: 1, want: []int{5}},
		{name: "oldest first", now: minute(0), n: 3, want: []int{3, 0, 5}},
		{name: "a minute later", now: minute(1), n: 4, want: []int{3, 0, 5, 0}},
		{name: "clamped to a day", now: minute(0), n: 5000, want: full},
		{name: "a day earlier reads another minute", now: minute(-ringMinutes), n: 1, want: []int{0}},
		{name: "a day later reads another minute", now: minute(ringMinutes), n: 1, want: []int{0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := m.Timeline(ns(tt.now), tt.n)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Timeline(%v, %d) (-want +got):\n%s", tt.now, tt.n, diff)
			}
		})
	}
}

func TestRingWrapsAfterADay(t *testing.T) {
	m := New(Config{Location: india})
	day := 24 * time.Hour
	recordSeconds(m, wed, 7)                    // minute M
	recordSeconds(m, wed.Add(time.Minute), 10)  // minute M+1
	recordSeconds(m, wed.Add(day), 2)           // minute M+1440: same bucket as M
	recordSeconds(m, wed.Add(day-time.Hour), 4) // minute M+1380

	if diff := cmp.Diff([]int{2}, m.Timeline(ns(wed.Add(day)), 1)); diff != "" {
		t.Errorf("wrapped minute (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]int{0}, m.Timeline(ns(wed), 1)); diff != "" {
		t.Errorf("overwritten minute (-want +got):\n%s", diff)
	}
	want := make([]int, ringMinutes)
	want[0] = 10             // M+1, still held
	want[ringMinutes-61] = 4 // M+1380
	want[ringMinutes-1] = 2  // M+1440
	got := m.Timeline(ns(wed.Add(day)), ringMinutes)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("day timeline (-want +got):\n%s", diff)
	}
}

func TestRollFoldsIntoLocalSlots(t *testing.T) {
	tests := []struct {
		name     string
		start    time.Time // slot start, in its zone
		seconds  int
		wantDay  int
		wantWeek int
	}{
		{name: "India Wednesday morning", start: wed, seconds: 30, wantDay: 110, wantWeek: 3*288 + 110},
		{name: "Nepal Monday noon", start: time.Date(2025, 1, 13, 12, 0, 0, 0, nepal), seconds: 300, wantDay: 144, wantWeek: 288 + 144},
		{name: "Pacific Sunday midnight", start: time.Date(2025, 1, 19, 0, 0, 0, 0, pdt), seconds: 1, wantDay: 0, wantWeek: 0},
		{name: "Pacific Saturday last slot", start: time.Date(2025, 1, 18, 23, 55, 0, 0, pdt), seconds: 150, wantDay: 287, wantWeek: 2015},
		{name: "UTC Tuesday", start: time.Date(2025, 1, 14, 17, 25, 0, 0, time.UTC), seconds: 60, wantDay: 209, wantWeek: 2*288 + 209},
		// In a zone whose offset is not a multiple of 5 minutes, a slot is
		// placed by the local time of its start: 06:07:30 -> 06:05, also for
		// Predict at 06:12:29.
		{name: "odd offset", start: time.Date(2025, 1, 15, 6, 7, 30, 0, odd), seconds: 3, wantDay: 73, wantWeek: 3*288 + 73},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := New(Config{Location: tt.start.Location()})
			recordSeconds(m, tt.start, tt.seconds)
			end := tt.start.Add(SlotWidth)
			m.Roll(ns(end.Add(-time.Nanosecond)))
			if m.HasHistory() {
				t.Fatalf("Roll before the slot ended folded it")
			}
			m.Roll(ns(end))
			if !m.HasHistory() || m.folded != 1 {
				t.Fatalf("Roll at the slot's end: HasHistory = %v, folded %d; want true, 1", m.HasHistory(), m.folded)
			}
			obs := float64(tt.seconds) / 300
			type slot struct {
				Value float64
				N     uint32
			}
			got := []slot{{m.day[tt.wantDay], m.dayN[tt.wantDay]}, {m.week[tt.wantWeek], m.weekN[tt.wantWeek]}}
			want := []slot{{obs, 1}, {obs, 1}}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("day and week slots (-want +got):\n%s", diff)
			}
			for _, at := range []time.Time{tt.start, end.Add(-time.Nanosecond)} {
				if p, ok := m.Predict(at); p != obs || !ok {
					t.Errorf("Predict(%v) = %v, %v; want %v, true", at, p, ok, obs)
				}
			}
			// The same time of day on the next day has day history only.
			if p, ok := m.Predict(tt.start.Add(24 * time.Hour)); p != obs || !ok {
				t.Errorf("Predict(next day) = %v, %v; want %v, true", p, ok, obs)
			}
			if p, ok := m.Predict(end); p != 0 || ok {
				t.Errorf("Predict(next slot) = %v, %v; want 0, false", p, ok)
			}
		})
	}
}

func TestRollDecay(t *testing.T) {
	type day struct {
		day     int // days after the first
		seconds int // active seconds in the slot that day
	}
	tests := []struct {
		name                string
		cfg                 Config
		days                []day
		wantDay, wantWeek   float64 // histograms for the last day's slot
		wantDayN, wantWeekN uint32
	}{
		{
			name:     "one day",
			days:     []day{{0, 90}},
			wantDay:  0.3,
			wantWeek: 0.3,
			wantDayN: 1, wantWeekN: 1,
		},
		{
			name:     "two days, defaults",
			days:     []day{{0, 90}, {1, 150}},
			wantDay:  0.3*0.7 + 0.5*0.3,
			wantWeek: 0.5, // another weekday: first observation
			wantDayN: 2, wantWeekN: 1,
		},
		{
			name:     "a week apart, defaults",
			days:     []day{{0, 60}, {7, 240}},
			wantDay:  0.2*math.Pow(0.7, 7) + 0.8*0.3, // six silent days between
			wantWeek: 0.2*0.5 + 0.8*0.5,
			wantDayN: 8, wantWeekN: 2,
		},
		{
			name:     "a week apart, custom decays",
			cfg:      Config{DayDecay: 0.9, WeekDecay: 0.25},
			days:     []day{{0, 300}, {7, 0}},
			wantDay:  math.Pow(0.9, 7),
			wantWeek: 0.25,
			wantDayN: 8, wantWeekN: 2,
		},
		{
			name:     "decay one keeps the first observation",
			cfg:      Config{DayDecay: 1, WeekDecay: 1},
			days:     []day{{0, 30}, {7, 300}, {14, 300}},
			wantDay:  0.1,
			wantWeek: 0.1,
			wantDayN: 15, wantWeekN: 3,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Location = india
			m := New(tt.cfg)
			var last time.Time
			for _, d := range tt.days {
				last = wed.AddDate(0, 0, d.day)
				recordSeconds(m, last, d.seconds)
				m.Roll(ns(last.Add(SlotWidth)))
			}
			d, w := m.slotIndex(slotOf(last))
			got := []float64{m.day[d], m.week[w]}
			want := []float64{tt.wantDay, tt.wantWeek}
			if diff := cmp.Diff(want, got, cmpopts.EquateApprox(0, approx)); diff != "" {
				t.Errorf("day, week (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]uint32{tt.wantDayN, tt.wantWeekN}, []uint32{m.dayN[d], m.weekN[w]}); diff != "" {
				t.Errorf("observations (-want +got):\n%s", diff)
			}
			p, ok := m.Predict(last)
			if diff := cmp.Diff((tt.wantDay+tt.wantWeek)/2, p, cmpopts.EquateApprox(0, approx)); diff != "" || !ok {
				t.Errorf("Predict ok = %v (-want +got):\n%s", ok, diff)
			}
		})
	}
}

func TestRollLongGap(t *testing.T) {
	m := New(Config{Location: india})
	mon := time.Date(2025, 1, 13, 10, 0, 0, 0, india)
	recordSeconds(m, mon, 150) // 0.5
	m.Roll(ns(mon.Add(SlotWidth)))
	// Activity during the gap that is more than a week before its end is
	// never folded.
	recordSeconds(m, mon.AddDate(0, 0, 2), 300)
	// So is activity in the last slot before the end.
	end := mon.AddDate(0, 0, 10).Add(SlotWidth)
	recordSeconds(m, end.Add(-SlotWidth), 60) // 0.2
	m.Roll(ns(end))

	if m.folded != 1+uint64(weekSlots) {
		t.Errorf("folded %d slots, want %d", m.folded, 1+weekSlots)
	}
	d, w := m.slotIndex(slotOf(mon))
	got := []float64{m.day[d], m.week[w]}
	// Day slot: days 4..9 silent, day 10 at 0.2 (day 3's slot is more than a
	// week before the end). Week slot: the Monday a week later was silent.
	want := []float64{0.5*math.Pow(0.7, 7) + 0.2*0.3, 0.5 * 0.5}
	if diff := cmp.Diff(want, got, cmpopts.EquateApprox(0, approx)); diff != "" {
		t.Errorf("day, week (-want +got):\n%s", diff)
	}
	if got, want := m.dayN[d], uint32(8); got != want {
		t.Errorf("day slot observed %d times, want %d", got, want)
	}
	var weekTotal uint32
	for i, n := range m.weekN {
		if n == 0 {
			t.Errorf("week slot %d never observed", i)
		}
		weekTotal += n
	}
	if weekTotal != 1+uint32(weekSlots) {
		t.Errorf("week observations = %d, want %d", weekTotal, 1+weekSlots)
	}
	// Wednesday (day 2) at 10:00 was busy but fell in the skipped part.
	d2, w2 := m.slotIndex(slotOf(mon.AddDate(0, 0, 2)))
	if d2 != d || m.week[w2] != 0 || m.weekN[w2] != 1 {
		t.Errorf("Wednesday slot = %v (%d observations), want 0 (1)", m.week[w2], m.weekN[w2])
	}
}

func TestRollClockSteps(t *testing.T) {
	slot := func(n int) time.Time { return wed.Add(time.Duration(n) * SlotWidth) }
	type roll struct {
		at         time.Time
		wantFolded uint64
	}
	tests := []struct {
		name   string
		record []time.Time // before the first Roll
		rolls  []roll
	}{
		{
			name:  "first roll folds nothing without records",
			rolls: []roll{{slot(0), 0}, {slot(1), 1}, {slot(12), 12}},
		},
		{
			name:   "first roll starts at the first record",
			record: []time.Time{slot(-12).Add(time.Minute), slot(-3)},
			rolls:  []roll{{slot(0).Add(time.Minute), 12}, {slot(0).Add(2 * time.Minute), 12}},
		},
		{
			name:   "first record after the first roll",
			record: []time.Time{slot(3)},
			rolls:  []roll{{slot(0), 0}, {slot(2), 2}},
		},
		{
			name:   "first record over a week earlier",
			record: []time.Time{slot(-3000)},
			rolls:  []roll{{slot(0), weekSlots}},
		},
		{
			name: "same slot does nothing",
			rolls: []roll{
				{slot(0), 0}, {slot(1), 1}, {slot(1).Add(time.Second), 1},
				{slot(2).Add(-time.Nanosecond), 1}, {slot(2), 2},
			},
		},
		{
			name: "backward jump folds nothing and resets the marker",
			rolls: []roll{
				{slot(0), 0}, {slot(2), 2},
				{slot(-12), 2},    // an hour back
				{slot(-11), 3},    // one slot on from there
				{slot(2), 3 + 13}, // the same slots again
				{slot(1), 3 + 13}, // back by one slot
				{slot(1), 3 + 13}, // fast path
				{slot(3), 3 + 15},
			},
		},
		{
			name:  "forward jump beyond a week folds a week",
			rolls: []roll{{slot(0), 0}, {slot(5000), weekSlots}, {slot(5001), weekSlots + 1}},
		},
		{
			name:  "exactly a week folds it all",
			rolls: []roll{{slot(0), 0}, {slot(weekSlots), weekSlots}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := New(Config{Location: india})
			for _, at := range tt.record {
				m.Record(ns(at))
			}
			var got, want []uint64
			for _, r := range tt.rolls {
				m.Roll(ns(r.at))
				got = append(got, m.folded)
				want = append(want, r.wantFolded)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("slots folded after each Roll (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPredict(t *testing.T) {
	type hist struct {
		value float64
		n     uint32
	}
	tests := []struct {
		name      string
		day, week hist
		want      float64
		wantOK    bool
	}{
		{name: "no history", want: 0, wantOK: false},
		{name: "day only", day: hist{0.4, 3}, want: 0.4, wantOK: true},
		{name: "day only, zero", day: hist{0, 1}, want: 0, wantOK: true},
		{name: "both", day: hist{0.4, 3}, week: hist{0.8, 1}, want: 0.6, wantOK: true},
		{name: "both idle", day: hist{0, 9}, week: hist{0, 2}, want: 0, wantOK: true},
		{name: "week only cannot happen but is no history", week: hist{0.8, 1}, want: 0, wantOK: false},
	}
	at := time.Date(2025, 1, 17, 13, 42, 0, 0, pdt) // Friday 13:40 slot
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := New(Config{Location: pdt})
			d, w := 13*12+8, 5*288+13*12+8
			m.day[d], m.dayN[d] = tt.day.value, tt.day.n
			m.week[w], m.weekN[w] = tt.week.value, tt.week.n
			// The same instant seen from another zone is the same slot.
			for _, t2 := range []time.Time{at, at.In(india), at.UTC()} {
				got, ok := m.Predict(t2)
				if diff := cmp.Diff(tt.want, got, cmpopts.EquateApprox(0, approx)); diff != "" || ok != tt.wantOK {
					t.Errorf("Predict(%v) ok = %v, want %v (-want +got):\n%s", t2, ok, tt.wantOK, diff)
				}
			}
		})
	}
}

// TestConcurrent runs Record from many goroutines over the same seconds,
// with Roll and readers running alongside. Run it with -race.
func TestConcurrent(t *testing.T) {
	const (
		workers = 8
		step    = 100 * time.Millisecond
		span    = 10 * time.Minute // two slots
	)
	start := wed
	m := New(Config{Location: india})
	var progress [workers]atomic.Int64
	for i := range progress {
		progress[i].Store(ns(start))
	}
	var done atomic.Bool
	var wg, bg sync.WaitGroup
	for i := range workers {
		wg.Go(func() {
			for at := start; at.Before(start.Add(span)); at = at.Add(step) {
				m.Record(ns(at))
				progress[i].Store(ns(at))
			}
		})
	}
	// Roll follows the slowest worker, so every slot it folds is complete.
	bg.Go(func() {
		for !done.Load() {
			slowest := int64(math.MaxInt64)
			for i := range progress {
				slowest = min(slowest, progress[i].Load())
			}
			m.Roll(slowest)
		}
	})
	bg.Go(func() {
		for !done.Load() {
			if p, _ := m.Predict(start); p < 0 || p > 1 {
				t.Errorf("Predict = %v, out of [0, 1]", p)
			}
			m.HasHistory()
			m.LastActivity()
			m.Timeline(ns(start.Add(span)), 12)
		}
	})
	wg.Wait()
	done.Store(true)
	bg.Wait()
	m.Roll(ns(start.Add(span)))

	want := []int{0, 60, 60, 60, 60, 60, 60, 60, 60, 60, 60, 0}
	if diff := cmp.Diff(want, m.Timeline(ns(start.Add(span)), 12)); diff != "" {
		t.Errorf("Timeline (-want +got):\n%s", diff)
	}
	for _, at := range []time.Time{start, start.Add(SlotWidth)} {
		if p, ok := m.Predict(at); p != 1 || !ok {
			t.Errorf("Predict(%v) = %v, %v; want 1, true", at, p, ok)
		}
	}
	// The first Record of the last second set it; later ones in that
	// second left it.
	if got, want := m.LastActivity(), ns(start.Add(span-time.Second)); got != want {
		t.Errorf("LastActivity = %v, want %v", time.Unix(0, got), time.Unix(0, want))
	}
}

func TestSeconds(t *testing.T) {
	m := New(Config{Location: time.UTC})
	base := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC).UnixNano()
	for _, d := range []int64{0, 1, 3, 3, 7} {
		m.Record(base + d*int64(time.Second) + 5e8)
	}
	got := m.Seconds(base+7*int64(time.Second), 8)
	want := []bool{true, true, false, true, false, false, false, true}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("Seconds = %v, want %v", got, want)
		}
	}
	// An hour later the ring slots hold other seconds: nothing is active.
	later := base + int64(time.Hour) + 7*int64(time.Second)
	for _, a := range m.Seconds(later, 8) {
		if a {
			t.Fatal("a second from an hour ago reads as active")
		}
	}
	if n := len(m.Seconds(later, 99999)); n != 3600 {
		t.Errorf("len = %d, want 3600", n)
	}
	if n := len(m.Seconds(later, -1)); n != 0 {
		t.Errorf("len = %d, want 0", n)
	}
}
