package app

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/mqkafka/mqkafka/buffer"
	"github.com/mqkafka/mqkafka/internal/testkit"
)

// TestDynamicTopicsInDiskMode: a topic template picks the Kafka topic per
// record, in disk mode, across a restart with Kafka down.
func TestDynamicTopicsInDiskMode(t *testing.T) {
	port := testkit.FreePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	dataDir := t.TempDir()
	cfg := strings.Replace(testkit.SinkConfig(t, addr, `topic = "device-${payload.device}"
value = "${payload.n}"
[sinks.buffer]
mode = "disk"`), "data_dir = ", fmt.Sprintf("data_dir = %q\n#", dataDir), 1)
	cfg = strings.Replace(cfg, `shutdown_timeout = "1s"`, `shutdown_timeout = "200ms"`, 1)

	// Kafka down: the records wait on disk, per rendered topic.
	a := startApp(t, cfg)
	c := testkit.MQTTClient(t, a.broker.Addrs()[0], "dyn", nil)
	for i := range 20 {
		testkit.Publish(t, c, "t/d", 1, fmt.Appendf(nil, `{"device":"%c","n":%d}`, 'a'+i%2, i))
	}
	if err := a.Stop(); err == nil {
		t.Fatal("stop reported a drained buffer while Kafka was down")
	}
	testkit.NewKafka(t, port, kfake.SeedTopics(2, "device-a", "device-b"))
	b := startApp(t, cfg)
	c2 := testkit.MQTTClient(t, b.broker.Addrs()[0], "dyn2", nil)
	testkit.Publish(t, c2, "t/d", 1, []byte(`{"device":"a","n":20}`))
	testkit.Publish(t, c2, "t/d", 1, []byte(`{"device":"bad/name","n":21}`))

	for dev, want := range map[string]int{"device-a": 11, "device-b": 10} {
		got := rawValues(t, addr, dev, want, 20*time.Second)
		if len(got) != want {
			t.Fatalf("%s holds %d records, want %d: %v", dev, len(got), want, got)
		}
	}
	testkit.WaitFor(t, 5*time.Second, "render_failed drop", func() bool {
		return b.sinks[0].sink.Counters.Dropped()[buffer.ReasonRenderFailed] == 1
	})
}

// TestKeyDispatch: key_dispatch puts a key on the partition the Java
// partitioner would choose, so every record of a key is in one partition.
func TestKeyDispatch(t *testing.T) {
	_, addr := testkit.NewKafka(t, 0, kfake.SeedTopics(4, "kd"))
	a := startApp(t, testkit.SinkConfig(t, addr, `topic = "kd"
key = "${payload.k}"
value = "${payload.k}"
partition_strategy = "key_dispatch"`))
	c := testkit.MQTTClient(t, a.broker.Addrs()[0], "kd", nil)
	keys := []string{"21", "foobar", "a-little-bit-long-string", "a-little-bit-longer-string", "abc"}
	// toPositive(murmur2(key)) % 4 with the Java vectors of Kafka's UtilsTest.
	javaHash := map[string]int32{"21": -973932308, "foobar": -790332482, "a-little-bit-long-string": -985981536,
		"a-little-bit-longer-string": -1486304829, "abc": 479470107}
	for i := range 50 {
		k := keys[i%len(keys)]
		testkit.Publish(t, c, "t/kd", 1, fmt.Appendf(nil, `{"k":%q}`, k))
	}
	recs := testkit.Consume(t, addr, "kd", 50, 20*time.Second)
	if len(recs) != 50 {
		t.Fatalf("%d records", len(recs))
	}
	for _, r := range recs {
		want := (javaHash[string(r.Key)] & 0x7fffffff) % 4
		if r.Partition != want {
			t.Fatalf("key %q in partition %d, the Java partitioner says %d", r.Key, r.Partition, want)
		}
	}
}

// TestFixedPartition: every record goes to the configured partition; a
// partition the topic does not have drops with unknown_topic.
func TestFixedPartition(t *testing.T) {
	_, addr := testkit.NewKafka(t, 0, kfake.SeedTopics(3, "fx"))
	cfg := testkit.SinkConfig(t, addr, `topic = "fx"
partition_strategy = "fixed"
partition = 2`) + testkit.SinkTables("r2", "s2", `topic = "fx"
partition_strategy = "fixed"
partition = 7`)
	a := startApp(t, cfg)
	c := testkit.MQTTClient(t, a.broker.Addrs()[0], "fx", nil)
	for i := range 10 {
		testkit.Publish(t, c, "t/fx", 1, fmt.Appendf(nil, "m%d", i))
	}
	recs := testkit.Consume(t, addr, "fx", 10, 20*time.Second)
	for _, r := range recs {
		if r.Partition != 2 {
			t.Fatalf("record in partition %d, want 2", r.Partition)
		}
	}
	if len(recs) != 10 {
		t.Fatalf("%d records", len(recs))
	}
	testkit.WaitFor(t, 10*time.Second, "drops of the missing partition", func() bool {
		return a.sinks[1].sink.Counters.Dropped()[buffer.ReasonUnknownTopic] == 10
	})
}

// TestCompressionCodecs: each codec is applied and the records survive it.
// librdkafka reads kfake's advertised API versions as "no gzip, snappy or
// lz4 support" and sends those batches uncompressed (its debug log says
// "Broker does not support compression type gzip"), so the batch codec is
// checked for zstd, which it does detect; real Kafka brokers support all.
func TestCompressionCodecs(t *testing.T) {
	_, addr := testkit.NewKafka(t, 0, kfake.SeedTopics(1, "gz", "sn", "lz", "zs", "nc"))
	const unverifiable = 0xff
	for _, tc := range []struct {
		codec, topic string
		want         uint8
	}{{"no_compression", "nc", 0}, {"gzip", "gz", unverifiable}, {"snappy", "sn", unverifiable}, {"lz4", "lz", unverifiable}, {"zstd", "zs", 4}} {
		t.Run(tc.codec, func(t *testing.T) {
			a := startApp(t, testkit.SinkConfig(t, addr, fmt.Sprintf("topic = %q\ncompression = %q", tc.topic, tc.codec)))
			c := testkit.MQTTClient(t, a.broker.Addrs()[0], "cc-"+tc.codec, nil)
			payload := strings.Repeat("compressible ", 50)
			for range 20 {
				testkit.Publish(t, c, "t/c", 1, []byte(payload))
			}
			recs := testkit.Consume(t, addr, tc.topic, 20, 20*time.Second)
			if len(recs) != 20 {
				t.Fatalf("%d records", len(recs))
			}
			for _, r := range recs {
				if got := r.Attrs.CompressionType(); tc.want != unverifiable && got != tc.want {
					t.Fatalf("batch codec %d, want %d", got, tc.want)
				}
				if !strings.Contains(string(r.Value), payload) {
					t.Fatal("value did not survive the codec")
				}
			}
		})
	}
}

// TestHeadersAndTimestamp: kafka_headers from ${pub_props.User-Property},
// ext headers, user_properties_as_headers with json encoding, and the
// timestamp template.
func TestHeadersAndTimestamp(t *testing.T) {
	_, addr := testkit.NewKafka(t, 0, kfake.SeedTopics(1, "hd", "hd2"))
	cfg := testkit.SinkConfig(t, addr, `topic = "hd"
timestamp = "${payload.ts}"
kafka_headers = "${pub_props.User-Property}"
kafka_ext_headers = [{ kafka_ext_header_key = "src", kafka_ext_header_value = "${clientid}" }]`) + testkit.SinkTables("r2", "s2", `topic = "hd2"
user_properties_as_headers = true
kafka_header_value_encode_mode = "json"`)
	a := startApp(t, cfg)
	c := testkit.MQTTClient(t, a.broker.Addrs()[0], "hdr", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Publish(ctx, &paho.Publish{Topic: "t/h", QoS: 1, Payload: []byte(`{"ts":1700000000123}`),
		Properties: &paho.PublishProperties{User: paho.UserProperties{{Key: "site", Value: "north"}, {Key: "line", Value: "7"}}}}); err != nil {
		t.Fatal(err)
	}
	headers := func(r *kgo.Record) map[string]string {
		m := map[string]string{}
		for _, h := range r.Headers {
			m[h.Key] = string(h.Value)
		}
		return m
	}
	recs := testkit.Consume(t, addr, "hd", 1, 20*time.Second)
	if len(recs) != 1 {
		t.Fatal("no record")
	}
	if h := headers(recs[0]); h["site"] != "north" || h["line"] != "7" || h["src"] != "hdr" || len(h) != 3 {
		t.Fatalf("headers %v", h)
	}
	if ts := recs[0].Timestamp.UnixMilli(); ts != 1700000000123 {
		t.Fatalf("timestamp %d, want the payload's", ts)
	}
	recs = testkit.Consume(t, addr, "hd2", 1, 20*time.Second)
	if h := headers(recs[0]); h["site"] != `"north"` || h["line"] != `"7"` {
		t.Fatalf("json-encoded user property headers %v", h)
	}
}

// TestSyncQueryMode: under query_mode = "sync" the PUBACK waits for Kafka:
// while Kafka refuses every produce the publisher is not acknowledged, and
// once a PUBACK arrives the record is already readable in Kafka.
func TestSyncQueryMode(t *testing.T) {
	kc, addr := testkit.NewKafka(t, 0, kfake.SeedTopics(1, "sy"))
	a := startApp(t, testkit.SinkConfig(t, addr, `topic = "sy"
query_mode = "sync"
sync_query_timeout = "1500ms"`))
	c := testkit.MQTTClient(t, a.broker.Addrs()[0], "sync", nil)
	if resp := testkit.Publish(t, c, "t/s", 1, []byte("first")); resp.ReasonCode != 0 {
		t.Fatalf("reason %#x", resp.ReasonCode)
	}
	// Acknowledged means in Kafka: read it back at once.
	if recs := testkit.Consume(t, addr, "sy", 1, 5*time.Second); len(recs) != 1 {
		t.Fatal("PUBACK came before the record was in Kafka")
	}
	fault := kc.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: "sy", Err: kerr.NotEnoughReplicas, Count: -1})
	if resp := testkit.Publish(t, c, "t/s", 1, []byte("refused")); resp.ReasonCode < 0x80 {
		t.Fatalf("PUBACK reason %#x while Kafka refuses produce requests", resp.ReasonCode)
	}
	fault.Remove()
	if resp := testkit.Publish(t, c, "t/s", 1, []byte("third")); resp.ReasonCode != 0 {
		t.Fatalf("reason %#x after Kafka recovered", resp.ReasonCode)
	}
	var vals []string
	for _, r := range testkit.Consume(t, addr, "sy", 3, 20*time.Second) {
		var pr testkit.PublishedRecord
		if err := json.Unmarshal(r.Value, &pr); err != nil {
			t.Fatal(err)
		}
		vals = append(vals, pr.Payload)
	}
	// The refused publish stayed buffered and was delivered too: at least once.
	slices.Sort(vals)
	if !slices.Equal(vals, []string{"first", "refused", "third"}) {
		t.Fatalf("Kafka holds %v", vals)
	}
}

// TestMaxBatchAgeExpires: records older than max_batch_age when Kafka comes
// back are dropped as expired, not sent. The age is also how long librdkafka
// may hold a record, metadata lookups included, so it leaves the fresh
// record room on a loaded machine.
func TestMaxBatchAgeExpires(t *testing.T) {
	port := testkit.FreePort(t)
	a := startApp(t, testkit.SinkConfig(t, fmt.Sprintf("127.0.0.1:%d", port), `topic = "ex"
max_batch_age = "2s"`))
	c := testkit.MQTTClient(t, a.broker.Addrs()[0], "ex", nil)
	for i := range 10 {
		testkit.Publish(t, c, "t/x", 1, fmt.Appendf(nil, "m%d", i))
	}
	// Time passing is what this test is about: the records age.
	time.Sleep(2200 * time.Millisecond)
	testkit.NewKafka(t, port, kfake.SeedTopics(1, "ex"))
	s := a.sinks[0].sink
	testkit.WaitFor(t, 20*time.Second, "expiry", func() bool { return s.Counters.Dropped()[buffer.ReasonExpired] == 10 })
	if n := s.Counters.Success.Load(); n != 0 {
		t.Fatalf("%d expired records were sent", n)
	}
	testkit.Publish(t, c, "t/x", 1, []byte("fresh"))
	testkit.WaitFor(t, 20*time.Second, "fresh record delivered", func() bool { return s.Counters.Success.Load() == 1 })
}

// TestRMQTTShorthand: a sink with mqtt_topic_filters needs no rule, and
// ${local.topic} names the Kafka topic after the MQTT topic.
func TestRMQTTShorthand(t *testing.T) {
	_, addr := testkit.NewKafka(t, 0, kfake.SeedTopics(1, "local.topic1.egress.a"))
	cfg := testkit.SinkConfig(t, addr, `topic = "${local.topic}"
mqtt_topic_filters = ["local/topic1/egress/#"]`)
	cfg = strings.Replace(cfg, `actions = ["kafka_producer:s1"]`, `actions = ["kafka_producer:s0"]`, 1) + `
[[sinks]]
name = "s0"
connector = "k"
topic = "unused"
`
	a := startApp(t, cfg)
	c := testkit.MQTTClient(t, a.broker.Addrs()[0], "rm", nil)
	testkit.Publish(t, c, "local/topic1/egress/a", 1, []byte("hello"))
	if recs := testkit.Consume(t, addr, "local.topic1.egress.a", 1, 20*time.Second); len(recs) != 1 {
		t.Fatal("shorthand sink delivered nothing")
	}
}

// TestEnvTopicAndSelectedFields: EMQX's documented example of a topic from
// an environment variable, with selected fields as the value.
func TestEnvTopicAndSelectedFields(t *testing.T) {
	t.Setenv("MQKAFKA_VAR_KAFKA_TOPIC", "envtopic")
	_, addr := testkit.NewKafka(t, 0, kfake.SeedTopics(1, "envtopic"))
	cfg := testkit.SinkConfig(t, addr, `topic = "${kafka_topic}"`)
	cfg = strings.Replace(cfg, `sql = 'SELECT * FROM "t/#"'`,
		`sql = "SELECT getenv('KAFKA_TOPIC') as kafka_topic, payload.device as device FROM \"t/#\" WHERE payload.temp > 30"`, 1)
	a := startApp(t, cfg)
	c := testkit.MQTTClient(t, a.broker.Addrs()[0], "env", nil)
	testkit.Publish(t, c, "t/e", 1, []byte(`{"device":"cold","temp":3}`))
	testkit.Publish(t, c, "t/e", 1, []byte(`{"device":"hot","temp":40}`))
	recs := testkit.Consume(t, addr, "envtopic", 1, 20*time.Second)
	if len(recs) != 1 || string(recs[0].Value) != `{"kafka_topic":"envtopic","device":"hot"}` {
		t.Fatalf("got %d records: %v", len(recs), recs)
	}
}

// TestConcurrentClients: with concurrent_clients = 3 a sink drains its
// partitions through three producers, and every record arrives in order.
func TestConcurrentClients(t *testing.T) {
	_, addr := testkit.NewKafka(t, 0, kfake.SeedTopics(6, "cc"))
	cfg := strings.Replace(testkit.SinkConfig(t, addr, `topic = "cc"
value = "${payload}"`), `name = "k"`, "name = \"k\"\nconcurrent_clients = 3", 1)
	a := startApp(t, cfg)
	if n := len(a.sinks[0].clients); n != 3 {
		t.Fatalf("%d Kafka clients, want 3", n)
	}
	c := testkit.MQTTClient(t, a.broker.Addrs()[0], "cc", nil)
	const n = 600
	for i := range n {
		testkit.Publish(t, c, "t/cc", 1, fmt.Appendf(nil, "m%06d", i))
	}
	parts := map[int32][]string{}
	// Each idempotent librdkafka producer has its own producer id, so the
	// ids on the records show which clients carried them.
	producers := map[int64]bool{}
	for _, r := range testkit.Consume(t, addr, "cc", n, 20*time.Second) {
		parts[r.Partition] = append(parts[r.Partition], string(r.Value))
		producers[r.ProducerID] = true
	}
	seen, _ := testkit.Ordered(t, parts)
	if len(seen) != n || len(parts) != 6 {
		t.Fatalf("%d distinct records over %d partitions", len(seen), len(parts))
	}
	if len(producers) != 3 {
		t.Fatalf("records carry %d producer ids, want 3: not every client carried records", len(producers))
	}
}

// TestPartitionsLearnedBeforeListening: by the time the MQTT listeners are
// open, the sink knows its topic's partitions, so the first publishes go
// straight to their partition queues instead of through the holding queue.
func TestPartitionsLearnedBeforeListening(t *testing.T) {
	_, kafkaAddr := testkit.NewKafka(t, 0, kfake.SeedTopics(3, "early"))
	a := startApp(t, testkit.BaseConfig(t, kafkaAddr, "early"))
	var parts []int32
	for _, st := range a.sinks[0].sink.Stats() {
		parts = append(parts, st.Partition)
	}
	slices.Sort(parts)
	if !slices.Equal(parts, []int32{-1, 0, 1, 2}) {
		t.Fatalf("queues when the listeners opened: %v, want the holding queue and partitions 0-2", parts)
	}
}
