package cluster_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

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
	n1, n2 := join(t, kafka, "n1"), join(t, kafka, "n2")
	in := &testkit.Inbox{}
	testkit.Subscriber(t, n2.addr, "sub", 0, in, 1, "t/#")
	routed(t, n1, 1)
	pub := testkit.MQTTClient(t, n1.addr, "pub", nil)
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
