package usage_test

import (
	"fmt"
	"time"

	"github.com/tokenkeeper/tokenkeeper/internal/usage"
)

func Example() {
	m := usage.New(usage.Config{Location: time.UTC})
	start := time.Date(2025, 1, 6, 9, 0, 0, 0, time.UTC)

	// Busy every other second for five minutes: 150 active seconds, however
	// many calls each second sees.
	for s := 0; s < 300; s += 2 {
		for range 3 {
			m.Record(start.Add(time.Duration(s) * time.Second).UnixNano())
		}
	}
	fmt.Println(m.Timeline(start.Add(4*time.Minute).UnixNano(), 5))

	now := start.Add(5 * time.Minute)
	m.Roll(now.UnixNano())
	fmt.Println("idle for", time.Duration(now.UnixNano()-m.LastActivity()))
	fmt.Println(m.Predict(start.Add(2 * time.Minute)))
	fmt.Println(m.Predict(start.Add(time.Hour)))
	// Output:
	// [30 30 30 30 30]
	// idle for 2s
	// 0.5 true
	// 0 false
}
