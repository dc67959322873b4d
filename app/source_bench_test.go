package app

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mqkafka/mqkafka/internal/testkit"
)

// BenchmarkSourceThroughput measures Kafka → MQTT records/s from a
// pre-filled topic of b.N records of 100 B to one QoS 1 subscriber, alone
// and next to a QoS 0 one, with the session store on and off. Give it a
// count, as each round starts a whole process:
//
//	go test -run '^$' -bench SourceThroughput -benchtime 1000000x -timeout 20m ./app/
func BenchmarkSourceThroughput(b *testing.B) {
	for _, c := range []struct {
		name        string
		qos0        bool
		persistence bool
	}{{"qos1", false, true}, {"qos1+qos0", true, true}, {"qos1+qos0/persistence=false", true, false}} {
		b.Run(c.name, func(b *testing.B) { sourceThroughput(b, c.qos0, c.persistence) })
	}
}

func sourceThroughput(b *testing.B, qos0, persistence bool) {
	n := b.N
	_, addr := testkit.NewKafka(b, 0, kfake.SeedTopics(3, "bench"))
	prefill(b, addr, "bench", n)

	cfg := testkit.SourceConfig(b, addr, `
[log]
level = "warn"`+testkit.SourceTable("bench", "bench", "bench/x", `start_delay = "1s"`))
	if !persistence {
		cfg = strings.Replace(cfg, "[broker.auth]", "persistence = false\n[broker.auth]", 1)
	}
	a := startApp(b, cfg)
	mqttAddr := a.broker.Addrs()[0]
	var q0, q1 atomic.Int64
	if qos0 {
		benchSubscriber(b, mqttAddr, "qos0", 0, &q0)
	}
	benchSubscriber(b, mqttAddr, "qos1", 1, &q1)

	src := sourceByName(b, a, "bench")
	testkit.WaitFor(b, 30*time.Second, "the first record", func() bool { return src.Counters.Received.Load() > 0 })
	b.ResetTimer()
	began := time.Now()
	testkit.WaitFor(b, 10*time.Minute, "every record at the QoS 1 subscriber", func() bool { return q1.Load() >= int64(n) })
	elapsed := time.Since(began)
	b.StopTimer()
	b.ReportMetric(float64(n)/elapsed.Seconds(), "records/s")
	if qos0 {
		b.ReportMetric(float64(q0.Load())/float64(n), "qos0-delivered/record")
	}
}

func benchSubscriber(t testing.TB, addr, id string, qos byte, n *atomic.Int64) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	cl := paho.NewClient(paho.ClientConfig{ClientID: id, Conn: conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){
			func(paho.PublishReceived) (bool, error) { n.Add(1); return true, nil },
		}})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := cl.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "bench/#", QoS: qos}}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Disconnect(&paho.Disconnect{}) })
}

// prefill writes n records of 100 bytes.
func prefill(t testing.TB, addr, topic string, n int) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic(topic),
		kgo.ProducerLinger(5*time.Millisecond), kgo.MaxBufferedRecords(100_000))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	began := time.Now()
	var failed atomic.Value
	for i := range n {
		v := fmt.Appendf(make([]byte, 0, 100), "%0100d", i)
		cl.Produce(context.Background(), &kgo.Record{Value: v}, func(_ *kgo.Record, err error) {
			if err != nil {
				failed.Store(err)
			}
		})
	}
	if err := cl.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err, _ := failed.Load().(error); err != nil {
		t.Fatal(err)
	}
	t.Logf("pre-filled %d records of 100 B in %v", n, time.Since(began).Round(time.Millisecond))
}
