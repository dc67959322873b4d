package producer

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/mqkafka/mqkafka/ack"
	"github.com/mqkafka/mqkafka/buffer"
	"github.com/mqkafka/mqkafka/conf"
	"github.com/mqkafka/mqkafka/internal/testkit"
	"github.com/mqkafka/mqkafka/rule"
)

// TestInflightBytesBoundedAcrossPartitions: 64 disk partitions with a
// backlog each, built while Kafka refuses produce requests (librdkafka
// retries them) and then drained, never have more bytes handed to
// librdkafka than max_inflight_bytes by the sink's own accounting, and
// every partition drains completely, in order.
func TestInflightBytesBoundedAcrossPartitions(t *testing.T) {
	const parts, n, budget = 64, 40000, 256 << 10
	c, addr := testkit.NewKafka(t, 0, kfake.SeedTopics(parts, "wide"))
	fault := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: "wide", Err: kerr.NotEnoughReplicas, Count: -1})
	s := newTestSinkWith(t, addr, "wide", map[string]string{
		"message.max.bytes": "16384", "retry.backoff.ms": "50",
	}, func(sc *conf.Sink) {
		sc.Buffer.Mode, sc.Buffer.Fsync = "disk", "interval"
		sc.MaxBatchBytes = 16 << 10
		sc.MaxInflightBytes = budget
	})
	s.render.value = rule.MustTemplate("${payload}")
	testkit.WaitFor(t, 20*time.Second, "partitions known", func() bool { return len(s.Stats()) > parts })
	enqueue(t, s, 0, n)
	fault.Remove()
	testkit.WaitFor(t, 60*time.Second, "all delivered", func() bool { return s.Counters.Success.Load() == n })
	checkDelivered(t, addr, "wide", n)

	now, peak := s.InflightBytes()
	t.Logf("peak %d bytes in flight, budget %d", peak, budget)
	if peak > budget {
		t.Fatalf("%d bytes were in flight at once, max_inflight_bytes is %d", peak, budget)
	}
	if peak < budget/2 {
		t.Fatalf("at most %d bytes in flight: the backlog never pressed on the budget of %d", peak, budget)
	}
	if now != 0 {
		t.Fatalf("%d bytes still counted in flight after every record was delivered", now)
	}
}

// TestInflightBudgetFirstComeFirstServed: a partition waiting for bytes is
// not overtaken by later, smaller requests, and one that gives up waiting
// leaves the line.
func TestInflightBudgetFirstComeFirstServed(t *testing.T) {
	b := newInflightBudget(100)
	ctx := context.Background()
	if err := b.acquire(ctx, 60); err != nil {
		t.Fatal(err)
	}
	big := make(chan error, 1)
	go func() { big <- b.acquire(ctx, 80) }()
	testkit.WaitFor(t, 5*time.Second, "the big request waits", func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return len(b.waiters) == 1
	})
	small := make(chan error, 1)
	go func() { small <- b.acquire(ctx, 10) }()
	testkit.WaitFor(t, 5*time.Second, "the small request waits behind it", func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return len(b.waiters) == 2
	})
	b.release(60)
	if err := <-big; err != nil {
		t.Fatal(err)
	}
	if err := <-small; err != nil {
		t.Fatal(err)
	}
	b.release(80)
	cctx, cancel := context.WithCancel(ctx)
	gone := make(chan error, 1)
	go func() { gone <- b.acquire(cctx, 100) }()
	testkit.WaitFor(t, 5*time.Second, "a request waits", func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return len(b.waiters) == 1
	})
	cancel()
	if err := <-gone; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled acquire: %v", err)
	}
	b.release(10)
	if now, peak := b.stats(); now != 0 || peak != 90 {
		t.Fatalf("used %d, peak %d; want 0 and 90", now, peak)
	}
}

// TestRecordOverInflightBytesIsRefused: a record that could never fit in
// max_inflight_bytes is refused as too_large before it is buffered.
func TestRecordOverInflightBytesIsRefused(t *testing.T) {
	_, addr := testkit.NewKafka(t, 0, kfake.SeedTopics(1, "small"))
	s := newTestSinkWith(t, addr, "small", nil, func(sc *conf.Sink) { sc.MaxInflightBytes = conf.MinInflightBytes })
	s.render.value = rule.MustTemplate("${payload}")
	err := s.Enqueue(context.Background(), ack.InCall(), &rule.Event{Payload: make([]byte, conf.MinInflightBytes)})
	if !errors.Is(err, ack.ErrTooLarge) {
		t.Fatalf("enqueue of a record over max_inflight_bytes: %v, want ErrTooLarge", err)
	}
	enqueue(t, s, 0, 3)
	testkit.WaitFor(t, 20*time.Second, "delivery", func() bool { return s.Counters.Success.Load() == 3 })
	if d := s.Counters.Dropped(); d[buffer.ReasonTooLarge] != 1 {
		t.Fatalf("dropped %v, want one too_large", d)
	}
}
