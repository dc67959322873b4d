package broker

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	mqtt "github.com/mqkafka/mqkafka/third_party/mochi"
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

// refusedSession fails unless the broker answers pk (a CONNECT) with
// CONNACK code and closes the connection.
func refusedSession(t *testing.T, addr string, pk packets.Packet, code byte) {
	t.Helper()
	c, ack := open(t, addr, pk)
	if ack.FixedHeader.Type != packets.Connack || ack.ReasonCode != code || ack.SessionPresent {
		t.Fatalf("connect %q: got packet type %d reason %#x present %v, want CONNACK %#x", pk.Connect.ClientIdentifier,
			ack.FixedHeader.Type, ack.ReasonCode, ack.SessionPresent, code)
	}
	c.expectEnd()
}

// resumed fails unless pk (a CONNECT of a persistent session) gets its
// session back; the connection is closed again, leaving it offline.
func resumed(t *testing.T, b *Broker, pk packets.Packet) {
	t.Helper()
	c, ack := session(t, b.Addrs()[0], pk)
	if !ack.SessionPresent {
		t.Fatalf("%s reconnected without its session", pk.Connect.ClientIdentifier)
	}
	c.conn.Close()
	waitOffline(t, b, pk.Connect.ClientIdentifier)
}

// TestAttackSessions: a fleet connecting with ever-new client ids and
// persistent sessions left one offline session per id, each with its own
// queue, bounded only by their expiry. Past max_sessions (connected
// clients plus offline sessions) a CONNECT with a new id is refused with
// CONNACK 0x97 (MQTT 3.1.1: 3) and counted; an id whose session is held
// still resumes or takes it over, and once a session ends, by a clean
// start or by expiry, a new id is accepted.
func TestAttackSessions(t *testing.T) {
	b, _ := anonBroker(t, `max_sessions = 3`)
	addr := b.Addrs()[0]
	for _, pk := range []packets.Packet{v5connect("kept5", false, 3600), v3connect("kept3", false)} {
		c, _ := session(t, addr, pk)
		c.conn.Close()
		waitOffline(t, b, pk.Connect.ClientIdentifier)
	}
	session(t, addr, v5connect("live", true, 0))
	if n := b.Sessions(); n != 3 {
		t.Fatalf("%d sessions, want 3: two offline, one connected", n)
	}

	refusedSession(t, addr, v5connect("new5", false, 3600), 0x97)
	refusedSession(t, addr, v5connect("", true, 0), 0x97) // an id the broker would assign
	refusedSession(t, addr, v3connect("new3", true), 3)
	resumed(t, b, v5connect("kept5", false, 3600))
	resumed(t, b, v3connect("kept3", false))
	session(t, addr, v5connect("live", true, 0)) // takes over the connection
	if got := b.Refused()[reasonSessions]; got != 3 {
		t.Fatalf("refused %s = %d, want 3", reasonSessions, got)
	}

	// A clean start replaces kept5's session, which ends with its connection.
	c, _ := session(t, addr, v5connect("kept5", true, 0))
	c.put(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}})
	testkit.WaitFor(t, 5*time.Second, "kept5's session to end", func() bool { return b.Sessions() == 2 })
	c, _ = session(t, addr, v5connect("brief", false, 1))
	c.conn.Close()
	waitOffline(t, b, "brief")
	refusedSession(t, addr, v5connect("late", false, 3600), 0x97)
	testkit.WaitFor(t, 10*time.Second, "brief's session to expire", func() bool { return b.Sessions() == 2 })
	session(t, addr, v5connect("late", false, 3600))
	if got := b.Refused()[reasonSessions]; got != 4 {
		t.Fatalf("refused %s = %d, want 4", reasonSessions, got)
	}
}

// TestSessionLimitAfterRestart: sessions restored from the store count
// towards max_sessions, and they all come back even when they are past it.
func TestSessionLimitAfterRestart(t *testing.T) {
	dir := t.TempDir()
	config := func(limit int) conf.Broker {
		return brokerConfig(t, fmt.Sprintf(`[broker]
data_dir = %q
listeners = [{ address = "127.0.0.1:0" }]
max_sessions = %d
[broker.auth]
allow_anonymous = true
`, dir, limit))
	}
	stored := []packets.Packet{v5connect("stored5", false, 3600), v3connect("stored3", false)}
	b1, _ := startBroker(t, config(3))
	for _, pk := range stored {
		c, _ := session(t, b1.Addrs()[0], pk)
		c.conn.Close()
		waitOffline(t, b1, pk.Connect.ClientIdentifier)
	}
	if err := b1.Close(); err != nil {
		t.Fatal(err)
	}

	b2, _ := startBroker(t, config(1))
	if n := b2.Sessions(); n != 2 {
		t.Fatalf("%d sessions restored, want 2", n)
	}
	refusedSession(t, b2.Addrs()[0], v5connect("new5", false, 3600), 0x97)
	refusedSession(t, b2.Addrs()[0], v3connect("new3", false), 3)
	for _, pk := range stored {
		resumed(t, b2, pk)
	}
	if got := b2.Refused()[reasonSessions]; got != 2 {
		t.Fatalf("refused %s = %d, want 2", reasonSessions, got)
	}
}

// TestAttackInlineClientID: mochi's inline client, through which the
// bridge publishes Kafka's records, is a session named "inline". A
// client taking that id found it held, so it passed max_sessions when
// full, took the inline client's place and, ending, left the broker
// without one: sources could no longer publish and the session count
// fell below what the node holds. The id is refused (CONNACK 0x85, MQTT
// 3.1.1: 2) whatever the limits, counted as clientid_reserved.
func TestAttackInlineClientID(t *testing.T) {
	b, _ := anonBroker(t, `max_sessions = 1`)
	addr := b.Addrs()[0]
	session(t, addr, v5connect("device", true, 0))
	refusedSession(t, addr, v5connect(mqtt.InlineClientId, true, 0), 0x85)
	refusedSession(t, addr, v3connect(mqtt.InlineClientId, true), 2)
	if n := b.Sessions(); n != 1 {
		t.Fatalf("%d sessions, want 1", n)
	}
	if got := b.Refused()[reasonReservedID]; got != 2 {
		t.Fatalf("refused %s = %d, want 2", reasonReservedID, got)
	}
	if err := b.Publish("t", []byte("from a source"), false, 1, nil); err != nil {
		t.Fatalf("inline publish: %v", err)
	}
}
