package rule

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/mqkafka/mqkafka/ack"
	"github.com/mqkafka/mqkafka/internal/logx"
)

// Action receives the records of the rules that name it.
type Action interface {
	// Enqueue takes r and returns as w says; an action that keeps nothing
	// for later (it forwards r at once) may ignore w.
	Enqueue(ctx context.Context, w ack.Wait, r Record) error
}

// Stager is an Action that renders a record before appending it, so that
// the engine can refuse a publish that one of its actions cannot take (a
// record too large for its sink) before any action holds it.
type Stager interface {
	Action
	// Stage renders and checks r. An error refuses the publish; a nil
	// Staged with a nil error means there is nothing to append (the action
	// counted the record as dropped).
	Stage(r Record) (Staged, error)
}

// Staged is a record an action rendered and checked but did not append.
// Exactly one of its methods is called, once.
type Staged interface {
	// Append appends the record, as Action.Enqueue does.
	Append(ctx context.Context, w ack.Wait) error
	// Discard releases it unappended.
	Discard()
}

// step is one action's share of a publish, staged or not.
type step struct {
	a   Action
	rec Record
	st  Staged
}

// Engine matches publishes against every rule and hands the record to the
// matching rules' actions.
type Engine struct {
	// Logger receives the rate-limited lines about messages a rule failed
	// on; nil means slog.Default(). Set it before the first Publish.
	Logger *slog.Logger

	rules   []*Rule
	actions [][]Action // per rule, resolved once
}

// NewEngine resolves each rule's actions by name ("kafka_producer:<sink>").
func NewEngine(rules []*Rule, actions map[string]Action) (*Engine, error) {
	e := &Engine{rules: rules}
	for _, r := range rules {
		var as []Action
		for _, name := range r.Actions {
			a, ok := actions[name]
			if !ok {
				return nil, fmt.Errorf("rule %s: no action %q", r.ID, name)
			}
			as = append(as, a)
		}
		e.actions = append(e.actions, as)
	}
	return e, nil
}

// Rules returns the engine's rules, for their metrics.
func (e *Engine) Rules() []*Rule { return e.rules }

// Matches reports whether any rule reads topic; callers build the event only then.
func (e *Engine) Matches(topic string) bool {
	for _, r := range e.rules {
		if r.Matches(topic) {
			return true
		}
	}
	return false
}

// Publish runs the event through every matching rule. Every record is
// staged first: if an action refuses one (Stager), the publish is refused
// whole and no action gets anything. Then every action is given its record;
// the error reports the ones that did not accept it. A rule that fails on
// the message (ReasonRenderFailed) or whose WHERE turns it down only skips
// it: that is counted, not returned, so that the publisher is not refused
// for what its payload contains. Every action returns as w says.
func (e *Engine) Publish(ctx context.Context, w ack.Wait, ev *Event) error {
	var stack [4]step // most publishes reach few actions: no allocation
	steps := stack[:0]
	for i, r := range e.rules {
		if !r.Matches(ev.Topic) {
			continue
		}
		r.Metrics.Matched.Add(1)
		rec, ok, err := r.Eval(ev)
		if err != nil {
			r.Metrics.Failed.Add(1)
			e.logFailure(r, ev, err)
			continue
		}
		if !ok {
			r.Metrics.NoResult.Add(1)
			continue
		}
		r.Metrics.Passed.Add(1)
		for _, a := range e.actions[i] {
			sa, ok := a.(Stager)
			if !ok {
				steps = append(steps, step{a: a, rec: rec})
				continue
			}
			st, err := sa.Stage(rec)
			if err != nil {
				for _, s := range steps {
					if s.st != nil {
						s.st.Discard()
					}
				}
				return err
			}
			if st != nil {
				steps = append(steps, step{st: st})
			}
		}
	}
	var errs []error
	for _, s := range steps {
		var err error
		if s.st != nil {
			err = s.st.Append(ctx, w)
		} else {
			err = s.a.Enqueue(ctx, w, s.rec)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// logFailure writes at most one line per second per rule, so that a
// publisher sending bad payloads cannot flood the log.
func (e *Engine) logFailure(r *Rule, ev *Event, err error) {
	if !logx.Allowed(&r.lastFailLog) {
		return
	}
	log := e.Logger
	if log == nil {
		log = slog.Default()
	}
	log.Warn("rule skipped a message", "rule", r.ID, "reason", ReasonRenderFailed,
		"topic", ev.Topic, "clientid", ev.ClientID, "err", err, "failed_total", r.Metrics.Failed.Load())
}
