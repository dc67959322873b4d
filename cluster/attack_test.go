package cluster_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/mqkafka/mqkafka/cluster"
	"github.com/mqkafka/mqkafka/conf"
	"github.com/mqkafka/mqkafka/internal/testkit"
)

// TestCrossNodeACL: a subscriber on another node gets only what the ACL
// lets it read, live or retained, as on the publisher's node.
func TestCrossNodeACL(t *testing.T) {
	_, kafka := testkit.NewKafka(t, 0)
	const acl = `
[[broker.acl]]
permission = "deny"
clientid = "spy"
action = "subscribe"
topics = ["secret/#"]
[[broker.acl]]
permission = "allow"
action = "all"
topics = ["#"]
`
	n1, n2, n3 := joinWith(t, kafka, "n1", acl), joinWith(t, kafka, "n2", acl), joinWith(t, kafka, "n3", acl)
	spy := &testkit.Inbox{}
	testkit.Subscriber(t, n2.addr, "spy", 0, spy, 1, "#")
	routed(t, n1, 1)
	pub := testkit.MQTTClient(t, n1.addr, "pub", nil)
	publish(t, pub, "secret/a", "secret")
	publish(t, pub, "open/a", "open")
	testkit.WaitFor(t, 10*time.Second, "the open message on n2", func() bool { return len(spy.Payloads()) >= 1 })
	testkit.Settle(t, n2.addr, "open/settle", spy)
	if got := spy.Payloads(); strings.Join(got, ",") != "open" {
		t.Fatalf("spy on n2 got %q, want only \"open\"", got)
	}

	testkit.PublishRetained(t, pub, "secret/r", "secret retained")
	testkit.PublishRetained(t, pub, "open/r", "open retained")
	testkit.WaitFor(t, 10*time.Second, "both retained messages on n3", func() bool {
		return len(testkit.Retained(t, n3.addr, "+/r")) == 2
	})
	spy3 := &testkit.Inbox{}
	testkit.Subscriber(t, n3.addr, "spy", 0, spy3, 1, "#")
	testkit.Settle(t, n3.addr, "open/settle", spy3)
	if got := spy3.Payloads(); strings.Join(got, ",") != "open retained" {
		t.Fatalf("spy on n3 got %q, want only \"open retained\"", got)
	}
}

// TestTooLargeToCrossNodes: a publish whose record to another node, or to
// the retained topic, would be over message.max.bytes is refused with
// PUBACK 0x83 and counted, not acknowledged and then dropped by Kafka;
// one exactly at the limit crosses.
func TestTooLargeToCrossNodes(t *testing.T) {
	_, kafka := testkit.NewKafka(t, 0)
	c := newCrossing(t, kafka)
	n1, in, pub := c.n1, c.in, c.pub
	// librdkafka's framing (36), the key "n2\x00pub" (6) and the encoded
	// message without its payload (24) take 66 bytes of 1,000,000.
	const fits = conf.DefaultMessageMaxBytes - 66
	if r := testkit.Publish(t, pub, "t/big", 1, make([]byte, fits+1)); r.ReasonCode != 0x83 {
		t.Fatalf("a publish one byte too large to cross: PUBACK %#x, want 0x83", r.ReasonCode)
	}
	publish(t, pub, "t/big", strings.Repeat("x", fits))
	testkit.WaitFor(t, 20*time.Second, "the largest publish on n2", func() bool { return len(in.Payloads()) == 1 })
	if got := len(in.Payloads()[0]); got != fits {
		t.Fatalf("n2 got %d bytes, want %d", got, fits)
	}

	// A retained message goes to every node, subscribed or not.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// paho reports a negative PUBACK as an error too.
	r, err := pub.Publish(ctx, &paho.Publish{Topic: "r/big", QoS: 1, Retain: true, Payload: make([]byte, conf.DefaultMessageMaxBytes)})
	if r == nil || r.ReasonCode != 0x83 {
		t.Fatalf("a retained publish too large for the retained topic: %v, %+v; want PUBACK 0x83", err, r)
	}
	if got := n1.b.Refused()["cluster_too_large"]; got != 2 {
		t.Fatalf("refused cluster_too_large = %d, want 2", got)
	}
	if s := n1.n.Status(); s.MessagesDropped != 0 {
		t.Fatalf("n1 dropped %d cross-node publishes", s.MessagesDropped)
	}
	if len(testkit.Retained(t, n1.addr, "r/#")) != 0 {
		t.Fatal("the refused retained message was kept on n1")
	}
}

func TestTopicTooSmallForMessageMaxBytesRefused(t *testing.T) {
	kc, kafka := testkit.NewKafka(t, 0)
	if err := kc.CreateTopic("mqkafka.t.messages", 3, map[string]string{"cleanup.policy": "delete", "max.message.bytes": "100000"}); err != nil {
		t.Fatal(err)
	}
	err := loadError(t, nodeConfig(t, kafka, "n1", ""))
	if err == nil || !strings.Contains(err.Error(), "mqkafka.t.messages has max.message.bytes=100000, less than a batch of the connector's message.max.bytes (1000000) takes") {
		t.Fatalf("Load = %v, want the messages topic's max.message.bytes refused", err)
	}
}

// rawMessage encodes a message as version 1 of the cluster's codec does,
// for a test that writes what a node would not.
func rawMessage(version, flags byte, topic, payload string) []byte {
	b := binary.AppendVarint([]byte{version, flags, 0}, time.Now().Unix())
	b = binary.AppendUvarint(b, 0)
	for _, s := range []string{"intruder", topic, "", "", ""} {
		b = append(binary.AppendUvarint(b, uint64(len(s))), s...)
	}
	return append(binary.AppendUvarint(binary.AppendUvarint(b, 0), 0), payload...)
}

// TestMalformedInternalRecords: records no node writes, from another writer
// or a newer version, in every internal topic, crash no node, reach no
// client, and the cluster goes on working.
func TestMalformedInternalRecords(t *testing.T) {
	_, kafka := testkit.NewKafka(t, 0)
	n1, n2 := join(t, kafka, "n1"), join(t, kafka, "n2")
	all1, all2, sub := &testkit.Inbox{}, &testkit.Inbox{}, &testkit.Inbox{}
	testkit.Subscriber(t, n1.addr, "all1", 0, all1, 1, "#")
	testkit.Subscriber(t, n2.addr, "all2", 0, all2, 1, "#")
	testkit.Subscriber(t, n2.addr, "sub", 0, sub, 1, "t/#")
	routed(t, n1, 2)
	rec := func(topic, key string, value []byte, partition int32) *kgo.Record {
		return &kgo.Record{Topic: "mqkafka.t." + topic, Key: []byte(key), Value: value, Partition: partition}
	}
	var recs []*kgo.Record
	for _, v := range [][]byte{nil, []byte("not json"), []byte(`{"started":"yesterday"}`), []byte(`{"connections":"many"}`)} {
		recs = append(recs, rec("nodes", "n9", v, 0), rec("nodes", "", v, 0))
	}
	deep := strings.Repeat("a/", 20_000) + "#"
	for _, f := range []string{"", "#/a", "a/#/b", "$share/", "$share/g", "$share//x", "+/+/#", deep} {
		recs = append(recs, rec("routes", "n2\x00"+f, []byte{1}, 0), rec("routes", "n9\x00"+f, []byte{1}, 1))
	}
	recs = append(recs, rec("routes", "no separator", []byte{1}, 2))
	bad := [][]byte{{}, {1}, []byte("garbage that is long enough"), rawMessage(9, 1, "t/x", "v9"),
		rawMessage(1, 3, "t/x", "qos3"), rawMessage(1, 1, "", "empty topic"), rawMessage(1, 1, "t/#", "wildcard"),
		rawMessage(1, 1, "$SYS/x", "sys"), rawMessage(1, 0xf1, "t/x", "unknown flags")}
	for i, v := range bad {
		for p := range int32(3) {
			recs = append(recs, rec("messages", "n2\x00intruder", v, p), rec("messages", "n1\x00intruder", v, p))
		}
		recs = append(recs, rec("retained", []string{"", "t/#", "t/+", "$SYS/x", "t/r"}[i%5], v, int32(i%3)))
	}
	testkit.Produce(t, kafka, recs, kgo.RecordPartitioner(kgo.ManualPartitioner()))

	pub := testkit.MQTTClient(t, n1.addr, "pub", nil)
	publish(t, pub, "t/ok", "ok")
	testkit.WaitFor(t, 20*time.Second, "a publish across nodes after the garbage", func() bool { return len(sub.Payloads()) >= 1 })
	testkit.Settle(t, n1.addr, "t/settle", all2)
	testkit.Settle(t, n1.addr, "t/settle", all1)
	for name, box := range map[string]*testkit.Inbox{"all1": all1, "all2": all2, "sub": sub} {
		for _, p := range box.All() {
			if p.Topic != "t/ok" && !strings.HasPrefix(string(p.Payload), "settle-") {
				t.Errorf("%s received %q on %q", name, p.Payload, p.Topic)
			}
		}
	}
	for _, addr := range []string{n1.addr, n2.addr} {
		if got := testkit.Retained(t, addr, "t/#"); len(got) != 0 {
			t.Errorf("a new subscriber to t/# on %s gets retained %q", addr, got)
		}
	}
}

// TestNodeWithClockBehind: a node whose clock is an hour behind stamps its
// heartbeats an hour old; the others still see it up, and route to it, as
// long as its heartbeats keep arriving.
func TestNodeWithClockBehind(t *testing.T) {
	_, kafka := testkit.NewKafka(t, 0)
	n1 := join(t, kafka, "n1")
	cl, err := kgo.NewClient(kgo.SeedBrokers(kafka))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	late := func(topic, key string, value []byte) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		r := &kgo.Record{Topic: "mqkafka.t." + topic, Key: []byte(key), Value: value, Timestamp: time.Now().Add(-time.Hour)}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	late("routes", "n9\x00t/#", []byte{1})
	started := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	var last cluster.Status
	deadline := time.Now().Add(10 * time.Second)
	beat := time.NewTicker(200 * time.Millisecond)
	defer beat.Stop()
	for n := 0; ; n++ {
		// n9 beats every 200ms, as heartbeat_interval says.
		late("nodes", "n9", fmt.Appendf(nil, `{"version":"test","started":%q}`, started))
		if last = n1.n.Status(); len(last.Nodes) == 2 && last.Nodes[1].Status == "up" && last.Routes == 1 && n >= 10 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("n9, beating with its clock an hour behind: %+v", last)
		}
		<-beat.C
	}
}

// TestNodeNameRunsTwice: a second process with a running node's name takes
// over its partition and tombstones its routes, so publishes from other
// nodes stop reaching the first one's subscribers; both say so.
func TestNodeNameRunsTwice(t *testing.T) {
	_, kafka := testkit.NewKafka(t, 0)
	first, n2 := join(t, kafka, "n1"), join(t, kafka, "n2")
	testkit.Subscriber(t, first.addr, "sub", 0, &testkit.Inbox{}, 1, "t/#")
	routed(t, n2, 1)
	second := join(t, kafka, "n1")
	for _, m := range []*member{first, second} {
		testkit.WaitFor(t, 10*time.Second, "the conflict reported", func() bool {
			return strings.Contains(m.n.Status().Conflict, "another process runs node n1")
		})
	}
	if !strings.Contains(first.logs.String(), "cluster node name runs twice") {
		t.Fatal("the first process logged no conflict")
	}
}

// TestMaxRoutes: the distinct filters a node announces, which every node
// keeps, are bounded whatever its clients subscribe: past max_routes a new
// filter gets SUBACK 0x97, counted; a filter already announced is taken.
func TestMaxRoutes(t *testing.T) {
	_, kafka := testkit.NewKafka(t, 0)
	cfg := nodeConfig(t, kafka, "n2", "")
	cfg.Cluster.MaxRoutes = 3
	n1, n2 := join(t, kafka, "n1"), joinConfig(t, "n2", cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var codes []byte
	for i := range 3 {
		c := testkit.MQTTClient(t, n2.addr, fmt.Sprint("c", i), nil)
		var subs []paho.SubscribeOptions
		for j := range 2 {
			subs = append(subs, paho.SubscribeOptions{Topic: fmt.Sprintf("f/%d", i+j), QoS: 1})
		}
		sa, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: subs})
		if sa == nil {
			t.Fatal(err)
		}
		codes = append(codes, sa.Reasons...)
	}
	// f/0 f/1 | f/1 f/2 | f/2 f/3: f/3 would be the fourth.
	if want := []byte{1, 1, 1, 1, 1, 0x97}; string(codes) != string(want) {
		t.Fatalf("SUBACK reasons %v, want %v", codes, want)
	}
	routed(t, n1, 3)
	if got := n2.b.Refused()["max_routes"]; got != 1 {
		t.Fatalf("refused max_routes = %d, want 1", got)
	}
}

// TestRetainedLimitClusterWide: max_retained_messages counts the retained
// messages of every node, so clients cannot pass it by retaining on
// several nodes (but for those set at once on two nodes, before each has
// read the other's).
func TestRetainedLimitClusterWide(t *testing.T) {
	_, kafka := testkit.NewKafka(t, 0)
	var nodes []*member
	for _, name := range []string{"n1", "n2"} {
		cfg := nodeConfig(t, kafka, name, "")
		cfg.Broker.MaxRetainedMessages = 3
		nodes = append(nodes, joinConfig(t, name, cfg))
	}
	pub1 := testkit.MQTTClient(t, nodes[0].addr, "pub1", nil)
	for i := range 3 {
		testkit.PublishRetained(t, pub1, fmt.Sprint("r/", i), "kept")
	}
	testkit.WaitFor(t, 10*time.Second, "n2 holding n1's retained messages", func() bool {
		return len(testkit.Retained(t, nodes[1].addr, "r/#")) == 3
	})
	pub2 := testkit.MQTTClient(t, nodes[1].addr, "pub2", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := pub2.Publish(ctx, &paho.Publish{Topic: "r/3", QoS: 1, Retain: true, Payload: []byte("one more")})
	if r == nil || r.ReasonCode != 0x97 {
		t.Fatalf("a fourth retained topic, on n2: %v %+v; want PUBACK 0x97", err, r)
	}
}

// TestMessagesTopicRecreated: after the messages topic is deleted and
// created again, publishes cross nodes again; those made while it was
// missing may be lost, counted.
func TestMessagesTopicRecreated(t *testing.T) {
	kc, kafka := testkit.NewKafka(t, 0)
	c := newCrossing(t, kafka)
	n1, in, pub := c.n1, c.in, c.pub
	topic := "mqkafka.t.messages"
	var produced atomic.Int64 // requests to produce to the messages topic
	kc.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		for _, pt := range req.(*kmsg.ProduceRequest).Topics {
			if pt.Topic == topic {
				produced.Add(1)
			}
		}
		return nil, nil, false
	})
	// n1's producer has a sequence number on the partition.
	publish(t, pub, "t/a", "before")
	testkit.WaitFor(t, 10*time.Second, "a publish across nodes", func() bool { return len(in.Payloads()) == 1 })
	cl, err := kgo.NewClient(kgo.SeedBrokers(kafka))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	del := kmsg.NewPtrDeleteTopicsRequest()
	dt := kmsg.NewDeleteTopicsRequestTopic()
	dt.Topic = &topic
	del.Topics, del.TopicNames, del.TimeoutMillis = []kmsg.DeleteTopicsRequestTopic{dt}, []string{topic}, 5000
	if resp, err := del.RequestWith(ctx, cl); err != nil || resp.Topics[0].ErrorCode != 0 {
		t.Fatalf("delete %s: %v %+v", topic, err, resp)
	}
	before := produced.Load()
	for i := range 5 {
		publish(t, pub, "t/a", fmt.Sprint("while missing ", i))
	}
	// Kafka answers that it knows no such topic.
	testkit.WaitFor(t, 10*time.Second, "n1 trying to send while the topic is missing", func() bool { return produced.Load() > before })
	create := kmsg.NewPtrCreateTopicsRequest()
	ct := kmsg.NewCreateTopicsRequestTopic()
	ct.Topic, ct.NumPartitions, ct.ReplicationFactor = topic, 3, 1
	create.Topics, create.TimeoutMillis = []kmsg.CreateTopicsRequestTopic{ct}, 5000
	if resp, err := create.RequestWith(ctx, cl); err != nil || resp.Topics[0].ErrorCode != 0 {
		t.Fatalf("create %s: %v %+v", topic, err, resp)
	}
	for i := 0; ; i++ {
		publish(t, pub, "t/a", "after")
		if slices.Contains(in.Payloads(), "after") {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("no publish crossed after the messages topic came back; n1: %+v", n1.n.Status())
		}
		testkit.WaitFor(t, 5*time.Second, "n1's queue drained", func() bool { return n1.n.Status().Queued == 0 || ctx.Err() != nil })
	}
}
