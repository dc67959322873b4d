package broker

import (
	"fmt"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/mqkafka/mqkafka/third_party/mochi/packets"

	"github.com/mqkafka/mqkafka/conf"
	"github.com/mqkafka/mqkafka/internal/testkit"
)

// offlineSubscriber leaves session id, subscribed to x at QoS 1 and
// expiring after expiry seconds, offline for messages to queue.
func offlineSubscriber(t *testing.T, b *Broker, id string, expiry uint32) {
	t.Helper()
	s, _ := session(t, b.Addrs()[0], v5connect(id, false, expiry))
	if code := s.sub(1, packets.Subscription{Filter: "x", Qos: 1}, 0); code != 1 {
		t.Fatalf("SUBACK %#x, want 1", code)
	}
	s.conn.Close()
	waitOffline(t, b, id)
}

// TestAttackOfflineQueue: a persistent session queued max_inflight (8192)
// QoS 1/2 messages while offline, up to max_packet_size each: four such
// sessions took heap from 1MB to 504MB with 100 publishes of 1MB. Past
// max_mqueue_len the new message for that session is dropped and counted;
// the queued ones are delivered when the client returns. The same holds for
// a connected subscriber whose Receive Maximum is used up.
func TestAttackOfflineQueue(t *testing.T) {
	b, _ := anonBroker(t, `max_mqueue_len = 5`)
	addr := b.Addrs()[0]
	offlineSubscriber(t, b, "offline-sub", 0xFFFFFFFF)
	p, _ := session(t, addr, v5connect("offline-pub", true, 0))
	for i := 1; i <= 12; i++ {
		p.pub(uint16(i), "x", 1, false, fmt.Sprint(i), packets.Properties{})
		if ack := p.expect(packets.Puback); ack.ReasonCode != 0 {
			t.Fatalf("PUBACK %#x", ack.ReasonCode)
		}
	}
	testkit.WaitFor(t, 5*time.Second, "7 messages dropped", func() bool { return b.Drops()[reasonMqueueLen] == 7 })
	s, ack := session(t, addr, v5connect("offline-sub", false, 0xFFFFFFFF))
	if !ack.SessionPresent {
		t.Fatal("session not resumed")
	}
	var got []string
	for _, pk := range s.collect(5) {
		got = append(got, string(pk.Payload))
		s.ack(packets.Puback, pk.PacketID)
	}
	// mochi resends a session's messages in no set order.
	slices.Sort(got)
	if !slices.Equal(got, []string{"1", "2", "3", "4", "5"}) {
		t.Fatalf("delivered %q, want the 5 oldest", got)
	}
	if extra := publishes(s.ping()); len(extra) > 0 {
		t.Fatalf("message %q past max_mqueue_len delivered", extra[0].Payload)
	}
	if got := b.Drops()[reasonMqueueLen]; got != 7 {
		t.Fatalf("dropped %s = %d, want 7", reasonMqueueLen, got)
	}
}

// TestAttackBlockedQueue: a connected subscriber that acknowledges nothing
// uses up its Receive Maximum; the messages behind it wait, at most
// max_mqueue_len of them.
func TestAttackBlockedQueue(t *testing.T) {
	b, _ := anonBroker(t, `max_mqueue_len = 5`)
	addr := b.Addrs()[0]
	connect := v5connect("blocked-sub", true, 0)
	connect.Properties.ReceiveMaximum = 1
	s, _ := session(t, addr, connect)
	if code := s.sub(1, packets.Subscription{Filter: "x", Qos: 1}, 0); code != 1 {
		t.Fatalf("SUBACK %#x, want 1", code)
	}
	p, _ := session(t, addr, v5connect("blocked-pub", true, 0))
	for i := 1; i <= 12; i++ {
		p.pub(uint16(i), "x", 1, false, fmt.Sprint(i), packets.Properties{})
		if ack := p.expect(packets.Puback); ack.ReasonCode != 0 {
			t.Fatalf("PUBACK %#x", ack.ReasonCode)
		}
	}
	// One in flight, five waiting, six dropped.
	testkit.WaitFor(t, 5*time.Second, "6 messages dropped", func() bool { return b.Drops()[reasonMqueueLen] == 6 })
	var got []string
	for len(got) < 6 {
		pk := s.expect(packets.Publish)
		got = append(got, string(pk.Payload))
		s.ack(packets.Puback, pk.PacketID)
	}
	if !slices.Equal(got, []string{"1", "2", "3", "4", "5", "6"}) {
		t.Fatalf("delivered %q, want 1 to 6", got)
	}
	if extra := publishes(s.ping()); len(extra) > 0 {
		t.Fatalf("message %q past max_mqueue_len delivered", extra[0].Payload)
	}
}

// TestSessionExpiryDefault: max_session_expiry had no default, so a session
// asking for "never" (0xFFFFFFFF) was kept for good, about 69KB each; it is
// now EMQX's 2h, and the CONNACK tells the client so.
func TestSessionExpiryDefault(t *testing.T) {
	b, _ := anonBroker(t, "")
	_, ack := session(t, b.Addrs()[0], v5connect("forever", false, 0xFFFFFFFF))
	if p := ack.Properties; !p.SessionExpiryIntervalFlag || p.SessionExpiryInterval != 7200 {
		t.Fatalf("CONNACK Session Expiry Interval %d (set %v), want 7200 (2h)", p.SessionExpiryInterval, p.SessionExpiryIntervalFlag)
	}
}

// TestExpiredSessionLeavesNoSubscription: an expired session's
// subscriptions left mochi's topic index with it only once patched; a new
// session with the same client id got what the old one had subscribed to
// [MQTT-4.1.0-2], and a cluster node kept announcing the filter.
func TestExpiredSessionLeavesNoSubscription(t *testing.T) {
	b, _ := startBroker(t, brokerConfig(t, fmt.Sprintf(`[broker]
data_dir = %q
persistence = false
listeners = [{ address = "127.0.0.1:0" }]
[broker.auth]
allow_anonymous = true
`, t.TempDir())))
	addr := b.Addrs()[0]
	old := testkit.Subscriber(t, addr, "dev", 1, &testkit.Inbox{}, 1, "old/#")
	_ = old.Disconnect(&paho.Disconnect{})
	testkit.WaitFor(t, 10*time.Second, "the session to expire", func() bool {
		_, ok := b.srv.Clients.Get("dev")
		return !ok
	})
	if b.srv.Topics.Subscribed("old/#") || b.Info().Subscriptions != 0 {
		t.Fatalf("the expired session's filter is still indexed (%d subscriptions)", b.Info().Subscriptions)
	}
	box := &testkit.Inbox{}
	testkit.Subscriber(t, addr, "dev", 0, box, 1, "new")
	testkit.Publish(t, testkit.MQTTClient(t, addr, "pub", nil), "old/x", 1, []byte("not yours"))
	testkit.Settle(t, addr, "new", box)
	if box.Len() != 0 {
		t.Fatalf("a new session got %q, subscribed to by the expired one", box.Payloads())
	}
}

// TestRestoredSessionExpiry: a session stored under a longer limit (as
// "never" was before max_session_expiry had a default) is held to the
// limit in force when it is restored.
func TestRestoredSessionExpiry(t *testing.T) {
	dir := t.TempDir()
	config := func(limit string) conf.Broker {
		return brokerConfig(t, fmt.Sprintf(`[broker]
data_dir = %q
listeners = [{ address = "127.0.0.1:0" }]
max_session_expiry = %q
[broker.auth]
allow_anonymous = true
`, dir, limit))
	}
	b1, _ := startBroker(t, config("0s"))
	c, _ := session(t, b1.Addrs()[0], v5connect("forever", false, 0xFFFFFFFF))
	c.conn.Close()
	waitOffline(t, b1, "forever")
	if err := b1.Close(); err != nil {
		t.Fatal(err)
	}
	b2, _ := startBroker(t, config("2h"))
	cl, ok := b2.srv.Clients.Get("forever")
	if !ok {
		t.Fatal("the session was not restored")
	}
	if got := cl.Properties.Props.SessionExpiryInterval; got != 7200 {
		t.Fatalf("restored session expiry %d s, want 7200", got)
	}
}

// TestOfflineSessionHeap: an offline session kept its connection's write
// queue, max_client_writes_pending pointers (64KB at the default), and cost
// about 69KB of heap; it costs about 4KB without it.
func TestOfflineSessionHeap(t *testing.T) {
	if per := offlineSessionHeap(t, 300); per > 32<<10 {
		t.Fatalf("%.0f bytes of heap per offline session, want under 32KB", per)
	}
}

// TestAttackOfflineQueueBytes: max_mqueue_len messages of max_packet_size
// are still 1GB a session, so max_mqueue_bytes bounds their payload bytes;
// the bytes held are given back as messages are acknowledged.
func TestAttackOfflineQueueBytes(t *testing.T) {
	b, _ := anonBroker(t, `max_mqueue_bytes = "1KB"`)
	addr := b.Addrs()[0]
	offlineSubscriber(t, b, "bytes-sub", 3600)
	p, _ := session(t, addr, v5connect("bytes-pub", true, 0))
	payload := strings.Repeat("m", 300)
	for i := 1; i <= 10; i++ {
		p.pub(uint16(i), "x", 1, false, payload, packets.Properties{})
		if ack := p.expect(packets.Puback); ack.ReasonCode != 0 {
			t.Fatalf("PUBACK %#x", ack.ReasonCode)
		}
	}
	// 3 × 300 bytes fit in 1KB.
	testkit.WaitFor(t, 5*time.Second, "7 messages dropped", func() bool { return b.Drops()[reasonMqueueBytes] == 7 })
	s, _ := session(t, addr, v5connect("bytes-sub", false, 3600))
	for _, pk := range s.collect(3) {
		s.ack(packets.Puback, pk.PacketID)
	}
	if extra := publishes(s.ping()); len(extra) > 0 {
		t.Fatal("a message past max_mqueue_bytes delivered")
	}
	testkit.WaitFor(t, 5*time.Second, "no bytes held once acknowledged", func() bool {
		cl, ok := b.srv.Clients.Get("bytes-sub")
		return ok && cl.State.Inflight.Bytes() == 0
	})
}

// TestQueuedMessageHeap: mochi's decoder gives a PUBLISH's topic as a
// string sharing the packet's read buffer, so each message queued for an
// offline session (or retained) also kept the whole packet it came in: a
// 500KB message cost 1MB. It costs its payload now.
func TestQueuedMessageHeap(t *testing.T) {
	b, _ := anonBroker(t, "")
	addr := b.Addrs()[0]
	offlineSubscriber(t, b, "heap-sub", 3600)
	p, _ := session(t, addr, v5connect("heap-pub", true, 0))
	payload := strings.Repeat("m", 500_000)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	const n = 20
	for i := 1; i <= n; i++ {
		p.pub(uint16(i), "x", 1, false, payload, packets.Properties{})
		if ack := p.expect(packets.Puback); ack.ReasonCode != 0 {
			t.Fatalf("PUBACK %#x", ack.ReasonCode)
		}
	}
	cl, _ := b.srv.Clients.Get("heap-sub")
	testkit.WaitFor(t, 5*time.Second, "every message queued", func() bool { return cl.State.Inflight.Len() == n })
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grown := int64(after.HeapAlloc) - int64(before.HeapAlloc); grown > int64(n*len(payload)*3/2) {
		t.Fatalf("heap grew %d bytes for %d queued messages of %d bytes", grown, n, len(payload))
	}
}
