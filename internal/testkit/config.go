package testkit

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// BaseConfig is a broker on a free port with one connector, one rule on
// t/# and one sink writing to topic.
func BaseConfig(t testing.TB, kafkaAddr, topic string) string {
	return SinkConfig(t, kafkaAddr, fmt.Sprintf("topic = %q", topic))
}

// SinkConfig is one connector, one rule on t/# and one sink given as TOML lines.
func SinkConfig(t testing.TB, kafkaAddr, sinkTOML string) string {
	return ConfigHead(t, kafkaAddr, "1s", `"api.version.request.timeout.ms" = "10000"`) + SinkTables("r1", "s1", sinkTOML)
}

// SinkTables is a rule ruleID on t/# whose one action is sink, a sink of
// connector "k" given as TOML lines.
func SinkTables(ruleID, sink, sinkTOML string) string {
	return fmt.Sprintf(`
[[rules]]
id = %q
sql = 'SELECT * FROM "t/#"'
actions = ["kafka_producer:%s"]

[[sinks]]
name = %q
connector = "k"
%s
`, ruleID, sink, sink, sinkTOML)
}

// RepublishRule is a rule ruleID of sql whose one action is a republish
// given as TOML lines.
func RepublishRule(ruleID, sql, republishTOML string) string {
	return fmt.Sprintf(`
[[rules]]
id = %q
sql = '''%s'''
[[rules.republish]]
%s
`, ruleID, sql, republishTOML)
}

// SourceConfig is a broker on a free port, one connector and the given
// sources, rules and sinks as TOML.
func SourceConfig(t testing.TB, kafkaAddr, tables string) string {
	return ConfigHead(t, kafkaAddr, "2s", `"heartbeat.interval.ms" = "300"
"session.timeout.ms" = "6000"`) + tables
}

// SourceTable is a source of connector "k" named name that reads topic from
// the earliest offset and publishes each record's value to mqttTopic at QoS
// 1; sourceTOML are more of the source's keys (start_delay …).
func SourceTable(name, topic, mqttTopic, sourceTOML string) string {
	return Source(name, fmt.Sprintf("topic = %q\noffset_reset_policy = \"earliest\"\n%s", topic, sourceTOML),
		TopicMapping(topic, mqttTopic, "qos = 1\npayload_template = \"${.value}\""))
}

// Source is a source of connector "k" named name with more keys given as
// TOML lines, and the topic mappings made by TopicMapping.
func Source(name, sourceTOML string, mappings ...string) string {
	return fmt.Sprintf(`
[[sources]]
name = %q
connector = "k"
%s
%s`, name, sourceTOML, strings.Join(mappings, ""))
}

// TopicMapping is a source's mapping of kafkaTopic to mqttTopic with more
// keys given as TOML lines (qos, payload_template).
func TopicMapping(kafkaTopic, mqttTopic, mappingTOML string) string {
	return fmt.Sprintf(`[[sources.topic_mapping]]
kafka_topic = %q
mqtt_topic = %q
%s
`, kafkaTopic, mqttTopic, mappingTOML)
}

// ConfigHead is a broker on a free loopback port, an open admin listener on
// another and one connector "k"; props are extra librdkafka properties.
func ConfigHead(t testing.TB, kafkaAddr, shutdown, props string) string {
	return fmt.Sprintf(`
shutdown_timeout = %q
[broker]
listeners = [{ address = "127.0.0.1:0" }]
data_dir = %q
[broker.auth]
allow_anonymous = true
[admin]
listen = "127.0.0.1:0"

[[connectors]]
name = "k"
bootstrap_hosts = %q
metadata_request_timeout = "1s"
[connectors.properties]
"reconnect.backoff.max.ms" = "200"
%s
`, shutdown, t.TempDir(), kafkaAddr, props)
}

// WithConnectorTables adds sub-tables ([connectors.ssl], …) to BaseConfig's connector.
func WithConnectorTables(t testing.TB, cfg, tables string) string {
	t.Helper()
	i := strings.Index(cfg, "\n[[rules]]")
	if i < 0 {
		t.Fatal("config has no [[rules]]")
	}
	return cfg[:i] + "\n" + tables + cfg[i:]
}

// SASLTable is a connector's [connectors.authentication] for user admin.
func SASLTable(mechanism, password string) string {
	return fmt.Sprintf("[connectors.authentication]\nmechanism = %q\nusername = \"admin\"\npassword = %q\n", mechanism, password)
}

// SSLTable is a connector's [connectors.ssl] trusting caFile, plus extra keys.
func SSLTable(caFile string, extra string) string {
	return fmt.Sprintf("[connectors.ssl]\nenable = true\ncacertfile = %q\n%s", caFile, extra)
}

// FixedListener pins the MQTT listener to a port so that restarts keep it.
func FixedListener(cfg string, port int) string {
	return strings.Replace(cfg, `address = "127.0.0.1:0"`, fmt.Sprintf(`address = "127.0.0.1:%d"`, port), 1)
}

// WriteConfig writes text to a mqkafka.toml of its own and returns its path.
func WriteConfig(t testing.TB, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "mqkafka.toml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
