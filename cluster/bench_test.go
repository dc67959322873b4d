package cluster_test

import (
	"fmt"
	"testing"

	"github.com/mqkafka/mqkafka/internal/testkit"
)

// BenchmarkPublishWithRemoteRoute is what a publish costs the node it came
// in while another node subscribes to its topic: the size check, the
// routing and the record to that node (which stops receiving, so that
// only the publishing node works): `go test -run '^$' -bench
// PublishWithRemoteRoute -benchmem ./cluster`. dropped/op above 0 means
// Kafka did not keep up and the figure includes refused records.
func BenchmarkPublishWithRemoteRoute(b *testing.B) {
	_, kafka := testkit.NewKafka(b, 0)
	// n1 and n3 read different partitions of the messages topic: n1 reads
	// none of the records it sends.
	n1, n3 := join(b, kafka, "n1"), join(b, kafka, "n3")
	testkit.Subscriber(b, n3.addr, "sub", 0, &testkit.Inbox{}, 0, "t/#")
	routed(b, n1, 1)
	n3.n.StopReceiving()
	payload := make([]byte, 100)
	for _, props := range [][][2]string{nil, {{"k", "v"}, {"trace", "0123456789abcdef"}}} {
		b.Run(fmt.Sprintf("user_props=%d", len(props)), func(b *testing.B) {
			dropped := n1.n.Status().MessagesDropped
			b.ReportAllocs()
			for b.Loop() {
				if err := n1.b.Publish("t/x", payload, false, 0, props); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n1.n.Status().MessagesDropped-dropped)/float64(b.N), "dropped/op")
		})
	}
}
