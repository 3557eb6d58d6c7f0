package sim

import (
	"context"
	"testing/synctest"
)

// Contender is one library, in one configuration, under comparison.
type Contender struct {
	// Name is the short name used in tables and pictures.
	Name string
	// Module is the Go module the library comes from.
	Module string
	// Config is how the harness builds it, as Go code.
	Config string
	// New starts the library's shared state (a keeper, for tokenkeeper;
	// nothing for the caches) for one run.
	New func(env *Env) (Kit, error)
}

// Kit holds the instances of one contender in one run.
type Kit interface {
	// Add starts keeping one token fetched through src.
	Add(name string, src *Source) (Instance, error)
	// Close stops everything the kit started.
	Close()
}

// Instance hands out one token.
type Instance interface {
	// Token returns the access token the library hands out now. It is a
	// thin adapter over the library's own call (an interface call and a
	// field read on top of it).
	Token(ctx context.Context) (string, error)
}

// Env is what a run tells the adapters about where they run.
type Env struct {
	// Virtual is true inside a synctest bubble.
	Virtual bool
	settle  chan struct{} // serialises synctest.Wait
}

// NewEnv returns an environment; call it inside the bubble when virtual.
func NewEnv(virtual bool) *Env {
	return &Env{Virtual: virtual, settle: make(chan struct{}, 1)}
}

// Settle waits until every other goroutine of the bubble is durably
// blocked (synctest.Wait), one caller at a time.
func (e *Env) Settle() {
	e.settle <- struct{}{}
	synctest.Wait()
	<-e.settle
}

// kit is a Kit of independent instances.
type kit struct {
	add     func(name string, src *Source) (Instance, func(), error)
	closers []func()
}

func (k *kit) Add(name string, src *Source) (Instance, error) {
	in, closeFn, err := k.add(name, src)
	if err != nil {
		return nil, err
	}
	if closeFn != nil {
		k.closers = append(k.closers, closeFn)
	}
	return in, nil
}

func (k *kit) Close() {
	for _, c := range k.closers {
		c()
	}
	k.closers = nil
}
