package app

import (
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/mqkafka/mqkafka/internal/testkit"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/mqkafka/mqkafka/buffer"
)

// TestPublishesReachKafka is the walking skeleton end to end: MQTT in over
// TCP, the real serve wiring, a real Kafka client reading what landed.
func TestPublishesReachKafka(t *testing.T) {
	_, kafkaAddr := testkit.NewKafka(t, 0, kfake.SeedTopics(3, "testtopic-in"))
	a := startApp(t, testkit.BaseConfig(t, kafkaAddr, "testtopic-in"))
	c := testkit.MQTTClient(t, a.broker.Addrs()[0], "dev-1", nil)

	const n = 1000
	for i := range n {
		payload := fmt.Sprintf(`{"seq":%d,"msg":"hello kafka"}`, i)
		resp := testkit.Publish(t, c, fmt.Sprintf("t/%d", i%10+1), 1, []byte(payload))
		if resp.ReasonCode != 0 {
			t.Fatalf("publish %d: PUBACK reason %d", i, resp.ReasonCode)
		}
	}
	recs := testkit.Consume(t, kafkaAddr, "testtopic-in", n, 30*time.Second)
	if len(recs) != n {
		t.Fatalf("Kafka has %d records, want %d", len(recs), n)
	}
	seen := map[string]bool{}
	ids := map[string]bool{}
	for _, r := range recs {
		if string(r.Key) != "dev-1" {
			t.Fatalf("key = %q, want the client id", r.Key)
		}
		var pr testkit.PublishedRecord
		if err := json.Unmarshal(r.Value, &pr); err != nil {
			t.Fatalf("value is not JSON: %v: %s", err, r.Value)
		}
		if pr.ClientID != "dev-1" || pr.QoS != 1 || pr.PeerHost != "127.0.0.1" || pr.Node == "" || pr.Timestamp == 0 {
			t.Fatalf("unexpected record: %s", r.Value)
		}
		var p struct{ Seq int }
		if err := json.Unmarshal([]byte(pr.Payload), &p); err != nil {
			t.Fatalf("payload %q: %v", pr.Payload, err)
		}
		if want := fmt.Sprintf("t/%d", p.Seq%10+1); pr.Topic != want {
			t.Fatalf("record %d has topic %q, want %q", p.Seq, pr.Topic, want)
		}
		seen[pr.Payload] = true
		ids[pr.ID] = true
	}
	if len(seen) != n || len(ids) != n {
		t.Fatalf("%d distinct payloads and %d distinct ids, want %d", len(seen), len(ids), n)
	}
	s := a.sinks[0].sink
	testkit.WaitFor(t, 5*time.Second, "success counter", func() bool { return s.Counters.Success.Load() == n })
	if m := s.Counters.Matched.Load(); m != n {
		t.Fatalf("matched = %d, want %d", m, n)
	}
	if d := s.Counters.DroppedTotal(); d != 0 {
		t.Fatalf("dropped = %v", s.Counters.Dropped())
	}
}

// TestKafkaUnreachableAtStart: publishes are accepted while Kafka is not
// there, and all of them arrive once it is.
func TestKafkaUnreachableAtStart(t *testing.T) {
	port := testkit.FreePort(t)
	kafkaAddr := fmt.Sprintf("127.0.0.1:%d", port)
	a := startApp(t, testkit.BaseConfig(t, kafkaAddr, "late-topic"))
	c := testkit.MQTTClient(t, a.broker.Addrs()[0], "dev-late", nil)
	const n = 200
	for i := range n {
		if resp := testkit.Publish(t, c, "t/late", 1, fmt.Appendf(nil, "m%d", i)); resp.ReasonCode != 0 {
			t.Fatalf("publish %d refused while Kafka is down: reason %d", i, resp.ReasonCode)
		}
	}
	if q := a.sinks[0].sink.Queued(); q.Records != n {
		t.Fatalf("buffered %d records while Kafka is down, want %d", q.Records, n)
	}
	testkit.NewKafka(t, port, kfake.SeedTopics(2, "late-topic"))
	recs := testkit.Consume(t, kafkaAddr, "late-topic", n, 60*time.Second)
	if len(recs) != n {
		t.Fatalf("Kafka has %d records after it came up, want %d", len(recs), n)
	}
	got := map[string]bool{}
	for _, r := range recs {
		var pr testkit.PublishedRecord
		if err := json.Unmarshal(r.Value, &pr); err != nil {
			t.Fatal(err)
		}
		got[pr.Payload] = true
	}
	for i := range n {
		if !got[fmt.Sprintf("m%d", i)] {
			t.Fatalf("message m%d missing", i)
		}
	}
}

// TestUnknownTopicIsDroppedAndCounted: a sink whose Kafka topic does not
// exist drops and counts; the other sink of the same rule is unaffected.
func TestUnknownTopicIsDroppedAndCounted(t *testing.T) {
	_, kafkaAddr := testkit.NewKafka(t, 0, kfake.SeedTopics(1, "exists"))
	cfg := testkit.BaseConfig(t, kafkaAddr, "exists") + testkit.SinkTables("r2", "missing", `topic = "does-not-exist"`)
	a := startApp(t, cfg)
	c := testkit.MQTTClient(t, a.broker.Addrs()[0], "dev-2", nil)
	const n = 100
	for i := range n {
		if resp := testkit.Publish(t, c, "t/x", 1, fmt.Appendf(nil, "m%d", i)); resp.ReasonCode != 0 {
			t.Fatalf("publish %d: reason %d", i, resp.ReasonCode)
		}
	}
	missing := a.sinks[1].sink
	testkit.WaitFor(t, 20*time.Second, "unknown_topic drops", func() bool {
		return missing.Counters.Dropped()[buffer.ReasonUnknownTopic] == n
	})
	if recs := testkit.Consume(t, kafkaAddr, "exists", n, 30*time.Second); len(recs) != n {
		t.Fatalf("the healthy sink delivered %d, want %d", len(recs), n)
	}
	if s := missing.Counters.Success.Load(); s != 0 {
		t.Fatalf("missing-topic sink reports %d successes", s)
	}
	// The process is still healthy: a new connection publishes and is acknowledged.
	c2 := testkit.MQTTClient(t, a.broker.Addrs()[0], "dev-3", nil)
	if resp := testkit.Publish(t, c2, "t/y", 1, []byte("after")); resp.ReasonCode != 0 {
		t.Fatalf("publish after drops: reason %d", resp.ReasonCode)
	}
}

// TestUnmatchedPublishesOnlyRouted: a publish no rule reads never reaches a
// sink, and MQTT subscribers still receive it.
func TestUnmatchedPublishesOnlyRouted(t *testing.T) {
	_, kafkaAddr := testkit.NewKafka(t, 0, kfake.SeedTopics(1, "tt"))
	a := startApp(t, testkit.BaseConfig(t, kafkaAddr, "tt"))
	addr := a.broker.Addrs()[0]
	var got atomic.Int64
	sub := testkit.MQTTClient(t, addr, "sub", func(p *paho.Publish) {
		if p.Topic == "other/1" {
			got.Add(1)
		}
	})
	ctx := t.Context()
	if _, err := sub.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "other/#", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	pub := testkit.MQTTClient(t, addr, "pub", nil)
	const n = 50
	for range n {
		testkit.Publish(t, pub, "other/1", 1, []byte("x"))
	}
	testkit.WaitFor(t, 10*time.Second, "subscriber to get every publish", func() bool { return got.Load() == n })
	if m := a.sinks[0].sink.Counters.Matched.Load(); m != 0 {
		t.Fatalf("sink matched %d publishes no rule reads", m)
	}
}

// TestEmbeddedKafka: the quickstart's embedded Kafka takes records like a real one.
func TestEmbeddedKafka(t *testing.T) {
	port := testkit.FreePort(t)
	cfg := strings.Replace(testkit.BaseConfig(t, fmt.Sprintf("127.0.0.1:%d", port), "emb"), "shutdown_timeout", fmt.Sprintf(`
[embedded_kafka]
enabled = true
listen = "127.0.0.1:%d"
partitions = 2
topics = ["emb"]
`, port)+"\nshutdown_timeout", 1)
	// TOML wants top-level keys before tables: move the embedded table after them.
	cfg = strings.Replace(cfg, "\nshutdown_timeout = \"1s\"", "", 1)
	a := startApp(t, cfg)
	c := testkit.MQTTClient(t, a.broker.Addrs()[0], "dev-e", nil)
	testkit.Publish(t, c, "t/e", 1, []byte("hello"))
	recs := testkit.Consume(t, net.JoinHostPort("127.0.0.1", fmt.Sprint(port)), "emb", 1, 20*time.Second)
	if len(recs) != 1 || !strings.Contains(string(recs[0].Value), `"payload":"hello"`) {
		t.Fatalf("got %d records: %v", len(recs), recs)
	}
}

// TestStartFailureIsAnError: a listener that cannot be opened makes start
// return an error, and everything started before it is stopped again.
func TestStartFailureIsAnError(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	_, addr := testkit.NewKafka(t, 0, kfake.SeedTopics(1, "x"))
	cfg := strings.Replace(testkit.BaseConfig(t, addr, "x"), `address = "127.0.0.1:0"`, fmt.Sprintf("address = %q", busy.Addr().String()), 1)
	path := testkit.WriteConfig(t, cfg)
	c, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if a, err := Start(path, c, testVersion, testkit.Logger(t)); err == nil || a != nil {
		t.Fatalf("start on a busy port: %v, %v", a, err)
	}
}
