package broker

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"strings"
	"testing"
	"time"

	mqtt "github.com/mqkafka/mqkafka/third_party/mochi"
	"github.com/mqkafka/mqkafka/third_party/mochi/packets"

	"github.com/mqkafka/mqkafka/conf"
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

// BenchmarkTopicAtLimits is the cost of the deepest and longest topic the
// default limits allow (128 levels, 4096 bytes) against a short one:
// subscribing to it, and a QoS 0 publish routed to a subscriber holding a
// filter of that depth ending in '#'. Both run mochi's packet processing
// with mqkafka's hooks, without the network.
func BenchmarkTopicAtLimits(b *testing.B) {
	cfg := brokerConfig(b, "[broker]\npersistence = false\nlisteners = [{ address = \"127.0.0.1:0\" }]\n[broker.auth]\nallow_anonymous = true\n")
	// 127 levels of 31 bytes and a last one filling up to 4096 bytes.
	deep := strings.Repeat(strings.Repeat("x", 31)+"/", 127)
	deep += strings.Repeat("y", cfg.MaxTopicLength-len(deep))
	for _, tc := range []struct{ name, topic string }{{"short", "a/b/c"}, {"limits", deep}} {
		parent := tc.topic[:strings.LastIndexByte(tc.topic, '/')]
		b.Run("subscribe/"+tc.name, func(b *testing.B) {
			br := benchBroker(b, cfg)
			cl := benchClient(b, br, "sub")
			pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: 1,
				Filters: packets.Subscriptions{{Filter: tc.topic, Qos: 0}}}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if err := br.srv.InjectPacket(cl, pk); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("publish/"+tc.name, func(b *testing.B) {
			br := benchBroker(b, cfg)
			if err := br.srv.InjectPacket(benchClient(b, br, "sub"), packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1},
				PacketID: 1, Filters: packets.Subscriptions{{Filter: parent + "/#", Qos: 0}}}); err != nil {
				b.Fatal(err)
			}
			cl := benchClient(b, br, "pub")
			pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: tc.topic, Payload: []byte("p")}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if err := br.srv.InjectPacket(cl, pk); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// benchBroker is a broker logging at info level, as mqkafka does: mochi
// logs every publish at debug level.
func benchBroker(b *testing.B, cfg conf.Broker) *Broker {
	br, err := New(cfg, "bench@host", &recorder{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	if err := br.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = br.Close() })
	return br
}

// benchClient is a connected MQTT 5 client without a network connection:
// what the broker writes to it is discarded.
func benchClient(b *testing.B, br *Broker, id string) *mqtt.Client {
	cl := br.srv.NewClient(nil, "tcp-0", id, false)
	cl.Properties.ProtocolVersion = 5
	cl.State.Inflight.ResetReceiveQuota(int32(br.srv.Options.Capabilities.ReceiveMaximum))
	br.srv.Clients.Add(cl)
	go cl.WriteLoop()
	b.Cleanup(func() { cl.Stop(nil) })
	return cl
}

// BenchmarkOfflineSession is the heap one offline persistent session
// holds (MQTT 5, Session Expiry "never", no subscriptions or messages).
func BenchmarkOfflineSession(b *testing.B) {
	b.ReportMetric(offlineSessionHeap(b, b.N), "heapB/session")
}

// offlineSessionHeap connects n persistent clients over TCP, lets them go
// offline and returns the heap grown by then, over n.
func offlineSessionHeap(tb testing.TB, n int) float64 {
	cfg := brokerConfig(tb, "[broker]\npersistence = false\nmax_conn_rate = 0\nlisteners = [{address = \"127.0.0.1:0\"}]\n[broker.auth]\nallow_anonymous = true\n")
	// Logs discarded: kept in memory, they would count as the sessions'.
	br, err := New(cfg, "test@host", &recorder{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		tb.Fatal(err)
	}
	if err := br.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = br.Close() })
	addr := br.Addrs()[0]
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range n {
		pk := v5connect(fmt.Sprintf("offline-%d", i), false, 0xFFFFFFFF)
		var buf bytes.Buffer
		if err := pk.ConnectEncode(&buf); err != nil {
			tb.Fatal(err)
		}
		conn := dial(tb, addr)
		if _, err := conn.Write(buf.Bytes()); err != nil {
			tb.Fatal(err)
		}
		if _, err := io.ReadFull(conn, make([]byte, 4)); err != nil { // CONNACK's first bytes
			tb.Fatal(err)
		}
		conn.Close()
	}
	testkit.WaitFor(tb, 10*time.Second, "every session offline", func() bool {
		return br.srv.Info.Clone().ClientsConnected == 0
	})
	runtime.GC()
	runtime.ReadMemStats(&after)
	return (float64(after.HeapAlloc) - float64(before.HeapAlloc)) / float64(n)
}
