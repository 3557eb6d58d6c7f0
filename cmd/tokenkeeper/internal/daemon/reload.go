package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

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
		if err := d.keeper.Remove(name); err != nil && !errors.Is(err, tokenkeeper.ErrUnknownToken) {
			errs = append(errs, err)
		}
		delete(d.prints, name)
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

// replace swaps a token's settings. Its refresh in flight, if any, is
// allowed to finish first: its result, a rotated refresh token perhaps, is
// saved in the store, where the replacement picks it up.
func (d *Daemon) replace(t config.Token, src tokenkeeper.Source) error {
	ctx, cancel := context.WithTimeout(context.Background(), DrainTimeout)
	defer cancel()
	h, err := d.keeper.Handle(t.Name)
	if err == nil {
		d.drain(ctx, []string{t.Name})
		if err := d.keeper.Remove(t.Name); err != nil && !errors.Is(err, tokenkeeper.ErrUnknownToken) {
			return err
		}
		// A refresh that started between the drain and the removal runs to
		// its end; wait for it.
		d.drainHandle(ctx, h)
	}
	delete(d.prints, t.Name)
	return d.add(t, src)
}

func (d *Daemon) drainHandle(ctx context.Context, h *tokenkeeper.Handle) {
	for h.Status().State == tokenkeeper.StateRefreshing {
		if !sleepCtx(ctx) {
			return
		}
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
	if a.Store.Type != b.Store.Type || a.Store.Path != b.Store.Path || a.Store.KeyFile != b.Store.KeyFile ||
		a.Store.KeyEnv != b.Store.KeyEnv || !bytes.Equal(a.Store.Key, b.Store.Key) {
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
