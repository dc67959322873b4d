package broker

import (
	"testing"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqkafka/mqkafka/internal/testkit"
)

// BenchmarkStoreQoS1Delivery is the session store's share of one QoS 1
// delivery: its in-flight record stored, then deleted on PUBACK, committed
// in batches.
func BenchmarkStoreQoS1Delivery(b *testing.B) {
	st, err := openStore(b.TempDir(), testkit.Logger(b))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Stop()
	srv := mqtt.New(&mqtt.Options{Logger: testkit.Logger(b)})
	cl := srv.NewClient(nil, "tcp-0", "sub", false)
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, TopicName: "bench/x", Payload: make([]byte, 100)}
	b.ResetTimer()
	for i := range b.N {
		pk.PacketID = uint16(i%65535 + 1)
		st.OnQosPublish(cl, pk, 0, 0)
		st.OnQosComplete(cl, pk)
	}
	st.flush()
}
