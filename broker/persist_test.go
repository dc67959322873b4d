package broker

import (
	"strings"
	"testing"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

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
	// Too long a key for bbolt: left out, without the rest of its batch.
	st.OnRetainMessage(a, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Retain: true}, TopicName: strings.Repeat("t", 40000)}, 1)
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
	if err != nil || len(clients) != 1 || clients[0].ID != "a:b" {
		t.Fatalf("clients %+v, %v; want a:b only", clients, err)
	}
	subs, err := st.StoredSubscriptions()
	if err != nil || len(subs) != 1 || subs[0].Client != "a:b" || subs[0].Filter != "x/#" {
		t.Fatalf("subscriptions %+v, %v", subs, err)
	}
	msgs, err := st.StoredInflightMessages()
	if err != nil || len(msgs) != 3 {
		t.Fatalf("in-flight %+v, %v; want 3 of a:b", msgs, err)
	}
	for i, m := range msgs {
		if m.Client != "a:b" || m.PacketID != uint16(i+1) || m.ToPacket().PacketID != uint16(i+1) {
			t.Errorf("in-flight %d: %+v", i, m)
		}
	}
	ret, err := st.StoredRetainedMessages()
	if err != nil || len(ret) != 1 || ret[0].TopicName != "r/1" {
		t.Fatalf("retained %+v, %v", ret, err)
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
