package app

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mqkafka/mqkafka/internal/testkit"
)

// TestSourceThroughput measures Kafka → MQTT records/s from a pre-filled
// topic of 100 B records to one QoS 0 and one QoS 1 subscriber. It runs
// only with MQKAFKA_SOURCE_BENCH=<records>, e.g.
//
//	MQKAFKA_SOURCE_BENCH=1000000 go test -run TestSourceThroughput -v -timeout 20m ./app/
//
// MQKAFKA_SOURCE_BENCH_QOS0=0 leaves the QoS 0 subscriber out,
// MQKAFKA_SOURCE_BENCH_PERSISTENCE=false the session store, and
// MQKAFKA_SOURCE_BENCH_TRACE=1 logs the progress every second.
func TestSourceThroughput(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("MQKAFKA_SOURCE_BENCH"))
	if n <= 0 {
		t.Skip("set MQKAFKA_SOURCE_BENCH=<records> to run")
	}
	_, addr := testkit.NewKafka(t, 0, kfake.SeedTopics(3, "bench"))
	prefill(t, addr, "bench", n)

	cfg := testkit.SourceConfig(t, addr, `
[log]
level = "warn"
[[sources]]
name = "bench"
connector = "k"
topic = "bench"
offset_reset_policy = "earliest"
start_delay = "1s"
[[sources.topic_mapping]]
kafka_topic = "bench"
mqtt_topic = "bench/x"
qos = 1
payload_template = "${.value}"
`)
	if p := os.Getenv("MQKAFKA_SOURCE_BENCH_PERSISTENCE"); p != "" {
		cfg = strings.Replace(cfg, "[broker.auth]", "persistence = "+p+"\n[broker.auth]", 1)
	}
	a := startApp(t, cfg)
	mqttAddr := a.broker.Addrs()[0]
	var q0, q1 atomic.Int64
	if os.Getenv("MQKAFKA_SOURCE_BENCH_QOS0") != "0" {
		benchSubscriber(t, mqttAddr, "qos0", 0, &q0)
	}
	benchSubscriber(t, mqttAddr, "qos1", 1, &q1)

	src := sourceByName(t, a, "bench")
	testkit.WaitFor(t, 30*time.Second, "the first record", func() bool { return src.Counters.Received.Load() > 0 })
	began := time.Now()
	deadline := began.Add(10 * time.Minute)
	next := began.Add(time.Second)
	for q1.Load() < int64(n) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		if os.Getenv("MQKAFKA_SOURCE_BENCH_TRACE") != "" && time.Now().After(next) {
			next = next.Add(time.Second)
			t.Logf("q0 %d q1 %d received %d", q0.Load(), q1.Load(), src.Counters.Received.Load())
		}
	}
	elapsed := time.Since(began)
	// QoS 0 may still be draining its write queue.
	for last := int64(-1); q0.Load() != last; {
		last = q0.Load()
		time.Sleep(200 * time.Millisecond)
	}
	info := a.broker.Info()
	t.Logf("%d records in %v: %.0f records/s to the QoS 1 subscriber (QoS 0 subscriber got %d); "+
		"source received %d, success %d; broker dropped %d",
		q1.Load(), elapsed.Round(time.Millisecond), float64(q1.Load())/elapsed.Seconds(), q0.Load(),
		src.Counters.Received.Load(), src.Counters.Success.Load(), info.MessagesDropped)
	if q1.Load() < int64(n) {
		t.Fatalf("the QoS 1 subscriber got %d of %d", q1.Load(), n)
	}
}

func benchSubscriber(t *testing.T, addr, id string, qos byte, n *atomic.Int64) {
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
func prefill(t *testing.T, addr, topic string, n int) {
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
