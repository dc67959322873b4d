package producer

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/mqkafka/mqkafka/ack"
	"github.com/mqkafka/mqkafka/buffer"
	"github.com/mqkafka/mqkafka/conf"
	"github.com/mqkafka/mqkafka/connector"
	"github.com/mqkafka/mqkafka/internal/testkit"
	"github.com/mqkafka/mqkafka/rule"
)

func newTestSink(t *testing.T, kafkaAddr, topic string, props map[string]string) *Sink {
	t.Helper()
	return newTestSinkWith(t, kafkaAddr, topic, props, nil)
}

// newTestSinkWith is newTestSink with the sink's config changed by edit.
func newTestSinkWith(t *testing.T, kafkaAddr, topic string, props map[string]string, edit func(*conf.Sink)) *Sink {
	t.Helper()
	var sc conf.Sink
	sc.SetDefaults()
	sc.Name, sc.Connector, sc.Topic = "s", "k", topic
	if edit != nil {
		edit(&sc)
	}
	log := testkit.Logger(t)
	client, err := NewClient(ClientConfig{
		Connector: "k", Conn: connector.Config{BootstrapHosts: kafkaAddr, Properties: props}, RequiredAcks: sc.RequiredAcks,
		Compression: sc.Compression, Linger: sc.MaxLingerTime,
		MaxInflightBytes: int64(sc.MaxInflightBytes), MaxBatchAge: sc.MaxBatchAge,
	}, log)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSink(sc, []*Client{client}, SinkEnv{DataDir: t.TempDir(), Log: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = s.Close()
		client.Close()
	})
	return s
}

func enqueue(t *testing.T, s *Sink, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		ev := &rule.Event{ClientID: "c", Topic: "t", Payload: fmt.Appendf(nil, "m%06d", i), Timestamp: time.Now().UnixMilli()}
		if err := s.Enqueue(context.Background(), ack.InCall(), ev); err != nil {
			t.Fatalf("enqueue %d: %v", i, err)
		}
	}
}

// payloadsInOrder returns each record's payload per partition, in offset order.
func payloadsInOrder(t *testing.T, recs []*kgo.Record) map[int32][]string {
	t.Helper()
	out := map[int32][]string{}
	for _, r := range recs {
		out[r.Partition] = append(out[r.Partition], string(r.Value))
	}
	return out
}

// checkDelivered asserts every payload 0..n-1 is in Kafka, and that within a
// partition first occurrences keep enqueue order. It returns the duplicates.
func checkDelivered(t *testing.T, kafkaAddr, topic string, n int) int {
	t.Helper()
	recs := testkit.Consume(t, kafkaAddr, topic, n, 30*time.Second)
	seen, dups := testkit.Ordered(t, payloadsInOrder(t, recs))
	for i := range n {
		if !seen[fmt.Sprintf("m%06d", i)] {
			t.Fatalf("record m%06d missing from Kafka (%d distinct of %d)", i, len(seen), n)
		}
	}
	return dups
}

func newValueSink(t *testing.T, kafkaAddr, topic string, props map[string]string) *Sink {
	s := newTestSink(t, kafkaAddr, topic, props)
	s.render.value = rule.MustTemplate("${payload}")
	return s
}

// TestFatalErrorRecreatesProducer: a fatal idempotence error recreates the
// producer and everything enqueued still reaches Kafka.
func TestFatalErrorRecreatesProducer(t *testing.T) {
	_, addr := testkit.NewKafka(t, 0, kfake.SeedTopics(2, "f"))
	s := newValueSink(t, addr, "f", nil)
	enqueue(t, s, 0, 100)
	testkit.WaitFor(t, 20*time.Second, "first 100 delivered", func() bool { return s.Counters.Success.Load() == 100 })

	old := s.clients[0].p
	if code := old.TestFatalError(kafka.ErrOutOfOrderSequenceNumber, "injected by test"); code != kafka.ErrNoError {
		t.Fatalf("TestFatalError: %v", code)
	}
	testkit.WaitFor(t, 10*time.Second, "producer recreated", func() bool {
		s.clients[0].mu.RLock()
		defer s.clients[0].mu.RUnlock()
		return s.clients[0].p != old
	})
	enqueue(t, s, 100, 100)
	testkit.WaitFor(t, 30*time.Second, "all 200 delivered", func() bool { return s.Counters.Success.Load() >= 200 })
	if dups := checkDelivered(t, addr, "f", 200); dups > 0 {
		t.Logf("%d duplicates after recreation", dups)
	}
}

// TestRetriableFailuresWaitInOrder: while Kafka refuses every produce
// request with a retriable error, records wait in librdkafka; none is
// counted delivered, dropped or sent again, and once Kafka takes them again
// every record arrives once and in order.
func TestRetriableFailuresWaitInOrder(t *testing.T) {
	c, addr := testkit.NewKafka(t, 0, kfake.SeedTopics(2, "r"))
	fault := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: "r", Err: kerr.NotEnoughReplicas, Count: -1})
	s := newValueSink(t, addr, "r", map[string]string{"retry.backoff.ms": "10", "retry.backoff.max.ms": "10"})
	enqueue(t, s, 0, 300)
	testkit.WaitFor(t, 20*time.Second, "refused produce requests", func() bool { return fault.Hits() >= 20 })
	if got := s.Counters.Success.Load(); got != 0 {
		t.Fatalf("%d successes while Kafka refuses every produce", got)
	}
	fault.Remove()
	testkit.WaitFor(t, 30*time.Second, "all delivered", func() bool { return s.Counters.Success.Load() == 300 })
	if dups := checkDelivered(t, addr, "r", 300); dups != 0 {
		t.Fatalf("%d duplicates", dups)
	}
	if d, r := s.Counters.DroppedTotal(), s.Counters.Retried.Load(); d != 0 || r != 0 {
		t.Fatalf("dropped %v, sent again %d; want neither", s.Counters.Dropped(), r)
	}
}

// TestMaxBatchAgeNeverReorders: with max_batch_age, librdkafka gives up on
// a record that Kafka refused for that long, and the record is dropped as
// expired rather than sent again behind the records after it. Records
// handed over later, still within their age when Kafka recovers, land
// first; a resend of the older ones would put them after, breaking order.
func TestMaxBatchAgeNeverReorders(t *testing.T) {
	c, addr := testkit.NewKafka(t, 0, kfake.SeedTopics(1, "o"))
	fault := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: "o", Err: kerr.NotEnoughReplicas, Count: -1})
	s := newTestSinkWith(t, addr, "o", map[string]string{"retry.backoff.ms": "20", "retry.backoff.max.ms": "20"}, func(sc *conf.Sink) {
		sc.MaxBatchAge = 2 * time.Second
	})
	s.render.value = rule.MustTemplate("${payload}")
	enqueue(t, s, 0, 50)
	// The second run is handed over well after the first, so that it is
	// still within its age when the first has expired; on a machine so
	// loaded that librdkafka retries fewer times than that within the
	// age, after the first expired, which the assertions below also hold for.
	testkit.WaitFor(t, 20*time.Second, "the first run refused", func() bool {
		return fault.Hits() >= 10 || s.Counters.DroppedTotal() > 0
	})
	enqueue(t, s, 50, 50)
	testkit.WaitFor(t, 20*time.Second, "the first run expired", func() bool {
		return s.Counters.Dropped()[buffer.ReasonExpired] >= 50
	})
	fault.Remove()
	enqueue(t, s, 100, 50)
	testkit.WaitFor(t, 30*time.Second, "every record settled", func() bool {
		return s.Counters.Success.Load()+s.Counters.DroppedTotal() == 150
	})
	recs := testkit.Consume(t, addr, "o", int(s.Counters.Success.Load()), 30*time.Second)
	seen, dups := testkit.Ordered(t, payloadsInOrder(t, recs))
	if dups != 0 || s.Counters.Retried.Load() != 0 {
		t.Fatalf("%d duplicates, %d sent again; an expired record is never sent again", dups, s.Counters.Retried.Load())
	}
	if d := s.Counters.Dropped(); len(d) != 1 || int(d[buffer.ReasonExpired])+len(seen) != 150 {
		t.Fatalf("dropped %v and %d in Kafka: every record is either delivered or expired", d, len(seen))
	}
	for i := 100; i < 150; i++ {
		if !seen[fmt.Sprintf("m%06d", i)] {
			t.Fatalf("m%06d, enqueued after Kafka recovered, missing", i)
		}
	}
	t.Logf("expired %d, delivered %d", s.Counters.DroppedTotal(), len(seen))
}

// TestTooLargeIsRefusedBeforeBuffering: a record over message.max.bytes is
// refused by Enqueue (ack.ErrTooLarge) and counted too_large, never
// buffered; its neighbours are delivered.
func TestTooLargeIsRefusedBeforeBuffering(t *testing.T) {
	_, addr := testkit.NewKafka(t, 0, kfake.SeedTopics(1, "big"))
	s := newValueSink(t, addr, "big", map[string]string{"message.max.bytes": "10000"})
	enqueue(t, s, 0, 5)
	huge := make([]byte, 20000)
	if err := s.Enqueue(context.Background(), ack.InCall(), &rule.Event{Payload: huge}); !errors.Is(err, ack.ErrTooLarge) {
		t.Fatalf("enqueue of a record over message.max.bytes: %v, want ErrTooLarge", err)
	}
	enqueue(t, s, 5, 5)
	testkit.WaitFor(t, 20*time.Second, "delivery", func() bool { return s.Counters.Success.Load() == 10 })
	checkDelivered(t, addr, "big", 10)
	if d := s.Counters.Dropped(); d[buffer.ReasonTooLarge] != 1 || len(d) != 1 {
		t.Fatalf("dropped %v, want one too_large", d)
	}
	if q := s.Queued(); q.Records != 0 {
		t.Fatalf("%d records left in the buffer", q.Records)
	}
}

// TestRecordLimitIsLibrdkafkas: records whose size with librdkafka's framing
// is exactly message.max.bytes, with and without key and headers (header
// lengths on both sides of a varint width), are taken by librdkafka and
// stored by Kafka; one byte more is refused by librdkafka's Produce and by
// the sink's check alike.
func TestRecordLimitIsLibrdkafkas(t *testing.T) {
	_, addr := testkit.NewKafka(t, 0, kfake.SeedTopics(1, "edge"))
	shapes := []struct {
		name    string
		key     []byte
		headers []buffer.Header
	}{
		{"value only", nil, nil},
		{"key", []byte("client-7"), nil},
		{"headers", []byte("k"), []buffer.Header{
			{Key: "a", Value: []byte("1")},
			{Key: strings.Repeat("h", 63), Value: make([]byte, 64)},
			{Key: strings.Repeat("h", 64), Value: nil},
			{Key: "big", Value: make([]byte, 8192)},
		}},
	}
	for _, limit := range []int{20000, conf.DefaultMessageMaxBytes} {
		props := map[string]string{}
		if limit != conf.DefaultMessageMaxBytes {
			props["message.max.bytes"] = strconv.Itoa(limit)
		}
		max, err := conf.MessageMaxBytes(props)
		if err != nil || max != limit {
			t.Fatalf("MessageMaxBytes(%v) = %d, %v", props, max, err)
		}
		cm := kafka.ConfigMap{"bootstrap.servers": addr, "linger.ms": 0}
		for k, v := range props {
			cm[k] = v
		}
		p, err := kafka.NewProducer(&cm)
		if err != nil {
			t.Fatal(err)
		}
		lim := recordLimit{wire: limit, queue: 1 << 30}
		topic := "edge"
		for _, sh := range shapes {
			rec := buffer.Record{Key: sh.key, Headers: sh.headers}
			rec.Value = make([]byte, limit-wireSize(&rec))
			if wireSize(&rec) != limit {
				t.Fatalf("%s: wire size %d, want %d", sh.name, wireSize(&rec), limit)
			}
			msg := &kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: 0},
				Key: rec.Key, Value: rec.Value, Headers: toKafkaHeaders(nil, rec.Headers)}
			if err := lim.check(&rec); err != nil {
				t.Fatalf("limit %d, %s at the limit: refused by the check: %v", limit, sh.name, err)
			}
			dr := make(chan kafka.Event, 1)
			if err := p.Produce(msg, dr); err != nil {
				t.Fatalf("limit %d, %s at the limit: librdkafka refuses it: %v", limit, sh.name, err)
			}
			select {
			case e := <-dr:
				if m := e.(*kafka.Message); m.TopicPartition.Error != nil {
					t.Fatalf("limit %d, %s at the limit: Kafka refuses it: %v", limit, sh.name, m.TopicPartition.Error)
				}
			case <-time.After(30 * time.Second):
				t.Fatalf("limit %d, %s: no delivery report", limit, sh.name)
			}

			rec.Value = append(rec.Value, 0)
			msg.Value = rec.Value
			if err := lim.check(&rec); !errors.Is(err, ack.ErrTooLarge) {
				t.Fatalf("limit %d, %s one byte over: the check says %v", limit, sh.name, err)
			}
			var ke kafka.Error
			if err := p.Produce(msg, nil); !errors.As(err, &ke) || ke.Code() != kafka.ErrMsgSizeTooLarge {
				t.Fatalf("limit %d, %s one byte over: librdkafka says %v, want message size too large", limit, sh.name, err)
			}
		}
		p.Close()
	}
}
