package broker

import (
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// TestInflightNextImmediateWithWriters: mochi runs NextImmediate after each
// packet from a client with QoS 1/2 messages in flight, while publishes to
// that client write the same in-flight store. v2.7.9 took the read lock
// twice there, which deadlocks once a writer queues between the two; the
// patched copy in third_party fixes it (see MQKAFKA_PATCHES.md there).
func TestInflightNextImmediateWithWriters(t *testing.T) {
	in := mqtt.NewInflights()
	in.Set(packets.Packet{PacketID: 1, Expiry: -1})
	done := make(chan struct{})
	stop := make(chan struct{})
	go func() {
		defer close(done)
		for range 300_000 {
			in.NextImmediate()
		}
	}()
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			id := uint16(i%1000 + 2)
			in.Set(packets.Packet{PacketID: id})
			in.Delete(id)
		}
	}()
	defer close(stop)
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("NextImmediate deadlocked against concurrent writers")
	}
}
