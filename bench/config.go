package bench

import (
	"fmt"
	"strings"
	"time"
)

// mqConfig is the mqkafka config of one run.
type mqConfig struct {
	port    int
	dataDir string
	// kafka is the bootstrap address; empty for a broker without Kafka
	// (broker-raw, connections).
	kafka     string
	topic     string
	buffer    string
	fsync     string
	linger    time.Duration
	partLimit int64
	shutdown  time.Duration
	source    *sourceConfig
	// cold makes the sink's topic a template (of the same name), so that
	// the sink opens it only when the first record names it.
	cold bool
	// cluster makes it a node of a cluster, with no sink.
	cluster *clusterConfig
}

// sourceConfig maps one Kafka topic to MQTT.
type sourceConfig struct {
	kafkaTopic string
	mqttTopic  string
	qos        int
}

// benchFilter is what the bench's sink reads; the value is the payload as
// it is, so the consumer reads the message id and send time back.
const benchFilter = "bench/#"

// sinkTopic is the sink's topic template: `${cold}` names no field and
// renders empty.
func (c mqConfig) sinkTopic() string {
	if c.cold {
		return c.topic + "${cold}"
	}
	return c.topic
}

func (c mqConfig) toml() string {
	var b strings.Builder
	shutdown := c.shutdown
	if shutdown <= 0 {
		shutdown = 10 * time.Second
	}
	fmt.Fprintf(&b, "shutdown_timeout = %q\n", shutdown.String())
	// No admin listener: its fixed default port would collide between
	// runs and with anything else on the machine.
	b.WriteString("[admin]\nlisten = \"\"\n")
	fmt.Fprintf(&b, "[broker]\nlisteners = [{ address = %q }]\ndata_dir = %q\n", fmt.Sprintf("127.0.0.1:%d", c.port), c.dataDir)
	if c.cluster != nil {
		fmt.Fprintf(&b, "node = %q\n", c.cluster.node)
	}
	// The connections scenario measures how fast the broker can accept,
	// not the default max_conn_rate.
	b.WriteString("max_conn_rate = \"infinity\"\n")
	b.WriteString("[broker.auth]\nallow_anonymous = true\n")
	if c.kafka == "" {
		return b.String()
	}
	fmt.Fprintf(&b, "\n[[connectors]]\nname = \"kafka\"\nbootstrap_hosts = %q\n", c.kafka)
	if cl := c.cluster; cl != nil {
		fmt.Fprintf(&b, "\n[cluster]\nname = %q\nconnector = \"kafka\"\nreplication_factor = -1\npartitions = %d\n", cl.name, max(cl.partitions, 1))
		return b.String()
	}
	if c.source != nil {
		fmt.Fprintf(&b, `
[[sources]]
name = "bench"
connector = "kafka"
offset_reset_policy = "earliest"
max_wait_time = "100ms"
[[sources.topic_mapping]]
kafka_topic = %q
mqtt_topic = %q
qos = %d
payload_template = "${.value}"
`, c.source.kafkaTopic, c.source.mqttTopic, c.source.qos)
		return b.String()
	}
	fmt.Fprintf(&b, `
[[rules]]
id = "bench"
sql = 'SELECT * FROM "%s"'
actions = ["kafka_producer:bench"]

[[sinks]]
name = "bench"
connector = "kafka"
topic = %q
key = "${clientid}"
value = "${payload}"
max_linger_time = %q
[sinks.buffer]
mode = %q
fsync = %q
per_partition_limit = "%dMB"
`, benchFilter, c.sinkTopic(), c.linger.String(), c.buffer, c.fsync, max(c.partLimit>>20, 256))
	return b.String()
}
