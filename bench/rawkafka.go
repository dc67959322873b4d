package bench

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// rawSpec is a load of records produced straight into Kafka with
// librdkafka: the kafka-raw ceiling, and the feed of the source scenario.
type rawSpec struct {
	addr       string
	topic      string
	partitions int
	producers  int // goroutines calling Produce, as many as MQTT clients
	size       int
	messages   int64
	duration   time.Duration
	rate       float64
	tag        uint32
	keyPrefix  string // keys are keyPrefix-<producer>, as the pipeline's ${clientid}
	linger     time.Duration
	drain      time.Duration
}

// rawLoad runs a rawSpec.
type rawLoad struct {
	spec      rawSpec
	sent      atomic.Int64
	delivered atomic.Int64
	failed    atomic.Int64
	nextID    atomic.Uint64
	ackSet    idSet

	firstNs atomic.Int64
	lastNs  atomic.Int64
}

// rawResult is what a rawLoad measured.
type rawResult struct {
	sent, delivered, failed int64
	ids                     uint64
	first, last             time.Time
	// rdkCPU is the CPU time of librdkafka's threads while producing.
	rdkCPU time.Duration
}

// producerConfig is mqkafka's own producer configuration for a sink with
// default settings (producer/client.go), so that kafka-raw measures the
// same librdkafka doing the same work.
func producerConfig(addr string, linger time.Duration) kafka.ConfigMap {
	return kafka.ConfigMap{
		"bootstrap.servers":            addr,
		"acks":                         "all",
		"enable.idempotence":           true,
		"compression.type":             "none",
		"linger.ms":                    int(linger / time.Millisecond),
		"queue.buffering.max.messages": 10_000_000,
		"queue.buffering.max.kbytes":   4 << 20,
		"enable.metrics.push":          false,
		"go.delivery.report.fields":    "none",
		"go.logs.channel.enable":       true,
	}
}

// warmTagOf is the tag of a run's warm-up records: they make sure every
// connection and metadata lookup is done before the clock starts, and the
// collectors count them as foreign.
func warmTagOf(tag uint32) uint32 { return ^tag }

func (l *rawLoad) run(ctx context.Context) (rawResult, error) {
	s := l.spec
	cm := producerConfig(s.addr, s.linger)
	p, err := kafka.NewProducer(&cm)
	if err != nil {
		return rawResult{}, fmt.Errorf("kafka-raw producer: %w", err)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for range p.Logs() {
		}
	}()
	warmDone := make(chan error, 1)
	go func() {
		defer wg.Done()
		for ev := range p.Events() {
			m, ok := ev.(*kafka.Message)
			if !ok {
				continue
			}
			if m.Opaque != nil {
				warmDone <- m.TopicPartition.Error
				continue
			}
			if m.TopicPartition.Error != nil {
				l.failed.Add(1)
				continue
			}
			l.delivered.Add(1)
			storeMax(&l.lastNs, time.Now().UnixNano())
		}
	}()
	defer func() {
		p.Close()
		wg.Wait()
	}()

	// One record first, through the whole path, so that connecting and
	// learning the leaders is not measured.
	warm := make([]byte, s.size)
	fillPayload(warm, warmTagOf(s.tag), 0, time.Now().UnixNano())
	for {
		err := p.Produce(&kafka.Message{
			TopicPartition: kafka.TopicPartition{Topic: &s.topic, Partition: 0},
			Value:          warm, Opaque: true,
		}, nil)
		if err != nil {
			return rawResult{}, fmt.Errorf("kafka-raw warm-up: %w", err)
		}
		select {
		case err = <-warmDone:
		case <-ctx.Done():
			return rawResult{}, ctx.Err()
		}
		if err == nil {
			break
		}
		// A fresh topic may not have a leader yet.
		time.Sleep(100 * time.Millisecond)
	}

	rdk0 := threadsCPU("rdk:")
	start := time.Now()
	var end time.Time
	if s.messages == 0 {
		end = start.Add(s.duration)
	}
	var pwg sync.WaitGroup
	errs := make([]error, s.producers)
	for i := range s.producers {
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			errs[i] = l.produce(ctx, p, i, start, end)
		}()
	}
	pwg.Wait()
	// Every record gets a delivery report: wait for all of them.
	deadline := time.Now().Add(s.drain)
	for l.delivered.Load()+l.failed.Load() < l.sent.Load() && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	res := rawResult{
		sent: l.sent.Load(), delivered: l.delivered.Load(), failed: l.failed.Load(),
		ids:   l.nextID.Load(),
		first: time.Unix(0, l.firstNs.Load()), last: time.Unix(0, l.lastNs.Load()),
		rdkCPU: threadsCPU("rdk:") - rdk0,
	}
	if s.messages > 0 {
		res.ids = min(res.ids, uint64(s.messages))
	}
	if n := res.sent - res.delivered - res.failed; n > 0 {
		errs = append(errs, fmt.Errorf("kafka-raw: %d records without a delivery report after %v", n, s.drain))
	}
	return res, errors.Join(errs...)
}

func (l *rawLoad) produce(ctx context.Context, p *kafka.Producer, no int, start, end time.Time) error {
	s := l.spec
	key := []byte(s.keyPrefix + "-" + strconv.Itoa(no))
	payload := make([]byte, s.size)
	fillPayload(payload, s.tag, 0, 0)
	msg := kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &s.topic}, Key: key, Value: payload}
	var interval time.Duration
	next := start
	if s.rate > 0 {
		interval = time.Duration(float64(time.Second) * float64(s.producers) / s.rate)
		next = start.Add(interval * time.Duration(no) / time.Duration(s.producers))
	}
	part := int32(no)
	sleep := newSleeper()
	defer sleep.stop()
	for ctx.Err() == nil {
		now := time.Now()
		stamp := now
		if interval > 0 {
			if !sleep.until(ctx, next) {
				break
			}
			stamp = next
			next = next.Add(interval)
		}
		var id uint64
		if !end.IsZero() {
			if now.After(end) {
				break
			}
			id = l.nextID.Add(1) - 1
		} else if id = l.nextID.Add(1) - 1; id >= uint64(s.messages) {
			break
		}
		// librdkafka copies the value (RD_KAFKA_MSG_F_COPY): one buffer
		// serves every record.
		stampPayload(payload, id, stamp.UnixNano())
		// Explicit partitions, round robin, as mqkafka's drainers produce.
		msg.TopicPartition.Partition = part % int32(s.partitions)
		part++
		l.firstNs.CompareAndSwap(0, stamp.UnixNano())
		for {
			err := p.Produce(&msg, nil)
			if err == nil {
				break
			}
			var ke kafka.Error
			if errors.As(err, &ke) && ke.Code() == kafka.ErrQueueFull {
				time.Sleep(time.Millisecond)
				continue
			}
			return fmt.Errorf("kafka-raw produce: %w", err)
		}
		l.ackSet.add(id)
		l.sent.Add(1)
	}
	return nil
}
