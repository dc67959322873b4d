package conf

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/mqkafka/mqkafka/rule"
)

// Source is a Kafka consumer feeding MQTT; names and defaults follow EMQX's
// Kafka consumer source (and RMQTT's ingress bridge for the headers).
type Source struct {
	Name      string `toml:"name,required"`
	Connector string `toml:"connector,required"`
	// Topic is one Kafka topic name or an array of them; Topics() is the
	// full list, including the topics of topic_mapping.
	Topic any `toml:"topic"`
	// GroupID is the consumer group; empty means "mqkafka-<name>".
	GroupID string `toml:"group_id"`
	// OffsetResetPolicy is where a group without a committed offset starts:
	// "latest" or "earliest".
	OffsetResetPolicy    string        `toml:"offset_reset_policy"`
	OffsetCommitInterval time.Duration `toml:"offset_commit_interval"`
	// KeyEncodingMode and ValueEncodingMode are "none" (text as it is) or "base64".
	KeyEncodingMode   string `toml:"key_encoding_mode"`
	ValueEncodingMode string `toml:"value_encoding_mode"`
	// MaxBatchBytes is the most bytes fetched per partition at once.
	MaxBatchBytes ByteSize `toml:"max_batch_bytes"`
	// MaxWaitTime is how long Kafka may hold a fetch waiting for data.
	MaxWaitTime time.Duration `toml:"max_wait_time"`
	// HeadersAsUserProperties copies Kafka headers into MQTT 5 User-Property pairs.
	HeadersAsUserProperties bool `toml:"headers_as_user_properties"`
	// StartDelay lets devices reconnect to their sessions before the source
	// starts consuming.
	StartDelay   time.Duration  `toml:"start_delay"`
	TopicMapping []TopicMapping `toml:"topic_mapping"`
}

// TopicMapping publishes the messages of one Kafka topic to MQTT.
type TopicMapping struct {
	KafkaTopic string `toml:"kafka_topic,required"`
	// MQTTTopic is a template: "devices/${.key}/cmd".
	MQTTTopic string `toml:"mqtt_topic,required"`
	QoS       int    `toml:"qos"`
	Retain    bool   `toml:"retain"`
	// PayloadTemplate renders the payload; "${.}" is the message as JSON.
	PayloadTemplate string `toml:"payload_template"`
}

// SetDefaults fills a source's defaults, as EMQX's Kafka consumer has them.
func (s *Source) SetDefaults() {
	s.OffsetResetPolicy = "latest"
	s.OffsetCommitInterval = 5 * time.Second
	s.KeyEncodingMode = "none"
	s.ValueEncodingMode = "none"
	s.MaxBatchBytes = 896 * KB
	s.MaxWaitTime = time.Second
}

// SetDefaults fills a topic mapping's defaults, as EMQX's.
func (m *TopicMapping) SetDefaults() {
	m.QoS = 1
	m.PayloadTemplate = "${.}"
}

// Topics returns every Kafka topic the source reads: topic, then the
// mappings' topics not already listed.
func (s *Source) Topics() []string {
	var ts []string
	add := func(t string) {
		for _, have := range ts {
			if have == t {
				return
			}
		}
		ts = append(ts, t)
	}
	switch v := s.Topic.(type) {
	case string:
		add(v)
	case []any:
		for _, t := range v {
			if t, ok := t.(string); ok {
				add(t)
			}
		}
	}
	for _, m := range s.TopicMapping {
		add(m.KafkaTopic)
	}
	return ts
}

// Group returns the consumer group id.
func (s *Source) Group() string {
	if s.GroupID != "" {
		return s.GroupID
	}
	return "mqkafka-" + s.Name
}

// Republish is EMQX's republish rule action, written as a [[rules.republish]]
// table: it publishes the rule's record back into the broker.
type Republish struct {
	Topic   string `toml:"topic,required"`
	Payload string `toml:"payload"`
	// QoS is 0, 1, 2 or a template rendering one of them.
	QoS any `toml:"qos"`
	// Retain is a boolean or a template rendering "true" or "false".
	Retain any `toml:"retain"`
	// UserProperties is a placeholder yielding a JSON object or a
	// [{"key":…,"value":…}] list, e.g. "${pub_props.'User-Property'}".
	UserProperties string `toml:"user_properties"`
}

// SetDefaults fills a republish action's defaults, as EMQX's.
func (r *Republish) SetDefaults() {
	r.Payload = "${payload}"
	r.QoS = "${qos}"
	r.Retain = "${flags.retain}"
	r.UserProperties = "${user_properties}"
}

// QoSTemplate returns qos as template text ("1" or "${qos}").
func (r *Republish) QoSTemplate() string { return scalarText(r.QoS) }

// RetainTemplate returns retain as template text ("true" or "${flags.retain}").
func (r *Republish) RetainTemplate() string { return scalarText(r.Retain) }

func scalarText(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case int64:
		return strconv.FormatInt(v, 10)
	case bool:
		return strconv.FormatBool(v)
	}
	return fmt.Sprint(v)
}

// RepublishActionName is how a rule's republish action is registered: it
// is not written in actions, but comes from the rule's [[rules.republish]].
func RepublishActionName(ruleID string, i int) string {
	return "republish:" + ruleID + "#" + strconv.Itoa(i)
}

// ErrInvalidTopic marks a rendered MQTT topic that can never be published:
// dropping the message is final, retrying it cannot help.
var ErrInvalidTopic = errors.New("invalid MQTT topic")

// ValidMQTTTopic checks a topic name to publish to: not empty, no
// wildcards, UTF-8 without NUL, at most 65535 bytes.
func ValidMQTTTopic(t string) error {
	switch {
	case t == "":
		return errors.New("empty MQTT topic")
	case len(t) > 65535:
		return errors.New("MQTT topic longer than 65535 bytes")
	case strings.ContainsAny(t, "+#"):
		return fmt.Errorf("MQTT topic %q: a topic to publish to has no wildcards", t)
	case strings.IndexByte(t, 0) >= 0 || !utf8.ValidString(t):
		return fmt.Errorf("MQTT topic %q: not valid UTF-8 text", t)
	}
	return nil
}

// validateSources checks every source, and the rules' republish actions and
// source references, which need the sources.
func (c *Config) validateSources(bad func(path, format string, args ...any), enum func(path, v string, allowed ...string)) {
	connectors := map[string]bool{}
	for _, cn := range c.Connectors {
		connectors[cn.Name] = true
	}
	template := func(path, src string) *rule.Template {
		t, err := rule.CompileTemplate(src)
		if err != nil {
			bad(path, "%v", err)
		}
		return t
	}
	names := map[string]bool{}
	for i := range c.Sources {
		s := &c.Sources[i]
		p := fmt.Sprintf("sources[%d]", i)
		if names[s.Name] {
			bad(p+".name", "duplicate source name %q", s.Name)
		}
		names[s.Name] = true
		if s.Name == "" {
			bad(p+".name", "must not be empty")
		}
		if !connectors[s.Connector] {
			bad(p+".connector", "no connector named %q", s.Connector)
		}
		var listed []string
		switch v := s.Topic.(type) {
		case nil:
		case string:
			listed = []string{v}
		case []any:
			for j, t := range v {
				ts, ok := t.(string)
				if !ok {
					bad(fmt.Sprintf("%s.topic[%d]", p, j), "expected a Kafka topic name (a string)")
					continue
				}
				listed = append(listed, ts)
			}
		default:
			bad(p+".topic", "expected a Kafka topic name or an array of them")
		}
		for _, t := range listed {
			if err := ValidTopicName(t); err != nil {
				bad(p+".topic", "%v", err)
			}
		}
		if s.Topic == nil && len(s.TopicMapping) == 0 {
			bad(p, "a source needs topic or at least one [[sources.topic_mapping]]")
		}
		mapped := map[string]bool{}
		for j := range s.TopicMapping {
			m := &s.TopicMapping[j]
			mp := fmt.Sprintf("%s.topic_mapping[%d]", p, j)
			if err := ValidTopicName(m.KafkaTopic); err != nil {
				bad(mp+".kafka_topic", "%v", err)
			}
			if mapped[m.KafkaTopic] {
				bad(mp+".kafka_topic", "Kafka topic %q is already mapped: a topic may appear in one mapping only", m.KafkaTopic)
			}
			mapped[m.KafkaTopic] = true
			if listed != nil && !oneOf(m.KafkaTopic, listed...) {
				bad(mp+".kafka_topic", "%q is not one of the source's topic", m.KafkaTopic)
			}
			if t := template(mp+".mqtt_topic", m.MQTTTopic); t != nil && t.IsStatic() {
				if err := ValidMQTTTopic(m.MQTTTopic); err != nil {
					bad(mp+".mqtt_topic", "%v", err)
				}
			}
			if m.QoS < 0 || m.QoS > 2 {
				bad(mp+".qos", "must be 0, 1 or 2")
			}
			template(mp+".payload_template", m.PayloadTemplate)
		}
		enum(p+".offset_reset_policy", s.OffsetResetPolicy, "latest", "earliest")
		enum(p+".key_encoding_mode", s.KeyEncodingMode, "none", "base64")
		enum(p+".value_encoding_mode", s.ValueEncodingMode, "none", "base64")
		// librdkafka's limits: auto.commit.interval.ms and fetch.wait.max.ms.
		if s.OffsetCommitInterval < time.Millisecond || s.OffsetCommitInterval > 86400*time.Second {
			bad(p+".offset_commit_interval", "must be between 1ms and 24h")
		}
		if s.MaxWaitTime < 0 || s.MaxWaitTime > 300*time.Second {
			bad(p+".max_wait_time", "must be between 0s and 300s")
		}
		if s.MaxBatchBytes < 1 || s.MaxBatchBytes > 1_000_000_000 {
			bad(p+".max_batch_bytes", "must be between 1 byte and 1000000000 bytes")
		}
		if s.StartDelay < 0 {
			bad(p+".start_delay", "must not be negative")
		}
	}

	for i, r := range c.Rules {
		p := fmt.Sprintf("rules[%d]", i)
		if st, err := rule.Parse(r.SQL); err == nil {
			for _, src := range st.Sources {
				if !names[src] {
					bad(p+".sql", "FROM %q: no source named %q", rule.SourcePrefix+src, src)
				}
			}
		}
		for j := range r.Republish {
			rp := &r.Republish[j]
			ap := fmt.Sprintf("%s.republish[%d]", p, j)
			if t := template(ap+".topic", rp.Topic); t != nil && t.IsStatic() {
				if err := ValidMQTTTopic(rp.Topic); err != nil {
					bad(ap+".topic", "%v", err)
				}
			}
			template(ap+".payload", rp.Payload)
			template(ap+".user_properties", rp.UserProperties)
			switch v := rp.QoS.(type) {
			case int64:
				if v < 0 || v > 2 {
					bad(ap+".qos", "must be 0, 1, 2 or a template such as \"${qos}\"")
				}
			case string:
				if t := template(ap+".qos", v); t != nil && t.IsStatic() {
					if n, err := strconv.Atoi(v); err != nil || n < 0 || n > 2 {
						bad(ap+".qos", "must be 0, 1, 2 or a template such as \"${qos}\"")
					}
				}
			default:
				bad(ap+".qos", "must be 0, 1, 2 or a template such as \"${qos}\"")
			}
			switch v := rp.Retain.(type) {
			case bool:
			case string:
				if t := template(ap+".retain", v); t != nil && t.IsStatic() && v != "true" && v != "false" {
					bad(ap+".retain", "must be true, false or a template such as \"${flags.retain}\"")
				}
			default:
				bad(ap+".retain", "must be true, false or a template such as \"${flags.retain}\"")
			}
		}
	}
}
