package rule

import (
	"context"
	"errors"
	"fmt"
)

// Action receives the records of the rules that name it.
type Action interface {
	Enqueue(ctx context.Context, r Record) error
}

// Engine matches publishes against every rule and hands the record to the
// matching rules' actions.
type Engine struct {
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

// Matches reports whether any rule reads topic; callers build the event only then.
func (e *Engine) Matches(topic string) bool {
	for _, r := range e.rules {
		if r.Matches(topic) {
			return true
		}
	}
	return false
}

// Publish runs the event through every matching rule. Every action is
// tried; the error reports the ones that did not accept the record.
func (e *Engine) Publish(ctx context.Context, ev *Event) error {
	var errs []error
	for i, r := range e.rules {
		if !r.Matches(ev.Topic) {
			continue
		}
		for _, a := range e.actions[i] {
			if err := a.Enqueue(ctx, ev); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
