// Package rule turns MQTT publishes into records for the sinks: EMQX's rule
// SQL (SELECT … FROM "filter" … WHERE …), the publish event the SQL sees,
// MQTT topic matching and the `${…}` templates that render records.
package rule

import (
	"fmt"
	"sync/atomic"
)

// ReasonRenderFailed is the drop reason of a message a rule failed on
// (bad JSON where a path needs it, a type error in an expression).
const ReasonRenderFailed = "render_failed"

// Metrics are a rule's counters, named as EMQX's rule metrics.
type Metrics struct {
	// Matched counts the publishes whose topic the rule reads (sql.matched).
	Matched atomic.Uint64
	// Passed counts the records handed to the actions (sql.passed).
	Passed atomic.Uint64
	// Failed counts the messages dropped with ReasonRenderFailed (sql.failed.exception).
	Failed atomic.Uint64
	// NoResult counts the messages WHERE turned down (sql.failed.no_result).
	NoResult atomic.Uint64
}

// Stats is a snapshot of Metrics.
type Stats struct {
	Matched  uint64 `json:"matched"`
	Passed   uint64 `json:"passed"`
	Failed   uint64 `json:"failed"`
	NoResult uint64 `json:"no_result"`
}

// Rule is one compiled rule: the topics it reads and the actions it feeds.
type Rule struct {
	ID      string
	Stmt    *Statement
	Actions []string
	// Metrics are updated by Engine.Publish.
	Metrics Metrics

	lastFailLog atomic.Int64 // unix nanoseconds of the last failure logged
}

// Compile parses a rule's SQL.
func Compile(id, sql string, actions []string) (*Rule, error) {
	st, err := Parse(sql)
	if err != nil {
		return nil, fmt.Errorf("rule %s: %w", id, err)
	}
	return &Rule{ID: id, Stmt: st, Actions: actions}, nil
}

// Matches reports whether a publish on topic is read by the rule.
func (r *Rule) Matches(topic string) bool {
	for _, f := range r.Stmt.From {
		if MatchTopic(f, topic) {
			return true
		}
	}
	return false
}

// Stats returns the rule's counters.
func (r *Rule) Stats() Stats {
	return Stats{
		Matched:  r.Metrics.Matched.Load(),
		Passed:   r.Metrics.Passed.Load(),
		Failed:   r.Metrics.Failed.Load(),
		NoResult: r.Metrics.NoResult.Load(),
	}
}

// Eval applies the rule's SELECT and WHERE to ev without counting. ok is
// false when WHERE turned the message down; an error means the message
// cannot be handled by this rule. For SELECT * the record is ev itself. The
// record reads ev (and its payload) and is valid as long as ev is unchanged.
func (r *Rule) Eval(ev *Event) (rec Record, ok bool, err error) {
	return r.Stmt.eval(ev)
}

func (st *Statement) eval(ev *Event) (Record, bool, error) {
	// A Statement built by hand (no fields) selects the event, as before SELECT had fields.
	star := st.star || len(st.fields) == 0
	if star && st.where == nil {
		return ev, true, nil
	}
	// One allocation holds the evaluation state and, for a few fields, the
	// record: expressions are interface calls, so the context escapes anyway.
	s := &evalState{c: newEvalCtx(ev)}
	c := &s.c
	if st.where != nil && st.whereFirst {
		if ok, err := c.cond(st.where); !ok || err != nil {
			return nil, false, err
		}
	}
	if star {
		return ev, true, nil
	}
	out := &s.out
	out.pairs = s.buf[:0]
	if n := 2 * len(st.fields); n > len(s.buf) {
		out.pairs = make([]value, 0, n)
	}
	c.out = out
	for _, f := range st.fields {
		if f.star {
			out.ev, out.starAt = ev, len(out.pairs)/2
			continue
		}
		v, err := f.e.eval(c)
		if err != nil {
			return nil, false, fmt.Errorf("SELECT: %w", err)
		}
		out.put(f.alias, v)
	}
	if st.where != nil && !st.whereFirst {
		if ok, err := c.cond(st.where); !ok || err != nil {
			return nil, false, err
		}
	}
	return out, true, nil
}

// evalState is everything one rule needs for one message.
type evalState struct {
	c   evalCtx
	out selected
	buf [4]value
}

// cond evaluates a WHERE condition: only the boolean true lets the message through.
func (c *evalCtx) cond(e expr) (bool, error) {
	v, err := e.eval(c)
	if err != nil {
		return false, fmt.Errorf("WHERE: %w", err)
	}
	return v.isTrue(), nil
}
