package broker

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	mqtt "github.com/mqkafka/mqkafka/third_party/mochi"
	"github.com/mqkafka/mqkafka/third_party/mochi/packets"

	"github.com/mqkafka/mqkafka/internal/testkit"
)

func TestStoreRoundTrip(t *testing.T) {
	dir := t.TempDir()
	log := testkit.Logger(t)
	st, err := openStore(dir, log)
	if err != nil {
		t.Fatal(err)
	}
	srv := mqtt.New(&mqtt.Options{Logger: log})
	a := srv.NewClient(nil, "tcp-0", "a", false)
	ab := srv.NewClient(nil, "tcp-0", "a:b", false) // a client id holding the key separator
	for _, cl := range []*mqtt.Client{a, ab} {
		st.OnSessionEstablished(cl, packets.Packet{})
		st.OnSubscribed(cl, packets.Packet{Filters: packets.Subscriptions{{Filter: "x/#"}, {Filter: "denied"}}}, []byte{1, 0x87})
		for id := uint16(1); id <= 3; id++ {
			st.OnQosPublish(cl, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, PacketID: id, TopicName: "x/y", Payload: []byte{byte(id)}}, 0, 0)
		}
		// A QoS 1 publish's PUBACK is not stored.
		st.OnQosPublish(cl, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: 9}, 0, 0)
	}
	st.OnRetainMessage(a, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Retain: true}, TopicName: "r/1", Payload: []byte("v")}, 1)
	st.OnRetainMessage(a, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Retain: true}, TopicName: "r/2", Payload: []byte("v")}, 1)
	st.OnRetainMessage(a, packets.Packet{TopicName: "r/2"}, -1)
	// Keys too long for bbolt (32KB) are kept under a digest of the id, filter or topic.
	long := strings.Repeat("t", 40000)
	st.OnRetainMessage(a, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Retain: true}, TopicName: long, Payload: []byte("l")}, 1)
	la, lb := srv.NewClient(nil, "tcp-0", "L"+long, false), srv.NewClient(nil, "tcp-0", "M"+long, false)
	for _, cl := range []*mqtt.Client{la, lb} {
		st.OnSessionEstablished(cl, packets.Packet{})
		st.OnSubscribed(cl, packets.Packet{Filters: packets.Subscriptions{{Filter: "x/#"}, {Filter: long + "/#"}}}, []byte{1, 1})
		st.OnQosPublish(cl, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, PacketID: 7, TopicName: long, Payload: []byte("l")}, 0, 0)
	}
	st.OnSubscribed(ab, packets.Packet{Filters: packets.Subscriptions{{Filter: long}}}, []byte{1})
	st.OnUnsubscribed(ab, packets.Packet{Filters: packets.Subscriptions{{Filter: long}}})
	st.OnClientExpired(lb)
	st.OnQosComplete(a, packets.Packet{PacketID: 3})
	st.OnClientExpired(a)
	if err := st.Stop(); err != nil {
		t.Fatal(err)
	}
	st.OnQosComplete(ab, packets.Packet{PacketID: 1}) // after Stop: dropped, no panic

	st, err = openStore(dir, log)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Stop()
	clients, err := st.StoredClients()
	// Long keys sort first ("CL_\x00…").
	if err != nil || len(clients) != 2 || clients[0].ID != la.ID || clients[1].ID != "a:b" {
		t.Fatalf("clients %d, %v; want a:b and the long one only", len(clients), err)
	}
	subs, err := st.StoredSubscriptions()
	if err != nil || len(subs) != 3 {
		t.Fatalf("%d subscriptions, %v; want 3", len(subs), err)
	}
	want := map[[2]string]bool{{"a:b", "x/#"}: true, {la.ID, "x/#"}: true, {la.ID, long + "/#"}: true}
	for _, sb := range subs {
		if !want[[2]string{sb.Client, sb.Filter}] {
			t.Errorf("subscription of %.10q to %.10q", sb.Client, sb.Filter)
		}
	}
	msgs, err := st.StoredInflightMessages()
	if err != nil || len(msgs) != 4 {
		t.Fatalf("%d in-flight, %v; want the long one's and 3 of a:b", len(msgs), err)
	}
	for i, m := range msgs[1:] {
		if m.Client != "a:b" || m.PacketID != uint16(i+1) || m.ToPacket().PacketID != uint16(i+1) {
			t.Errorf("in-flight %d: %+v", i, m)
		}
	}
	if m := msgs[0]; m.Client != la.ID || m.PacketID != 7 || m.TopicName != long {
		t.Errorf("long in-flight: client %.10q, id %d, topic %.10q", m.Client, m.PacketID, m.TopicName)
	}
	ret, err := st.StoredRetainedMessages()
	if err != nil || len(ret) != 2 || ret[0].TopicName != long || ret[1].TopicName != "r/1" {
		t.Fatalf("%d retained, %v; want r/1 and the long one", len(ret), err)
	}
}

func TestStoreIsLocked(t *testing.T) {
	dir := t.TempDir()
	st, err := openStore(dir, testkit.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Stop()
	if _, err := openStore(dir, testkit.Logger(t)); err == nil || !strings.Contains(err.Error(), "another mqkafka") {
		t.Fatalf("second open: %v", err)
	}
}

// TestLongSessionSurvivesRestart: a session with a 40,000-byte client id,
// a 33,000-byte filter, a message queued for it on a 33,000-byte topic and
// a retained message there, all over bbolt's 32KB key limit, are back after
// a restart.
func TestLongSessionSurvivesRestart(t *testing.T) {
	cfg := brokerConfig(t, fmt.Sprintf(`[broker]
data_dir = %q
listeners = [{ address = "127.0.0.1:0" }]
max_topic_length = 40000
[broker.auth]
allow_anonymous = true
`, t.TempDir()))
	id := strings.Repeat("c", 40000)
	topic := "t/" + strings.Repeat("x", 33000)
	b1, _ := startBroker(t, cfg)
	c, rc, err := rawConn(t, b1.Addrs()[0], 5, id, false, "")
	if err != nil || rc != 0 {
		t.Fatalf("connect: %#x, %v", rc, err)
	}
	if got := c.subscribe(1, topic); !bytes.Equal(got, []byte{1}) {
		t.Fatalf("SUBACK %#x", got)
	}
	c.conn.Close()
	waitOffline(t, b1, id)
	p := testkit.MQTTClient(t, b1.Addrs()[0], "pub", nil)
	pub(t, p, topic, 1, false, "queued")
	pub(t, p, topic, 1, true, "retained")
	_ = p.Disconnect(&paho.Disconnect{})
	if err := b1.Close(); err != nil {
		t.Fatal(err)
	}

	b2, _ := startBroker(t, cfg)
	if _, ok := b2.srv.Clients.Get(id); !ok {
		t.Fatal("the session was not restored")
	}
	c, rc, err = rawConn(t, b2.Addrs()[0], 5, id, false, "")
	if err != nil || rc != 0 {
		t.Fatalf("reconnect: %#x, %v", rc, err)
	}
	var got []string
	for range 2 {
		pk := c.expect(packets.Publish)
		if pk.TopicName != topic {
			t.Fatalf("got a publish to a topic of %d bytes", len(pk.TopicName))
		}
		got = append(got, string(pk.Payload))
	}
	slices.Sort(got)
	if !slices.Equal(got, []string{"queued", "retained"}) {
		t.Fatalf("after the restart got %v, want the queued and the retained message", got)
	}
	var retained inbox
	testkit.Subscribe(t, testkit.MQTTClient(t, b2.Addrs()[0], "late", retained.add), topic)
	testkit.WaitFor(t, 5*time.Second, "the retained message", func() bool { return len(retained.got()) == 1 })
}
