package broker

import (
	"context"
	"log/slog"
	"strconv"
	"sync/atomic"

	"github.com/tidwall/gjson"

	"github.com/mqkafka/mqkafka/ack"
	"github.com/mqkafka/mqkafka/conf"
	"github.com/mqkafka/mqkafka/internal/logx"
	"github.com/mqkafka/mqkafka/rule"
)

// Republish drop reasons.
const (
	// ReasonRenderFailed: the topic, QoS or retain flag did not render to a valid value.
	ReasonRenderFailed = "render_failed"
	// ReasonLoop: the topic is one the rule itself reads, which would
	// republish the message to itself forever.
	ReasonLoop = "loop"
	// ReasonBrokerError: the broker did not take the message (it is stopping).
	ReasonBrokerError = "broker_error"
)

// RepublishCounters are a republish action's counters.
type RepublishCounters struct {
	Success     atomic.Int64 // messages handed to the broker
	Dropped     atomic.Int64 // records not republished, by any reason below
	RenderError atomic.Int64
	Loop        atomic.Int64
	BrokerError atomic.Int64
}

// Republish is EMQX's republish rule action: it renders the rule's record
// into an MQTT message and publishes it into the broker.
type Republish struct {
	// Counters are the action's metrics.
	Counters RepublishCounters

	rule      string
	from      []string // the rule's own MQTT topic filters
	in        *Inline
	log       *slog.Logger
	topic     *rule.Template
	payload   *rule.Template
	qos       *rule.Template
	retain    *rule.Template
	userProps *rule.Template

	lastLog atomic.Int64
}

// NewRepublish compiles a rule's republish action; from are the rule's
// MQTT topic filters, which the action refuses to publish to.
func NewRepublish(ruleID string, from []string, c conf.Republish, in *Inline, log *slog.Logger) (*Republish, error) {
	r := &Republish{rule: ruleID, from: from, in: in, log: log.With("rule", ruleID, "action", "republish")}
	for _, t := range []struct {
		dst **rule.Template
		src string
	}{
		{&r.topic, c.Topic}, {&r.payload, c.Payload}, {&r.qos, c.QoSTemplate()},
		{&r.retain, c.RetainTemplate()}, {&r.userProps, c.UserProperties},
	} {
		tpl, err := rule.CompileTemplate(t.src)
		if err != nil {
			return nil, err
		}
		*t.dst = tpl
	}
	return r, nil
}

// Enqueue implements rule.Action. It never refuses the record: a message
// that cannot be republished is counted and logged, and the publish that
// triggered the rule is still acknowledged, as in EMQX. w does not apply:
// the republished message is a publish of its own, taken in the call.
func (r *Republish) Enqueue(ctx context.Context, _ ack.Wait, rec rule.Record) error {
	buf := make([]byte, 0, 128)
	buf = r.topic.Render(buf, rec)
	topic := string(buf)
	if err := conf.ValidMQTTTopic(topic); err != nil {
		r.drop(&r.Counters.RenderError, ReasonRenderFailed, topic, err)
		return nil
	}
	for _, f := range r.from {
		if rule.MatchTopic(f, topic) {
			r.drop(&r.Counters.Loop, ReasonLoop, topic, nil)
			return nil
		}
	}
	qos, retain := byte(0), false
	// EMQX: a QoS or retain that renders empty (an absent field) is 0 / false.
	if b := r.qos.Render(buf[:0], rec); len(b) > 0 {
		n, err := strconv.Atoi(string(b))
		if err != nil || n < 0 || n > 2 {
			r.drop(&r.Counters.RenderError, ReasonRenderFailed, topic, errBadQoS(b))
			return nil
		}
		qos = byte(n)
	}
	if b := r.retain.Render(buf[:0], rec); len(b) > 0 {
		v, err := strconv.ParseBool(string(b))
		if err != nil {
			r.drop(&r.Counters.RenderError, ReasonRenderFailed, topic, errBadRetain(b))
			return nil
		}
		retain = v
	}
	props := UserProps(r.userProps.Render(buf[:0], rec))
	payload := r.payload.Render(nil, rec)
	if err := r.in.Publish(ctx, topic, payload, retain, qos, props); err != nil {
		r.drop(&r.Counters.BrokerError, ReasonBrokerError, topic, err)
		return nil
	}
	r.Counters.Success.Add(1)
	return nil
}

type errBadQoS []byte

func (e errBadQoS) Error() string {
	return "qos rendered " + strconv.Quote(string(e)) + ", want 0, 1 or 2"
}

type errBadRetain []byte

func (e errBadRetain) Error() string {
	return "retain rendered " + strconv.Quote(string(e)) + ", want true or false"
}

func (r *Republish) drop(c *atomic.Int64, reason, topic string, err error) {
	c.Add(1)
	n := r.Counters.Dropped.Add(1)
	if logx.Allowed(&r.lastLog) {
		r.log.Warn("republish dropped a message", "reason", reason, "topic", topic, "err", err, "dropped_total", n)
	}
}

// UserProps reads User-Property pairs from rendered text: a JSON object
// ({"k":"v"}, as ${pub_props.'User-Property'} renders) or a list of
// {"key":…,"value":…} objects. Anything else yields none; non-string
// values are kept as their JSON text.
func UserProps(b []byte) [][2]string {
	if len(b) == 0 {
		return nil
	}
	root := gjson.ParseBytes(b)
	var out [][2]string
	text := func(v gjson.Result) string {
		if v.Type == gjson.String {
			return v.Str
		}
		return v.Raw
	}
	switch {
	case root.IsObject():
		root.ForEach(func(k, v gjson.Result) bool {
			out = append(out, [2]string{k.Str, text(v)})
			return true
		})
	case root.IsArray():
		root.ForEach(func(_, v gjson.Result) bool {
			if k := v.Get("key"); k.Exists() {
				out = append(out, [2]string{text(k), text(v.Get("value"))})
			}
			return true
		})
	}
	return out
}
