package broker

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/mqkafka/mqkafka/third_party/mochi/packets"

	"github.com/mqkafka/mqkafka/conf"
	"github.com/mqkafka/mqkafka/internal/testkit"
)

// TestAttackSubscriptionsPerClient: one SUBSCRIBE may carry tens of
// thousands of filters and each costs about 1.2KB for as long as the
// session lives (200,000 filters in ten packets took 245MB of heap), so a
// session holds at most max_subscriptions: a new filter past it gets 0x97
// (MQTT 3.1.1: 0x80) and is counted; renewing one it holds is allowed.
func TestAttackSubscriptionsPerClient(t *testing.T) {
	b, _ := anonBroker(t, `max_subscriptions = 100`)
	many := func(prefix string, n int) []string {
		fs := make([]string, n)
		for i := range fs {
			fs[i] = fmt.Sprintf("%s/%d", prefix, i)
		}
		return fs
	}

	for _, v := range []byte{5, 4} {
		c, _ := session(t, b.Addrs()[0], packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: v,
			Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), Clean: true, Keepalive: 30, ClientIdentifier: fmt.Sprintf("subber%d", v)}})
		refused := map[byte]byte{5: 0x97, 4: 0x80}[v]
		codes := c.subscribe(1, many("a", 150)...)
		for i, code := range codes {
			if want := map[bool]byte{true: 1, false: refused}[i < 100]; code != want {
				t.Fatalf("v%d: filter %d of 150 got %#x, want %#x", v, i, code, want)
			}
		}
		// Held filters renew; new ones stay refused, also in later packets.
		codes = c.subscribe(2, "a/0", "a/99", "b/0")
		if codes[0] != 1 || codes[1] != 1 || codes[2] != refused {
			t.Fatalf("v%d: renew a/0, a/99 and new b/0: got %#x, want [1 1 %#x]", v, codes, refused)
		}
	}
	if got := b.Refused()[reasonSubs]; got != 2*51 {
		t.Fatalf("refused %s = %d, want %d", reasonSubs, got, 2*51)
	}
}

// TestAttackRetainedMessages: retained messages stay after their publisher
// left, up to max_packet_size each, and nothing bounded their number: 300
// retained 1MB publishes to distinct topics took 643MB of heap from one
// client. Past max_retained_messages a retained publish to a new topic is
// refused before any rule or subscriber sees it: PUBACK 0x97 (MQTT 5 QoS
// 1/2), else the connection is closed (after DISCONNECT 0x97 for MQTT 5);
// replacing or deleting a retained message is allowed.
func TestAttackRetainedMessages(t *testing.T) {
	b, rec := anonBroker(t, `max_retained_messages = 3`)
	addr := b.Addrs()[0]
	// mochi retains its $SYS topics just after it starts listening.
	testkit.WaitFor(t, 5*time.Second, "mochi's $SYS topics retained", func() bool {
		return b.srv.Topics.Retained.Len() == sysRetained
	})
	c, _ := session(t, addr, v5connect("retainer", true, 0))
	publish := func(id uint16, topic, payload string) byte {
		t.Helper()
		c.pub(id, topic, 1, true, payload, packets.Properties{})
		ack := c.expect(packets.Puback)
		if ack.PacketID != id {
			t.Fatalf("PUBACK id %d, want %d", ack.PacketID, id)
		}
		return ack.ReasonCode
	}
	for i, step := range []struct {
		topic, payload string
		want           byte
	}{
		{"r/0", "a", 0}, {"r/1", "a", 0}, {"r/2", "a", 0},
		{"r/3", "a", 0x97}, // full
		{"r/0", "b", 0},    // replaces
		{"r/1", "", 0},     // deletes
		{"r/3", "a", 0},    // room again
		{"r/4", "a", 0x97},
	} {
		if got := publish(uint16(i+1), step.topic, step.payload); got != step.want {
			t.Fatalf("step %d: retained publish to %s got PUBACK %#x, want %#x", i, step.topic, got, step.want)
		}
	}
	if n := b.srv.Topics.Retained.Len() - sysRetained; n != 3 {
		t.Fatalf("%d retained messages, want 3", n)
	}
	if slices.Contains(rec.got(), "r/4") {
		t.Fatalf("a refused publish reached the rules: %v", rec.got())
	}

	q0, _ := session(t, addr, v5connect("retainer-qos0", true, 0))
	q0.pub(0, "r/5", 0, true, "a", packets.Properties{})
	q0.expectClosed(0x97)
	v3, _ := session(t, addr, v3connect("retainer-v3", true))
	v3.pub(1, "r/6", 1, true, "a", packets.Properties{})
	v3.expectClosed(0)
	if got := b.Refused()[reasonRetained]; got != 4 {
		t.Fatalf("refused %s = %d, want 4", reasonRetained, got)
	}
}

// TestAttackRetainedInline: mochi asks no hook about its inline client's
// publishes, so a Kafka source's retained records (or a republish action's)
// went past max_retained_messages. Past it Broker.Publish refuses a retained
// message for a new topic with an error wrapping conf.ErrInvalidTopic (the
// source drops it instead of retrying it for good) and counts it; a
// subscriber then gets only the retained messages within the limit.
func TestAttackRetainedInline(t *testing.T) {
	b, _ := anonBroker(t, `max_retained_messages = 2`)
	testkit.WaitFor(t, 5*time.Second, "mochi's $SYS topics retained", func() bool {
		return b.srv.Topics.Retained.Len() == sysRetained
	})
	for i, step := range []struct {
		topic, payload string
		refused        bool
	}{
		{"k/0", "a", false}, {"k/1", "a", false},
		{"k/2", "a", true},  // full
		{"k/0", "b", false}, // replaces
	} {
		err := b.Publish(step.topic, []byte(step.payload), true, 1, nil)
		if step.refused != (err != nil) || (err != nil && !(errors.Is(err, ErrRetainedLimit) && errors.Is(err, conf.ErrInvalidTopic))) {
			t.Fatalf("step %d: retained publish to %s: %v, want refused %v (ErrRetainedLimit)", i, step.topic, err, step.refused)
		}
	}
	c, _ := session(t, b.Addrs()[0], v5connect("retained-reader", true, 0))
	if code := c.sub(1, packets.Subscription{Filter: "k/#", Qos: 0}, 0); code != 0 {
		t.Fatalf("SUBACK %#x", code)
	}
	var got []string
	for _, pk := range c.collect(2) {
		got = append(got, pk.TopicName+"="+string(pk.Payload))
	}
	slices.Sort(got)
	if !slices.Equal(got, []string{"k/0=b", "k/1=a"}) {
		t.Fatalf("retained messages %v, want k/0=b and k/1=a", got)
	}
	if extra := publishes(c.ping()); len(extra) > 0 {
		t.Fatalf("retained message past the limit delivered: %s", extra[0].TopicName)
	}
	if got := b.Refused()[reasonRetained]; got != 1 {
		t.Fatalf("refused %s = %d, want 1", reasonRetained, got)
	}
}
