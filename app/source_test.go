package app

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/mqkafka/mqkafka/consumer"
	"github.com/mqkafka/mqkafka/internal/testkit"
)

func sourceByName(t testing.TB, a *App, name string) *consumer.Source {
	for _, s := range a.sources.sources {
		if s.Name() == name {
			return s
		}
	}
	t.Fatalf("no source %s", name)
	return nil
}

// latestLookups counts the partitions of topic whose latest offset a client
// asked kfake for, as a source with offset_reset_policy "latest" does
// before it reads a partition. kfake handles one request at a time, so a
// record produced once the count includes its partition lies past that
// offset.
func latestLookups(c *kfake.Cluster, topic string) func() int {
	var mu sync.Mutex
	seen := map[int32]bool{}
	c.ControlKey(int16(kmsg.ListOffsets), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		mu.Lock()
		defer mu.Unlock()
		for _, rt := range kreq.(*kmsg.ListOffsetsRequest).Topics {
			for _, rp := range rt.Partitions {
				if rt.Topic == topic && rp.Timestamp == -1 {
					seen[rp.Partition] = true
				}
			}
		}
		return nil, nil, false
	})
	return func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(seen)
	}
}

// TestSourceToMQTT: 1,000 Kafka records with keys and headers reach an
// MQTT 5 subscriber on the mapped topics, rendered by ${.}, ${.value} and
// a custom template, headers as User-Property; base64 mode round-trips
// binary values, and binary values in ${.} with mode none are dropped and
// counted.
func TestSourceToMQTT(t *testing.T) {
	t.Parallel()
	_, addr := testkit.NewKafka(t, 0, kfake.SeedTopics(3, "src-a", "src-b", "src-c"), kfake.SeedTopics(1, "src-bin"))
	a := startApp(t, testkit.SourceConfig(t, addr,
		testkit.Source("s1", `topic = ["src-a", "src-b", "src-c"]
offset_reset_policy = "earliest"
headers_as_user_properties = true`,
			testkit.TopicMapping("src-a", "a/${.key}", ""),
			testkit.TopicMapping("src-b", "b/all", `qos = 0
payload_template = "${.value}"`),
			testkit.TopicMapping("src-c", "c/${.headers.h1}", `payload_template = "key=${.key};n=${.value.n};h=${.headers.h1};none=${.nope};topic=${.topic}"`))+
			testkit.Source("bin64", `topic = "src-bin"
offset_reset_policy = "earliest"
value_encoding_mode = "base64"`, testkit.TopicMapping("src-bin", "bin/64", `payload_template = "${.value}"`))+
			testkit.Source("binjson", `offset_reset_policy = "earliest"`, testkit.TopicMapping("src-bin", "bin/json", ""))))
	box := testkit.Subscribed(t, a.broker.Addrs()[0], "sub", "a/#", "b/#", "c/#", "bin/#")

	var recs []*kgo.Record
	recs = append(recs, testkit.SeqRecords("src-a", 0, 334)...)
	recs = append(recs, testkit.SeqRecords("src-b", 334, 333)...)
	recs = append(recs, testkit.SeqRecords("src-c", 667, 333)...)
	bins := map[string]bool{}
	for i := range 20 {
		v := []byte{0xff, 0xfe, byte(i), 0x00, 0x80}
		bins[string(v)] = true
		recs = append(recs, &kgo.Record{Topic: "src-bin", Value: v})
	}
	testkit.Produce(t, addr, recs)
	testkit.WaitFor(t, 30*time.Second, "1,020 messages", func() bool { return box.Len() >= 1020 })
	bj := sourceByName(t, a, "binjson")
	testkit.WaitFor(t, 10*time.Second, "binary records dropped", func() bool {
		return bj.Counters.Received.Load() == 20 && bj.Counters.DroppedTotal() == 20
	})
	s1 := sourceByName(t, a, "s1")
	testkit.WaitFor(t, 10*time.Second, "s1's records handed over", func() bool { return s1.Counters.Success.Load() >= 1000 })
	testkit.Settle(t, a.broker.Addrs()[0], "a/settle", box)

	got := map[string]int{}
	for _, p := range box.All() {
		prefix, rest, _ := strings.Cut(p.Topic, "/")
		got[prefix]++
		switch prefix {
		case "a":
			var rec struct {
				Headers map[string]string `json:"headers"`
				Key     string            `json:"key"`
				Offset  int64             `json:"offset"`
				Topic   string            `json:"topic"`
				TS      int64             `json:"ts"`
				TSType  string            `json:"ts_type"`
				Value   string            `json:"value"`
			}
			if err := json.Unmarshal(p.Payload, &rec); err != nil {
				t.Fatalf("a: %s: %v", p.Payload, err)
			}
			var n int
			_, _ = fmt.Sscanf(rec.Key, "k%d", &n)
			if !strings.HasPrefix(string(p.Payload), `{"headers":{"h1":"x`) || rec.Key != rest || rec.Topic != "src-a" ||
				rec.TSType != "create" || rec.TS < time.Now().Add(-time.Minute).UnixMilli() || rec.Headers["h2"] != "y" ||
				rec.Value != fmt.Sprintf(`{"n":%d}`, n) {
				t.Fatalf("a: %s on %s", p.Payload, p.Topic)
			}
			if p.QoS != 1 {
				t.Fatalf("a: QoS %d", p.QoS)
			}
		case "b":
			if !strings.HasPrefix(string(p.Payload), `{"n":`) || p.QoS != 0 {
				t.Fatalf("b: %s QoS %d", p.Payload, p.QoS)
			}
		case "c":
			var n int
			if _, err := fmt.Sscanf(rest, "x%d", &n); err != nil {
				t.Fatalf("c topic %s", p.Topic)
			}
			if want := fmt.Sprintf("key=k%04d;n=%d;h=x%d;none=;topic=src-c", n, n, n); string(p.Payload) != want {
				t.Fatalf("c: %s, want %s", p.Payload, want)
			}
		case "bin":
			if rest != "64" {
				t.Fatalf("a binary value reached %s", p.Topic)
			}
			v, err := base64.StdEncoding.DecodeString(string(p.Payload))
			if err != nil || !bins[string(v)] {
				t.Fatalf("bin: %q does not decode to a produced value", p.Payload)
			}
			continue
		}
		if p.Properties == nil || p.Properties.User.Get("h2") != "y" || !strings.HasPrefix(p.Properties.User.Get("h1"), "x") {
			t.Fatalf("%s: user properties %+v", p.Topic, p.Properties)
		}
	}
	if got["a"] != 334 || got["b"] != 333 || got["c"] != 333 || got["bin"] != 20 {
		t.Fatalf("received %v, want a:334 b:333 c:333 bin:20", got)
	}
	if c := &s1.Counters; c.Received.Load() != 1000 || c.Success.Load() != 1000 || c.DroppedTotal() != 0 {
		t.Fatalf("s1 received %d success %d dropped %v", c.Received.Load(), c.Success.Load(), c.Dropped())
	}
	if d := bj.Counters.Dropped()[consumer.ReasonInvalidUTF8]; d != 20 || bj.Counters.Success.Load() != 0 {
		t.Fatalf("binjson dropped %v, success %d: want 20 invalid_utf8", bj.Counters.Dropped(), bj.Counters.Success.Load())
	}
}

// TestSourceOfflinePersistentSession: a subscriber with a persistent
// session that is offline while Kafka messages arrive gets them when it
// reconnects (within one broker run; mochi queues them in its session).
func TestSourceOfflinePersistentSession(t *testing.T) {
	t.Parallel()
	kc, addr := testkit.NewKafka(t, 0, kfake.SeedTopics(2, "src-p"))
	lookedUp := latestLookups(kc, "src-p")
	a := startApp(t, testkit.SourceConfig(t, addr,
		testkit.Source("p", `topic = "src-p"`, testkit.TopicMapping("src-p", "p/${.key}", `payload_template = "${.value}"`))))
	mqttAddr := a.broker.Addrs()[0]
	src := sourceByName(t, a, "p")
	testkit.WaitFor(t, 20*time.Second, "partitions assigned", func() bool { return src.Counters.Assigned.Load() == 2 })
	// "latest": the source starts at the end offsets it looks up after the assignment.
	testkit.WaitFor(t, 20*time.Second, "the end offsets looked up", func() bool { return lookedUp() == 2 })

	first := &testkit.Inbox{}
	c := testkit.Subscriber(t, mqttAddr, "persistent", 300, first, 1, "p/#")
	_ = c.Disconnect(&paho.Disconnect{})

	testkit.Produce(t, addr, testkit.SeqRecords("src-p", 0, 300))
	testkit.WaitFor(t, 20*time.Second, "300 handed over", func() bool { return src.Counters.Success.Load() == 300 })

	backlog := &testkit.Inbox{}
	testkit.Subscriber(t, mqttAddr, "persistent", 300, backlog, 1, "p/#")
	testkit.WaitFor(t, 20*time.Second, "the backlog", func() bool { return backlog.Len() >= 300 })
	seen := map[string]bool{}
	for _, p := range backlog.All() {
		seen[p.Topic] = true
	}
	if len(seen) != 300 {
		t.Fatalf("%d distinct messages of the backlog, want 300", len(seen))
	}
}

// TestSourceRuleRepublish: a rule FROM "$bridges/kafka_consumer:x" with a
// WHERE and a republish action delivers only the matching records; a
// republish on an MQTT rule carries the publisher's User-Property, and
// one that would feed its own rule is dropped and counted.
func TestSourceRuleRepublish(t *testing.T) {
	t.Parallel()
	_, addr := testkit.NewKafka(t, 0, kfake.SeedTopics(1, "src-rule"))
	a := startApp(t, testkit.SourceConfig(t, addr, testkit.Source("x", `topic = "src-rule"
offset_reset_policy = "earliest"`)+
		testkit.RepublishRule("from_kafka", `SELECT key, value.n AS n, headers AS up FROM "$bridges/kafka_consumer:x" WHERE key = 'match' `, `topic = "rp/${key}/${n}"
payload = "n=${n}"
qos = 1
user_properties = "${up}"`)+
		testkit.RepublishRule("from_mqtt", `SELECT * FROM "in/#"`, `topic = "out/${clientid}"
user_properties = "${pub_props.'User-Property'}"`)+
		testkit.RepublishRule("loop", `SELECT * FROM "loop/#"`, `topic = "loop/again"`)))
	mqttAddr := a.broker.Addrs()[0]
	box := testkit.Subscribed(t, mqttAddr, "sub", "rp/#", "out/#", "loop/#")

	var recs []*kgo.Record
	for i := range 20 {
		key := "other"
		if i%2 == 0 {
			key = "match"
		}
		recs = append(recs, &kgo.Record{Topic: "src-rule", Key: []byte(key), Value: fmt.Appendf(nil, `{"n":%d}`, i),
			Headers: []kgo.RecordHeader{{Key: "h1", Value: []byte("v1")}}})
	}
	testkit.Produce(t, addr, recs)

	pub := testkit.MQTTClient(t, mqttAddr, "dev1", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := pub.Publish(ctx, &paho.Publish{Topic: "in/1", QoS: 1, Payload: []byte("hello"),
		Properties: &paho.PublishProperties{User: paho.UserProperties{{Key: "u", Value: "w"}}}}); err != nil {
		t.Fatal(err)
	}
	testkit.Publish(t, pub, "loop/1", 1, []byte("x"))

	testkit.WaitFor(t, 20*time.Second, "11 messages", func() bool { return box.Len() >= 11 })
	src := sourceByName(t, a, "x")
	testkit.WaitFor(t, 10*time.Second, "20 Kafka records", func() bool { return src.Counters.Success.Load() == 20 })
	testkit.Settle(t, mqttAddr, "rp/settle", box)
	var rp, out int
	for _, p := range box.All() {
		switch {
		case strings.HasPrefix(p.Topic, "rp/match/"):
			rp++
			if n := strings.TrimPrefix(p.Topic, "rp/match/"); string(p.Payload) != "n="+n || p.QoS != 1 ||
				p.Properties == nil || p.Properties.User.Get("h1") != "v1" {
				t.Fatalf("republished %s %q QoS %d props %+v", p.Topic, p.Payload, p.QoS, p.Properties)
			}
		case p.Topic == "out/dev1":
			out++
			if string(p.Payload) != "hello" || p.QoS != 1 || p.Properties == nil || p.Properties.User.Get("u") != "w" {
				t.Fatalf("republished %s %q QoS %d props %+v", p.Topic, p.Payload, p.QoS, p.Properties)
			}
		case p.Topic == "loop/1":
		default:
			t.Fatalf("unexpected %s %q", p.Topic, p.Payload)
		}
	}
	if rp != 10 || out != 1 {
		t.Fatalf("%d republished from Kafka (want 10), %d from MQTT (want 1)", rp, out)
	}
	for _, r := range a.sources.republish {
		if r.Counters.Loop.Load() > 0 {
			return
		}
	}
	t.Fatal("the loop was not counted")
}

// TestSourceRestartPersistentSession: across a restart with the session
// store (broker.persistence, the default), a persistent-session subscriber
// that is offline during the restart and comes back only after the
// restarted source published the backlog still gets all of it: the source
// starts after the broker restored the sessions.
func TestSourceRestartPersistentSession(t *testing.T) {
	t.Parallel()
	_, addr := testkit.NewKafka(t, 0, kfake.SeedTopics(3, "src-ps"))
	cfg := testkit.SourceConfig(t, addr, testkit.SourceTable("ps", "src-ps", "ps/${.key}", ""))
	a1 := startApp(t, cfg)
	box := &testkit.Inbox{}
	c := testkit.Subscriber(t, a1.broker.Addrs()[0], "dev", 600, box, 1, "ps/#")
	testkit.Produce(t, addr, testkit.SeqRecords("src-ps", 0, 300))
	testkit.WaitFor(t, 20*time.Second, "the first part", func() bool { return box.Len() >= 300 })
	_ = c.Disconnect(&paho.Disconnect{})
	if err := a1.Stop(); err != nil {
		t.Fatal(err)
	}

	testkit.Produce(t, addr, testkit.SeqRecords("src-ps", 300, 300))
	a2 := startApp(t, cfg)
	src := sourceByName(t, a2, "ps")
	testkit.WaitFor(t, 20*time.Second, "the backlog handed over", func() bool { return src.Counters.Success.Load() >= 300 })
	testkit.Subscriber(t, a2.broker.Addrs()[0], "dev", 600, box, 1, "ps/#")
	testkit.WaitFor(t, 20*time.Second, "the backlog", func() bool { return box.Len() >= 600 })
	testkit.Settle(t, a2.broker.Addrs()[0], "ps/settle", box)
	seen := map[string]bool{}
	for _, m := range box.All() {
		seen[m.Topic] = true
	}
	if len(seen) != 600 || box.Len() != 600 {
		t.Fatalf("%d distinct of %d messages, want 600", len(seen), box.Len())
	}
}

// TestSourceOverSASL: a source reads through its connector's
// [connectors.authentication], as the sinks write through it.
func TestSourceOverSASL(t *testing.T) {
	read := []kgo.Opt{kgo.SASL(scram.Auth{User: "admin", Pass: "secret"}.AsSha256Mechanism())}
	addr := testkit.NewSASLKafka(t, "SCRAM-SHA-256", "admin", "secret", read, kfake.SeedTopics(1, "sasl-src"))
	cfg := strings.Replace(testkit.SourceConfig(t, addr, testkit.SourceTable("src", "sasl-src", "from/kafka", "")), "[connectors.properties]", `[connectors.authentication]
mechanism = "scram_sha_256"
username = "admin"
password = "secret"
[connectors.properties]`, 1)
	a := startApp(t, cfg)
	box := testkit.Subscribed(t, a.broker.Addrs()[0], "sasl-sub", "from/#")
	testkit.Produce(t, addr, []*kgo.Record{{Topic: "sasl-src", Value: []byte("over sasl")}}, read...)
	testkit.WaitFor(t, 30*time.Second, "the record over SASL", func() bool { return box.Len() == 1 })
	if got := string(box.All()[0].Payload); got != "over sasl" {
		t.Fatalf("payload %q", got)
	}
}
