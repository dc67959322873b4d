package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// kfakeReady is the line a kfake child prints once it accepts connections.
const kfakeReady = "kfake listening on "

// ServeKafka runs an in-memory Kafka (kfake, one broker) on listen until ctx
// ends. It is what the bench starts as a child process, so that the
// broker's CPU and memory are measured apart from the load generator's, and
// so that the millions of records it keeps are not in the bench's heap,
// where every GC would scan them while latencies are being measured.
func ServeKafka(ctx context.Context, listen string, partitions int, out io.Writer) error {
	_, portStr, err := net.SplitHostPort(listen)
	if err != nil {
		return fmt.Errorf("kfake listen %q: %w", listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return fmt.Errorf("kfake listen %q: bad port", listen)
	}
	c, err := kfake.NewCluster(
		kfake.NumBrokers(1),
		kfake.Ports(port),
		kfake.DefaultNumPartitions(partitions),
		kfake.ListenFn(func(network, _ string) (net.Listener, error) { return net.Listen(network, listen) }),
	)
	if err != nil {
		return fmt.Errorf("kfake: %w", err)
	}
	defer c.Close()
	fmt.Fprintf(out, "%s%s\n", kfakeReady, c.ListenAddrs()[0])
	<-ctx.Done()
	return nil
}

// createTopic creates a topic; one that exists already is fine.
func createTopic(ctx context.Context, addr, topic string, partitions int) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	req := kmsg.NewPtrCreateTopicsRequest()
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic = topic
	rt.NumPartitions = int32(partitions)
	rt.ReplicationFactor = -1
	req.Topics = append(req.Topics, rt)
	req.TimeoutMillis = 10000
	var last error
	for ctx.Err() == nil {
		resp, err := req.RequestWith(ctx, cl)
		if err == nil {
			if len(resp.Topics) != 1 {
				return fmt.Errorf("create topic %s: %d topics in response", topic, len(resp.Topics))
			}
			err = kerr.ErrorForCode(resp.Topics[0].ErrorCode)
			if err == nil || err == kerr.TopicAlreadyExists {
				return nil
			}
			if !kerr.IsRetriable(err) {
				return fmt.Errorf("create topic %s: %w", topic, err)
			}
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("create topic %s: %w (last error: %v)", topic, ctx.Err(), last)
}

// consumeInto reads topic with franz-go and hands every record's value to
// rec until ctx ends. start, when non-zero, skips records older than that
// (a topic the bench did not create may hold earlier runs).
func consumeInto(ctx context.Context, addr, topic string, start time.Time, rec *recorder) error {
	offset := kgo.NewOffset().AtStart()
	if !start.IsZero() {
		offset = kgo.NewOffset().AfterMilli(start.Add(-time.Second).UnixMilli())
	}
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(addr),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(offset),
		kgo.FetchMaxWait(100*time.Millisecond),
		kgo.FetchMaxBytes(64<<20),
		kgo.FetchMaxPartitionBytes(16<<20),
	)
	if err != nil {
		return fmt.Errorf("kafka consumer: %w", err)
	}
	defer cl.Close()
	for ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		now := time.Now().UnixNano()
		fs.EachRecord(func(r *kgo.Record) { rec.record(r.Value, now) })
	}
	return nil
}

// consumer reads a topic into a collector until stopped.
type consumer struct {
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

func (r *runner) startConsumer(ctx context.Context, addr, topic string, since time.Time, col *collector) *consumer {
	ctx, cancel := context.WithCancel(ctx)
	c := &consumer{cancel: cancel, done: make(chan struct{})}
	rec := col.recorder()
	go func() {
		defer close(c.done)
		if err := consumeInto(ctx, addr, topic, since, rec); err != nil {
			r.log.Error("kafka consumer", "err", err)
		}
	}()
	return c
}

// stop ends the consumer and waits for it: after stop the collector's
// histograms are no longer written.
func (c *consumer) stop() {
	c.once.Do(func() {
		c.cancel()
		<-c.done
	})
}
