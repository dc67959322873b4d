package mqtt

import (
	"fmt"
	"testing"
	"time"

	"github.com/mqkafka/mqkafka/third_party/mochi/packets"
)

// lockStress runs read until it has done n calls while write loops, and
// fails if read stops making progress: a recursive read lock deadlocks as
// soon as a writer queues between its two acquisitions.
func lockStress(t *testing.T, what string, n int, read, write func(i int)) {
	t.Helper()
	done := make(chan struct{})
	stop := make(chan struct{})
	go func() {
		defer close(done)
		for i := range n {
			read(i)
		}
	}()
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			write(i)
		}
	}()
	defer close(stop)
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatalf("%s deadlocked against concurrent writers", what)
	}
}

// TestInflightNextImmediateWithWriters: mochi runs NextImmediate after each
// packet from a client with QoS 1/2 messages in flight, while publishes to
// that client write the same in-flight store. v2.7.9 took the read lock
// twice there, which deadlocks once a writer queues between the two; the
// patched copy in third_party fixes it (see MQKAFKA_PATCHES.md there).
func TestMqkafkaInflightNextImmediateWithWriters(t *testing.T) {
	in := NewInflights()
	in.Set(packets.Packet{PacketID: 1, Expiry: -1})
	lockStress(t, "Inflight.NextImmediate", 300_000, func(int) { in.NextImmediate() }, func(i int) {
		id := uint16(i%1000 + 2)
		in.Set(packets.Packet{PacketID: id})
		in.Delete(id)
	})
}

// TestClientsGetByListenerWithWriters: mochi's Close runs GetByListener
// while clients may still connect or disconnect; v2.7.9 read-locked the
// client map twice there (upstream #488), which could hang a stop.
func TestMqkafkaClientsGetByListenerWithWriters(t *testing.T) {
	cs := NewClients()
	cs.Add(&Client{ID: "resident"})
	lockStress(t, "Clients.GetByListener", 300_000, func(int) { cs.GetByListener("tcp-0") }, func(i int) {
		id := fmt.Sprintf("c%d", i%1000)
		cs.Add(&Client{ID: id})
		cs.Delete(id)
	})
}
