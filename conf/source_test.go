package conf

import (
	"strings"
	"testing"
	"time"
)

// sourceHead is a connector and the start of a source; extra lines begin at line 6.
const sourceHead = `[[connectors]]
name = "k"
bootstrap_hosts = "127.0.0.1:9092"
[[sources]]
name = "src"
`

// TestSourceDefaults: an EMQX user's minimal source gets EMQX's defaults.
func TestSourceDefaults(t *testing.T) {
	cfg, ps := parseConnector(t, `[[sources]]
name = "src"
connector = "k"
[[sources.topic_mapping]]
kafka_topic = "in"
mqtt_topic = "devices/${.key}/cmd"
`)
	if len(ps) > 0 {
		t.Fatal(fmtProblems(ps))
	}
	s := cfg.Sources[0]
	if s.Group() != "mqkafka-src" || s.OffsetResetPolicy != "latest" || s.OffsetCommitInterval != 5*time.Second ||
		s.KeyEncodingMode != "none" || s.ValueEncodingMode != "none" || s.MaxBatchBytes != 896*KB ||
		s.MaxWaitTime != time.Second || s.StartDelay != 0 || s.HeadersAsUserProperties {
		t.Fatalf("defaults %+v", s)
	}
	if m := s.TopicMapping[0]; m.QoS != 1 || m.PayloadTemplate != "${.}" || m.Retain {
		t.Fatalf("mapping defaults %+v", m)
	}
	if got := s.Topics(); len(got) != 1 || got[0] != "in" {
		t.Fatalf("topics %v", got)
	}
}

// TestSourceProblems: every mistake is reported at its line.
func TestSourceProblems(t *testing.T) {
	for _, tc := range []struct {
		extra  string
		line   int
		substr string
	}{
		{"connector = \"nope\"\ntopic = \"t\"\n", 6, `no connector named "nope"`},
		{"connector = \"k\"\n", 4, "a source needs topic"},
		{"connector = \"k\"\ntopic = [\"a\", 1]\n", 7, "expected a Kafka topic name"},
		{"connector = \"k\"\ntopic = \"bad topic\"\n", 7, "invalid Kafka topic name"},
		{"connector = \"k\"\ntopic = \"t\"\noffset_reset_policy = \"newest\"\n", 8, `"newest" is not one of latest, earliest`},
		{"connector = \"k\"\ntopic = \"t\"\nvalue_encoding_mode = \"hex\"\n", 8, "value_encoding_mode"},
		{"connector = \"k\"\ntopic = \"t\"\nstart_delay = \"-1s\"\n", 8, "must not be negative"},
		{"connector = \"k\"\ntopic = \"t\"\n[[sources.topic_mapping]]\nkafka_topic = \"t\"\nmqtt_topic = \"a/#\"\n", 10, "no wildcards"},
		{"connector = \"k\"\ntopic = \"t\"\n[[sources.topic_mapping]]\nkafka_topic = \"t\"\nmqtt_topic = \"a/${.key\"\n", 10, "unclosed"},
		{"connector = \"k\"\ntopic = \"t\"\n[[sources.topic_mapping]]\nkafka_topic = \"other\"\nmqtt_topic = \"a\"\n", 9, `"other" is not one of the source's topic`},
		{"connector = \"k\"\ntopic = \"t\"\n[[sources.topic_mapping]]\nkafka_topic = \"t\"\nmqtt_topic = \"a\"\nqos = 3\n", 11, "must be 0, 1 or 2"},
		{"connector = \"k\"\n[[sources.topic_mapping]]\nkafka_topic = \"t\"\nmqtt_topic = \"a\"\n[[sources.topic_mapping]]\nkafka_topic = \"t\"\nmqtt_topic = \"b\"\n", 11, "already mapped"},
		{"connector = \"k\"\ntopic = \"t\"\n[[rules]]\nid = \"r\"\nsql = 'SELECT * FROM \"$bridges/kafka_consumer:nope\"'\n[[rules.republish]]\ntopic = \"x\"\n", 10, `no source named "nope"`},
		{"connector = \"k\"\ntopic = \"t\"\n[[rules]]\nid = \"r\"\nsql = 'SELECT * FROM \"t/#\"'\n[[rules.republish]]\ntopic = \"x\"\nqos = 5\n", 13, "must be 0, 1, 2 or a template"},
		{"connector = \"k\"\ntopic = \"t\"\n[[rules]]\nid = \"r\"\nsql = 'SELECT * FROM \"t/#\"'\n[[rules.republish]]\ntopic = \"x\"\nretain = \"maybe\"\n", 13, "must be true, false or a template"},
		{"connector = \"k\"\ntopic = \"t\"\n[[rules]]\nid = \"r\"\nsql = 'SELECT * FROM \"t/#\"'\n[[rules.republish]]\ntopic = \"x/+\"\n", 12, "no wildcards"},
		{"connector = \"k\"\ntopic = \"t\"\n[[rules]]\nid = \"r\"\nsql = 'SELECT * FROM \"t/#\"'\n[[rules.republish]]\npayload = \"x\"\n", 11, `missing required key "topic"`},
	} {
		cfgText := sourceHead + tc.extra
		_, err := Parse("test.toml", []byte(cfgText))
		if err == nil {
			t.Errorf("accepted:\n%s", cfgText)
			continue
		}
		e := err.(*Error)
		found := false
		for _, p := range e.Problems {
			if p.Line == tc.line && strings.Contains(p.Msg, tc.substr) {
				found = true
			}
		}
		if !found {
			t.Errorf("config:\n%s\ngot:\n%v\nwant a problem at line %d containing %q", cfgText, err, tc.line, tc.substr)
		}
	}
}

// TestRepublishOnly: a rule may have republish actions and no others;
// qos and retain take numbers, booleans or templates.
func TestRepublishOnly(t *testing.T) {
	cfg, err := Parse("test.toml", []byte(`
[[rules]]
id = "r"
sql = 'SELECT * FROM "t/#"'
[[rules.republish]]
topic = "out/${clientid}"
qos = 2
retain = true
[[rules.republish]]
topic = "out2"
`))
	if err != nil {
		t.Fatal(err)
	}
	rp := cfg.Rules[0].Republish
	if rp[0].QoSTemplate() != "2" || rp[0].RetainTemplate() != "true" || rp[0].Payload != "${payload}" {
		t.Fatalf("%+v", rp[0])
	}
	if rp[1].QoSTemplate() != "${qos}" || rp[1].RetainTemplate() != "${flags.retain}" || rp[1].UserProperties != "${user_properties}" {
		t.Fatalf("defaults %+v", rp[1])
	}
}
