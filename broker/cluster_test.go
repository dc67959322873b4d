package broker

import (
	"fmt"
	"testing"
	"time"

	"github.com/mqkafka/mqkafka/cluster"
)

// TestCrossNodeExpiry: a message from another node keeps what is left of
// its Message Expiry Interval, and one that ran out on the way is not
// delivered.
func TestCrossNodeExpiry(t *testing.T) {
	now := time.Now().Unix()
	pk := crossPacket(&cluster.Message{Topic: "t", QoS: 1, Created: now - 10, ExpiryInterval: 60})
	if got := pk.Properties.MessageExpiryInterval; got < 49 || got > 50 {
		t.Fatalf("Message Expiry Interval %d after 10 s of 60, want 50", got)
	}
	cfg := brokerConfig(t, "[broker]\nlisteners = [{ address = \"127.0.0.1:0\" }]\npersistence = false\n[broker.auth]\nallow_anonymous = true\n")
	b := startBrokerWith(t, cfg, &recorder{}, func(b *Broker) {
		if err := b.JoinCluster(noRoutes{}); err != nil {
			t.Fatal(err)
		}
	})
	if err := b.Deliver(&cluster.Message{Topic: "t", QoS: 1, Created: now - 10, ExpiryInterval: 5}); err == nil {
		t.Fatal("a message expired on its way was delivered")
	}
}

// noRoutes is a cluster with no other node.
type noRoutes struct{}

func (noRoutes) Remote() bool                                            { return false }
func (noRoutes) Route(_ *cluster.Message, localShared []string) []string { return localShared }
func (noRoutes) Subscribed(string, bool)                                 {}
func (noRoutes) Retained(*cluster.Message)                               {}
func (noRoutes) TooLarge(*cluster.Message) error                         { return nil }
func (noRoutes) Room() cluster.Room                                      { return cluster.Room{} }
func (noRoutes) Full() bool                                              { return false }

// BenchmarkPublishWithoutRemoteRoute is what joining a cluster costs a
// publish that no other node subscribes to: `go test -bench
// PublishWithoutRemoteRoute -benchmem ./broker`.
func BenchmarkPublishWithoutRemoteRoute(b *testing.B) {
	cfg := brokerConfig(b, "[broker]\nlisteners = [{ address = \"127.0.0.1:0\" }]\npersistence = false\n[broker.auth]\nallow_anonymous = true\n")
	payload := make([]byte, 100)
	for _, joined := range []bool{false, true} {
		b.Run(fmt.Sprintf("cluster=%v", joined), func(b *testing.B) {
			br := startBrokerWith(b, cfg, noRules{}, func(br *Broker) {
				if joined {
					if err := br.JoinCluster(noRoutes{}); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.ReportAllocs()
			for b.Loop() {
				if err := br.Publish("t/x", payload, false, 0, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
