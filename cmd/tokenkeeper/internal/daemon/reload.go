package daemon

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/internal/config"
)

// Change says what a Reload did.
type Change struct {
	Added, Removed, Replaced, Unchanged []string
	// NeedRestart lists the settings that differ in the new configuration
	// but can only change with a restart (listen, store, ...). They keep
	// their old values.
	NeedRestart []string
}

// String summarises the change for a log line.
func (c Change) String() string {
	var parts []string
	add := func(what string, names []string) {
		if len(names) > 0 {
			parts = append(parts, what+" "+strings.Join(names, ","))
		}
	}
	add("added", c.Added)
	add("removed", c.Removed)
	add("replaced", c.Replaced)
	add("need a restart:", c.NeedRestart)
	if len(parts) == 0 {
		return "no change"
	}
	return strings.Join(parts, "; ")
}

// Reload applies a new configuration without dropping tokens: tokens that
// are new are added, tokens no longer configured are removed (their stored
// session stays in the store, so adding them back resumes it), and tokens
// whose settings changed are replaced, keeping their current token (the
// stored one) unless their configured refresh token changed. Unchanged
// tokens are not touched. If any new or changed token cannot be built, the
// whole configuration is rejected and nothing changes.
func (d *Daemon) Reload(cfg *config.Config) (Change, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var ch Change
	if d.closed {
		return ch, errors.New("the agent is shut down")
	}
	old := d.cfg
	ch.NeedRestart = restartOnly(old, cfg)

	// Build every new source before touching anything.
	sources := make(map[string]tokenkeeper.Source)
	var replace, add []config.Token
	for _, t := range cfg.Tokens {
		fp, ok := d.prints[t.Name]
		if ok && fp == t.Fingerprint() {
			ch.Unchanged = append(ch.Unchanged, t.Name)
			continue
		}
		s, err := d.newSource(t)
		if err != nil {
			return Change{}, fmt.Errorf("token %q: %w", t.Name, err)
		}
		sources[t.Name] = s
		if ok {
			replace = append(replace, t)
		} else {
			add = append(add, t)
		}
	}

	var errs []error
	for name := range d.prints {
		if _, ok := cfg.Token(name); ok {
			continue
		}
		if err := d.retire(name); err != nil {
			errs = append(errs, err)
		}
		ch.Removed = append(ch.Removed, name)
	}
	for _, t := range replace {
		if err := d.replace(t, sources[t.Name]); err != nil {
			errs = append(errs, err)
			continue
		}
		ch.Replaced = append(ch.Replaced, t.Name)
	}
	for _, t := range add {
		if err := d.add(t, sources[t.Name]); err != nil {
			errs = append(errs, err)
			continue
		}
		ch.Added = append(ch.Added, t.Name)
	}
	slices.Sort(ch.Removed)

	// Settings that need a restart keep their old values.
	next := *cfg
	next.Listen, next.SecretFile, next.Store, next.Log, next.History = old.Listen, old.SecretFile, old.Store, old.Log, old.History
	kp := next.Keeper.Policy
	next.Keeper = old.Keeper
	next.Keeper.Policy = kp
	d.cfg = &next
	if len(errs) > 0 {
		return ch, fmt.Errorf("reload applied partly: %w", errors.Join(errs...))
	}
	return ch, nil
}

// replace swaps a token's settings, keeping its current token: the
// replacement starts from the store, where the keeper saved the latest one.
func (d *Daemon) replace(t config.Token, src tokenkeeper.Source) error {
	if h, err := d.keeper.Handle(t.Name); err == nil {
		// A refresh in flight is allowed to finish first, so that the
		// requests waiting for it get its token rather than an "unknown
		// token" error from the removal.
		ctx, cancel := context.WithTimeout(context.Background(), DrainTimeout)
		waitIdle(ctx, h)
		cancel()
	}
	if err := d.retire(t.Name); err != nil {
		return err
	}
	return d.add(t, src)
}

// retired is a token removed from the keeper whose last refresh may still
// be running.
type retired struct {
	h *tokenkeeper.Handle
	// bound is how long that refresh can still take: its attempt timeout,
	// and as much again for the store write that follows.
	bound time.Duration
}

// retire removes a token from the keeper. A refresh it has running goes on
// to its end, and the keeper saves its result in the store even after the
// removal; add waits for it before it adds the same name again, so that
// the new token never starts from a stored refresh token that the running
// refresh is spending.
func (d *Daemon) retire(name string) error {
	h, err := d.keeper.Handle(name)
	if err == nil {
		err = d.keeper.Remove(name)
	}
	if err != nil && !errors.Is(err, tokenkeeper.ErrUnknownToken) {
		return err
	}
	for n, r := range d.retired {
		if r.h.Status().State != tokenkeeper.StateRefreshing {
			delete(d.retired, n) // done: nothing to wait for
		}
	}
	if h != nil {
		at := tokenkeeper.DefaultAttemptTimeout
		if t, ok := d.cfg.Token(name); ok && t.Policy.AttemptTimeout > 0 {
			at = t.Policy.AttemptTimeout
		}
		d.retired[name] = retired{h: h, bound: 2*at + time.Second}
	}
	delete(d.prints, name)
	return nil
}

// awaitRetired waits for the last refresh of a removed token of that name,
// if one is running.
func (d *Daemon) awaitRetired(name string) {
	r, ok := d.retired[name]
	if !ok {
		return
	}
	delete(d.retired, name)
	ctx, cancel := context.WithTimeout(context.Background(), r.bound)
	defer cancel()
	if !waitIdle(ctx, r.h) {
		d.log.Warn("tokenkeeper agent: the previous refresh of a replaced token is still running past its timeouts; the new token starts from the store anyway",
			"token", name)
	}
}

// restartOnly lists the settings that differ between a and b and that
// Reload cannot apply.
func restartOnly(a, b *config.Config) []string {
	var out []string
	if a.Listen != b.Listen {
		out = append(out, "listen")
	}
	if a.SecretFile != b.SecretFile && a.Listen.Network == "tcp" {
		out = append(out, "secret_file")
	}
	if !a.Store.Equal(b.Store) {
		out = append(out, "store")
	}
	if a.Keeper.Workers != b.Keeper.Workers || a.Keeper.MaxQueued != b.Keeper.MaxQueued ||
		a.Keeper.GroupConcurrency != b.Keeper.GroupConcurrency || a.Keeper.Breaker != b.Keeper.Breaker {
		out = append(out, "keeper")
	}
	if a.Log != b.Log {
		out = append(out, "log")
	}
	if a.History != b.History {
		out = append(out, "agent.history")
	}
	return out
}
