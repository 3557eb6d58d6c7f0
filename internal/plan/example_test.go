package plan_test

import (
	"fmt"
	"time"

	"github.com/tokenkeeper/tokenkeeper/internal/plan"
)

// A one-hour token is refreshed 20 to 15 minutes before it expires, at the
// first idle moment.
func ExampleNext() {
	issued := time.Date(2025, 3, 10, 9, 0, 0, 0, time.UTC)
	in := plan.Input{
		Issued: issued,
		Expiry: issued.Add(time.Hour),
	}
	show := func(d plan.Decision) {
		fmt.Printf("%s at %s (window %s to %s)\n", d.Reason, d.At.Format("15:04:05"),
			d.Window.Start.Format("15:04"), d.Window.End.Format("15:04"))
	}

	in.Now = issued.Add(10 * time.Minute)
	show(plan.Next(in)) // before the window: decide again when it opens

	in.Now = issued.Add(40 * time.Minute)
	in.LastActivity = in.Now.Add(-5 * time.Second)
	show(plan.Next(in)) // busy: decide again when it can have been idle for 30 s

	in.Now = in.Now.Add(25 * time.Second)
	show(plan.Next(in)) // idle for 30 s: refresh now
	// Output:
	// window-opens at 09:40:00 (window 09:40 to 09:45)
	// wait-idle at 09:40:25 (window 09:40 to 09:45)
	// idle at 09:40:25 (window 09:40 to 09:45)
}

// Slow, unreliable refreshes widen the window: with a p99 latency of 2
// minutes and half of the refreshes failing, a refresh needs 10 attempts.
func ExampleRoom() {
	fmt.Println(plan.Room(2*time.Second, 0, 0, 0))
	fmt.Println(plan.Room(2*time.Second, 0.1, time.Second, time.Minute))
	fmt.Println(plan.Room(2*time.Minute, 0.5, time.Second, 5*time.Minute))
	// Output:
	// 2s
	// 7.5s
	// 24m15.5s
}
