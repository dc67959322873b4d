package admin

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/mqkafka/mqkafka/conf"
	"github.com/mqkafka/mqkafka/producer"
	"github.com/mqkafka/mqkafka/rule"
)

// RuleTest is EMQX's "Enable Test": one publish run through rule SQL and,
// optionally, a sink's templates. The CLI and the API share it.
type RuleTest struct {
	SQL            string            `json:"sql"`
	Topic          string            `json:"topic"`
	Payload        string            `json:"payload"`
	ClientID       string            `json:"clientid"`
	Username       string            `json:"username"`
	QoS            int               `json:"qos"`
	UserProperties map[string]string `json:"user_properties"`
	Sink           string            `json:"sink"`
	Partitions     int               `json:"partitions"`
}

// RuleTestResult is what the test shows.
type RuleTestResult struct {
	// Outcome is "ok", "no_match" (FROM), "no_result" (WHERE) or "failed".
	Outcome string            `json:"outcome"`
	Reason  string            `json:"reason,omitempty"`
	Record  json.RawMessage   `json:"record,omitempty"`
	Kafka   *producer.Preview `json:"kafka,omitempty"`
}

// Run compiles the SQL (an error is a syntax error, with line and column)
// and evaluates it on the test publish.
func (t RuleTest) Run(cfg *conf.Config) (RuleTestResult, error) {
	if t.Topic == "" {
		return RuleTestResult{}, fmt.Errorf("topic: a test publish needs a topic")
	}
	r, err := rule.Compile("test", t.SQL, nil)
	if err != nil {
		return RuleTestResult{}, err
	}
	var sink *conf.Sink
	if t.Sink != "" {
		for i := range cfg.Sinks {
			if cfg.Sinks[i].Name == t.Sink {
				sink = &cfg.Sinks[i]
			}
		}
		if sink == nil {
			return RuleTestResult{}, fmt.Errorf("no sink named %q", t.Sink)
		}
	}
	if !r.Matches(t.Topic) {
		return RuleTestResult{Outcome: "no_match", Reason: fmt.Sprintf("the rule reads %s, not %q", strings.Join(r.Stmt.From, ", "), t.Topic)}, nil
	}
	clientID := t.ClientID
	if clientID == "" {
		clientID = "test-client"
	}
	node := "mqkafka@localhost"
	if h, err := os.Hostname(); err == nil {
		node = "mqkafka@" + h
	}
	if cfg != nil && cfg.Broker.Node != "" {
		node = cfg.Broker.Node
	}
	now := time.Now().UnixMilli()
	ev := &rule.Event{ClientID: clientID, Username: t.Username, Topic: t.Topic, Payload: []byte(t.Payload),
		QoS: byte(t.QoS), PeerHost: "127.0.0.1", Timestamp: now, PublishReceivedAt: now, Node: node}
	for k, v := range t.UserProperties {
		ev.UserProps = append(ev.UserProps, [2]string{k, v})
	}
	rec, ok, err := r.Eval(ev)
	switch {
	case err != nil:
		return RuleTestResult{Outcome: "failed", Reason: err.Error()}, nil
	case !ok:
		return RuleTestResult{Outcome: "no_result", Reason: "WHERE is false for this publish"}, nil
	}
	res := RuleTestResult{Outcome: "ok", Record: rec.AppendJSON(nil)}
	if sink != nil {
		pv, err := producer.Render(*sink, rec, t.Partitions)
		if err != nil {
			return RuleTestResult{Outcome: "failed", Reason: "render_failed: " + err.Error(), Record: res.Record}, nil
		}
		res.Kafka = &pv
	}
	return res, nil
}
