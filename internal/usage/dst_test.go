package usage

import (
	"testing"
	"time"
	_ "time/tzdata" // the DST test must not depend on the machine's zone database

	"github.com/google/go-cmp/cmp"
)

// TestRollDaylightSaving folds whole days that change clocks: a slot is placed
// by the local time of its start, so the skipped hour goes unobserved and the
// repeated hour is observed twice.
func TestRollDaylightSaving(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		day   time.Time
		wantN func(slot int) uint32 // observations of each day slot
	}{
		{
			name: "spring forward",
			day:  time.Date(2025, 3, 9, 0, 0, 0, 0, ny),
			wantN: func(slot int) uint32 {
				if slot >= 2*12 && slot < 3*12 { // 02:00-02:55 does not exist
					return 0
				}
				return 1
			},
		},
		{
			name: "fall back",
			day:  time.Date(2025, 11, 2, 0, 0, 0, 0, ny),
			wantN: func(slot int) uint32 {
				if slot >= 1*12 && slot < 2*12 { // 01:00-01:55 happens twice
					return 2
				}
				return 1
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := New(Config{Location: ny})
			m.Record(ns(tt.day)) // the first Roll starts here
			m.Roll(ns(tt.day.AddDate(0, 0, 1)))
			var want [daySlots]uint32
			for i := range want {
				want[i] = tt.wantN(i)
			}
			if diff := cmp.Diff(want, m.dayN); diff != "" {
				t.Errorf("day slot observations (-want +got):\n%s", diff)
			}
			// It was a Sunday: the week histogram saw the same.
			if diff := cmp.Diff(want[:], m.weekN[:daySlots]); diff != "" {
				t.Errorf("Sunday week slot observations (-want +got):\n%s", diff)
			}
		})
	}
}
