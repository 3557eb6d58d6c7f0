package tokenkeeper

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/oauth2"
)

// Events and logs describe every step of a refresh and never contain a
// token value; statuses and %v output of the keeper's own types neither.
func TestEventsLogsAndStatusHoldNoSecrets(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var buf bytes.Buffer
		logger := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
		var log eventLog
		src := &fakeSource{}
		src.fn = func(ctx context.Context, n int, cur *oauth2.Token) (*oauth2.Token, error) {
			switch n {
			case 1:
				return nil, fmt.Errorf("network down")
			case 2:
				return &oauth2.Token{AccessToken: "AT-SECRET-2", RefreshToken: "RT-SECRET-2", Expiry: time.Now().Add(10 * 365 * 24 * time.Hour)}, nil
			}
			return nil, Permanent(errors.New("revoked"))
		}
		k := newKeeper(t, Config{Logger: logger, OnEvent: log.add, Policy: Policy{RetryBase: time.Second, RetryMax: time.Second}})
		h, _ := k.Add(TokenConfig{Name: "a", Source: src, Group: "idp",
			Token: &oauth2.Token{AccessToken: "AT-SECRET-1", RefreshToken: "RT-SECRET-1", Expiry: time.Now().Add(time.Hour)}})
		if _, err := h.Refresh(t.Context()); err == nil {
			t.Fatal("first attempt succeeded")
		}
		time.Sleep(2 * time.Second) // the retry succeeds in the background
		synctest.Wait()
		if tok, err := h.TokenContext(t.Context()); err != nil || tok.AccessToken != "AT-SECRET-2" {
			t.Fatalf("got %v, %v", tok, err)
		}
		if _, err := h.Refresh(t.Context()); !errors.Is(err, ErrReauthRequired) {
			t.Fatalf("forced refresh: %v", err)
		}
		h.Invalidate(&oauth2.Token{AccessToken: "AT-SECRET-2"})
		k.NoteActivity()
		k.NoteActivityAt(time.Now().Add(time.Hour))
		k.Remove("a")
		synctest.Wait()

		kinds := map[EventKind]int{}
		for _, e := range log.ev {
			kinds[e.Kind]++
		}
		for _, want := range []EventKind{EventScheduled, EventStarted, EventFailed, EventSucceeded,
			EventExpiryClamped, EventReauthRequired, EventInvalidated, EventRemoved} {
			if kinds[want] == 0 {
				t.Errorf("no %v event (got %v)", want, kinds)
			}
		}
		var failed []Event
		for _, e := range log.kinds(EventFailed) {
			failed = append(failed, e)
		}
		if failed[0].NextRetry.IsZero() || failed[0].Attempt != 1 {
			t.Errorf("first failure event: %+v", failed[0])
		}

		var out strings.Builder
		out.WriteString(buf.String())
		for _, e := range log.ev {
			fmt.Fprintf(&out, "%v %+v\n", e, e)
		}
		for _, s := range k.Status() {
			fmt.Fprintf(&out, "%v %+v\n", s, s)
		}
		fmt.Fprintf(&out, "%v %v %+v\n", k, h, h.Status())
		for _, secret := range []string{"AT-SECRET", "RT-SECRET"} {
			if strings.Contains(out.String(), secret) {
				t.Errorf("%s appears in events, logs or statuses", secret)
			}
		}
		if !strings.Contains(buf.String(), `"event":"succeeded"`) || !strings.Contains(buf.String(), `"level":"ERROR"`) {
			t.Errorf("log lacks the expected records:\n%s", buf.String())
		}
	})
}

// A consumer that falls behind loses events (counted), never delays refreshes.
func TestSlowEventConsumerDropsEvents(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		block := make(chan struct{})
		k := newKeeper(t, Config{EventBuffer: 1, OnEvent: func(Event) { <-block }})
		src := &fakeSource{}
		h, _ := k.Add(TokenConfig{Name: "a", Source: src})
		for range 5 {
			if _, err := h.Refresh(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
		if k.DroppedEvents() == 0 {
			t.Error("no dropped events")
		}
		close(block)
	})
}

func TestStatusStatesAndTimeline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		block := make(chan struct{})
		src := &fakeSource{}
		src.fn = func(ctx context.Context, n int, _ *oauth2.Token) (*oauth2.Token, error) {
			if n == 1 {
				<-block
			}
			return newTok("x", time.Now().Add(time.Hour)), nil
		}
		k := newKeeper(t, Config{})
		h, _ := k.Add(TokenConfig{Name: "b", Source: src, Policy: noJitter()})
		k.Add(TokenConfig{Name: "a", Source: &fakeSource{}, Token: newTok("y", time.Now().Add(time.Hour))})
		synctest.Wait()
		if st := h.Status(); st.State != StateRefreshing || st.RefreshingSince.IsZero() {
			t.Errorf("in flight: %+v", st)
		}
		close(block)
		synctest.Wait()
		st := h.Status()
		if st.State != StateValid || st.Refreshes != 1 || st.NextReason != "window-opens" ||
			!st.NextRefresh.Equal(st.WindowStart) || !st.WindowEnd.Equal(st.Expiry.Add(-15*time.Minute)) {
			t.Errorf("after refresh: %+v", st)
		}
		all := k.Status()
		if len(all) != 2 || all[0].Name != "a" || all[1].Name != "b" {
			t.Errorf("Status() order: %v", all)
		}
		for range 3 {
			k.NoteActivity()
			time.Sleep(time.Minute)
		}
		tl := k.Timeline(5)
		if len(tl) != 5 || tl[1] == 0 {
			t.Errorf("timeline = %v", tl)
		}
		secs := k.ActiveSeconds(121)
		if len(secs) != 121 || !secs[0] || !secs[60] || secs[1] || secs[120] {
			t.Errorf("active seconds: %d, first %v, +60s %v, +1s %v, now %v", len(secs), secs[0], secs[60], secs[1], secs[120])
		}
		if h.Name() != "b" {
			t.Error(h.Name())
		}
	})
}

// An oauth2.TokenSource plugs in as a Source, and a Handle is one.
func TestTokenSourceInterop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		k := newKeeper(t, Config{})
		static := oauth2.StaticTokenSource(newTok("static", time.Now().Add(time.Hour)))
		h, _ := k.Add(TokenConfig{Name: "a", Source: FromTokenSource(static)})
		var ts oauth2.TokenSource = h
		tok, err := ts.Token()
		if err != nil || tok.AccessToken != "static" {
			t.Fatalf("%v, %v", tok, err)
		}
		if _, err := FromTokenSource(nil).Refresh(t.Context(), nil); err == nil {
			t.Error("nil TokenSource accepted")
		}
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if _, err := FromTokenSource(static).Refresh(ctx, nil); !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled ctx: %v", err)
		}
		if _, err := k.Refresh(t.Context(), "a"); err != nil {
			t.Error(err)
		}
		if _, err := k.Refresh(t.Context(), "zz"); !errors.Is(err, ErrUnknownToken) {
			t.Error(err)
		}
		if _, err := k.TokenValidFor(t.Context(), "zz", 0); !errors.Is(err, ErrUnknownToken) {
			t.Error(err)
		}
		if _, err := k.Handle("zz"); !errors.Is(err, ErrUnknownToken) {
			t.Error(err)
		}
	})
}

// Many tokens in one group never run more refreshes at once than the
// group's limit.
func TestGroupConcurrencyLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var running, peak int
		var mu = make(chan struct{}, 1)
		src := &fakeSource{}
		src.fn = func(ctx context.Context, n int, _ *oauth2.Token) (*oauth2.Token, error) {
			mu <- struct{}{}
			running++
			peak = max(peak, running)
			<-mu
			time.Sleep(time.Second)
			mu <- struct{}{}
			running--
			<-mu
			return newTok("x", time.Now().Add(time.Hour)), nil
		}
		k := newKeeper(t, Config{Workers: 16, GroupConcurrency: 3})
		for i := range 50 {
			k.Add(TokenConfig{Name: fmt.Sprint(i), Source: src, Group: "idp"})
		}
		time.Sleep(time.Minute)
		synctest.Wait()
		if peak != 3 || src.count() != 50 {
			t.Errorf("peak concurrency %d (want 3), calls %d (want 50)", peak, src.count())
		}
	})
}

// A caller waiting for a token overtakes planned refreshes in the queue.
func TestUrgentOvertakesPlanned(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		block := make(chan struct{})
		var order []string
		var mu = make(chan struct{}, 1)
		mk := func(name string, wait bool) Source {
			return SourceFunc(func(ctx context.Context, _ *oauth2.Token) (*oauth2.Token, error) {
				if wait {
					<-block
				}
				mu <- struct{}{}
				order = append(order, name)
				<-mu
				return newTok(name, time.Now().Add(time.Hour)), nil
			})
		}
		k := newKeeper(t, Config{Workers: 1})
		k.Add(TokenConfig{Name: "blocker", Source: mk("blocker", true)})
		synctest.Wait()
		for i := range 5 {
			n := fmt.Sprint("planned", i)
			k.Add(TokenConfig{Name: n, Source: mk(n, false), Token: newTok("old", time.Now().Add(-time.Minute))})
		}
		synctest.Wait()
		h, _ := k.Add(TokenConfig{Name: "urgent", Source: mk("urgent", false), Token: newTok("old", time.Now().Add(-time.Second))})
		done := make(chan error)
		go func() { _, err := h.TokenContext(context.Background()); done <- err }()
		synctest.Wait()
		close(block)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if len(order) != 7 || order[0] != "blocker" || order[1] != "urgent" {
			t.Errorf("order = %v, want blocker, urgent, then the planned ones", order)
		}
	})
}

// Leads longer than a token's lifetime, or a source whose tokens are nearly
// expired on arrival, never make the keeper call the source in a loop.
func TestNoRefreshLoop(t *testing.T) {
	for _, tc := range []struct {
		name     string
		life     time.Duration
		pol      Policy
		maxCalls int
	}{
		{"leads longer than the lifetime", time.Hour, Policy{StartLead: 2 * time.Hour, EndLead: 2 * time.Hour, NoJitter: true}, 10},
		{"millisecond tokens", time.Millisecond, Policy{NoJitter: true}, 41},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				src := &fakeSource{lifetime: tc.life}
				k := newKeeper(t, Config{})
				k.Add(TokenConfig{Name: "a", Source: src, Policy: &tc.pol})
				time.Sleep(10 * time.Second)
				synctest.Wait()
				if n := src.count(); n > tc.maxCalls {
					t.Errorf("%d source calls in 10 s", n)
				}
			})
		})
	}
}
