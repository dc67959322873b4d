// Package rule turns MQTT publishes into records for the sinks: rule SQL
// (SELECT … FROM "filter" …), the publish event the SQL sees, MQTT topic
// matching and the `${…}` templates that render records.
package rule

import "fmt"

// Rule is one compiled rule: the topics it reads and the actions it feeds.
type Rule struct {
	ID      string
	Stmt    *Statement
	Actions []string
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
