package usage

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// TestPropertyReplay replays four weeks of random activity with a daily busy
// slot, a daily idle slot and a weekday-only slot, and checks what the model
// learned against the truth.
func TestPropertyReplay(t *testing.T) {
	const (
		weeks    = 4
		busyP    = 0.6 // 10:00-10:05 every day
		weekdayP = 0.9 // 14:00-14:05 Monday to Friday
	)
	rng := rand.New(rand.NewPCG(1, 2))
	m := New(Config{Location: india})
	start := time.Date(2025, 1, 6, 0, 0, 0, 0, india) // a Monday
	busy := start.Add(10 * time.Hour)
	idle := start.Add(3 * time.Hour)
	weekday := start.Add(14 * time.Hour)

	var busyTotal, busyDays float64
	for s := range weeks * weekSlots {
		slotStart := start.Add(time.Duration(s) * SlotWidth)
		h, mi, _ := slotStart.Clock()
		var p float64
		switch tod := h*60 + mi; {
		case tod == 10*60:
			p = busyP
		case tod == 3*60:
			p = 0
		case tod == 14*60:
			if wd := slotStart.Weekday(); wd != time.Saturday && wd != time.Sunday {
				p = weekdayP
			}
		default:
			p = rng.Float64() * 0.5
		}
		active := 0
		for sec := range slotSeconds {
			if rng.Float64() >= p {
				continue
			}
			active++
			at := slotStart.Add(time.Duration(sec) * time.Second)
			// A few calls at random moments within the second.
			for range 1 + rng.IntN(3) {
				m.Record(ns(at.Add(time.Duration(rng.Int64N(int64(time.Second))))))
			}
			m.Roll(ns(at))
		}
		if p == busyP {
			busyTotal += float64(active) / slotSeconds
			busyDays++
		}
		m.Roll(ns(slotStart.Add(SlotWidth)))
	}

	last := start.AddDate(0, 0, 7*(weeks-1)) // the last simulated Monday
	got, ok := m.Predict(busy.AddDate(0, 0, 7*weeks+2))
	t.Logf("busy slot: predicted %.3f, observed mean %.3f", got, busyTotal/busyDays)
	if !ok || math.Abs(got-busyP) > 0.1 {
		t.Errorf("Predict(busy slot) = %v, %v; want about %v (observed mean %v)", got, ok, busyP, busyTotal/busyDays)
	}
	if got, ok := m.Predict(idle.AddDate(0, 0, 7*weeks+4)); !ok || got != 0 {
		t.Errorf("Predict(idle slot) = %v, %v; want 0, true", got, ok)
	}
	wed, ok1 := m.Predict(weekday.AddDate(0, 0, 7*weeks+2))
	sat, ok2 := m.Predict(weekday.AddDate(0, 0, 7*weeks+5))
	t.Logf("weekday slot: predicted %.3f on Wednesday, %.3f on Saturday", wed, sat)
	if !ok1 || !ok2 || wed-sat < 0.3 {
		t.Errorf("Predict(weekday slot) = %v on Wednesday, %v on Saturday; want Wednesday busier by 0.3", wed, sat)
	}
	for d := range 7 {
		for s := range daySlots {
			at := last.AddDate(0, 0, d).Add(time.Duration(s) * SlotWidth)
			if got, ok := m.Predict(at); !ok || got < 0 || got > 1 {
				t.Fatalf("Predict(%v) = %v, %v; want a value in [0, 1]", at, got, ok)
			}
		}
	}
}
