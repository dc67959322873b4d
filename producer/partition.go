package producer

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/mqkafka/mqkafka/buffer"
)

// partition drains one queue into one Kafka partition. Its goroutine is the
// queue's only reader; delivery reports complete batches from the client's
// events goroutine.
type partition struct {
	sink  *Sink
	topic *string
	id    int32
	q     buffer.Queue
	log   *slog.Logger
	wake  chan struct{}

	mu        sync.Mutex
	inflight  []*batch // oldest first
	rewinding bool     // a batch failed: resend from the oldest unacknowledged entry
	backoff   time.Duration
}

// batch is a run of consecutive entries produced together; one allocation
// per batch serves as the opaque of every record in it.
type batch struct {
	part     *partition
	lastSeq  uint64
	n        int32
	done     atomic.Int32
	retry    atomic.Bool
	complete bool // guarded by part.mu
	drops    [len(reasons)]atomic.Int32
	firstErr atomic.Pointer[error]
}

// delivered records the outcome of one record of the batch.
func (b *batch) delivered(err error) {
	if err != nil {
		if reason, drop := classify(err); drop {
			b.drop(reason, err)
		} else {
			b.retry.Store(true)
			b.firstErr.CompareAndSwap(nil, &err)
		}
	}
	if b.done.Add(1) == b.n {
		b.part.complete(b)
	}
}

func (b *batch) drop(reason buffer.Reason, err error) {
	for i, r := range reasons {
		if r == reason {
			b.drops[i].Add(1)
		}
	}
	b.part.sink.logDrop(reason, *b.part.topic, err)
}

func (b *batch) dropped() int32 {
	var n int32
	for i := range b.drops {
		n += b.drops[i].Load()
	}
	return n
}

// classify decides whether a failed record is dropped (and why) or sent again.
func classify(err error) (buffer.Reason, bool) {
	var ke kafka.Error
	if !errors.As(err, &ke) {
		return "", false
	}
	switch ke.Code() {
	case kafka.ErrMsgSizeTooLarge, kafka.ErrInvalidMsgSize:
		return buffer.ReasonTooLarge, true
	case kafka.ErrUnknownTopicOrPart, kafka.ErrUnknownTopic, kafka.ErrUnknownPartition, kafka.ErrTopicException:
		return buffer.ReasonUnknownTopic, true
	case kafka.ErrTopicAuthorizationFailed, kafka.ErrClusterAuthorizationFailed, kafka.ErrInvalidRecord,
		kafka.ErrInvalidMsg, kafka.ErrUnsupportedForMessageFormat:
		return buffer.ReasonKafkaError, true
	}
	return "", false
}

func (p *partition) signal() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// complete runs when every record of b has a delivery report. It acknowledges
// the queue up to the longest fully delivered prefix of batches.
func (p *partition) complete(b *batch) {
	c := &p.sink.Counters
	p.mu.Lock()
	b.complete = true
	var ack uint64
	for len(p.inflight) > 0 && p.inflight[0].complete && !p.rewinding {
		f := p.inflight[0]
		if f.retry.Load() {
			p.rewinding = true
			if e := f.firstErr.Load(); e != nil {
				p.sink.logRetry(*p.topic, p.id, *e)
			}
			break
		}
		ack = f.lastSeq
		for i := range f.drops {
			if n := f.drops[i].Load(); n > 0 {
				c.Drop(reasons[i], int(n))
			}
		}
		c.Success.Add(int64(f.n - f.dropped()))
		p.inflight[0] = nil
		p.inflight = p.inflight[1:]
		p.backoff = 0
	}
	p.mu.Unlock()
	if ack > 0 {
		if err := p.q.Ack(ack); err != nil {
			p.log.Error("acknowledging buffer", "err", err)
		}
	}
	p.signal()
}

const maxBackoff = 5 * time.Second

// run drains the queue until ctx ends.
func (p *partition) run(ctx context.Context) {
	maxInflight := p.sink.cfg.MaxInflight
	maxBytes := int(p.sink.cfg.MaxBatchBytes)
	var ents []buffer.Entry
	for ctx.Err() == nil {
		p.mu.Lock()
		var resent int32
		rewind := p.rewinding && allComplete(p.inflight)
		if rewind {
			for _, f := range p.inflight {
				resent += f.n
			}
			clear(p.inflight)
			p.inflight = p.inflight[:0]
			p.rewinding = false
			p.backoff = min(max(2*p.backoff, 100*time.Millisecond), maxBackoff)
		}
		ready := !p.rewinding && len(p.inflight) < maxInflight
		backoff := p.backoff
		p.mu.Unlock()
		if rewind {
			p.sink.Counters.Retried.Add(int64(resent))
			p.q.Rewind()
			if !sleep(ctx, backoff) {
				return
			}
		}
		if !ready {
			p.wait(ctx, nil)
			continue
		}
		var err error
		ents, err = p.q.Read(ents[:0], maxBytes)
		if err != nil {
			p.log.Error("reading buffer", "err", err)
			if !sleep(ctx, time.Second) {
				return
			}
			continue
		}
		if len(ents) == 0 {
			p.wait(ctx, p.q.Ready())
			continue
		}
		b := &batch{part: p, n: int32(len(ents)), lastSeq: ents[len(ents)-1].Seq}
		p.mu.Lock()
		p.inflight = append(p.inflight, b)
		p.mu.Unlock()
		p.send(ctx, b, ents)
	}
}

func allComplete(bs []*batch) bool {
	for _, b := range bs {
		if !b.complete {
			return false
		}
	}
	return true
}

func (p *partition) wait(ctx context.Context, ready <-chan struct{}) {
	select {
	case <-ctx.Done():
	case <-p.wake:
	case <-ready:
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// send produces a batch's records in order. A record librdkafka refuses at
// once is completed here with the same outcome a delivery report would carry.
func (p *partition) send(ctx context.Context, b *batch, ents []buffer.Entry) {
	msg := kafka.Message{TopicPartition: kafka.TopicPartition{Topic: p.topic, Partition: p.id}, Opaque: b}
	sent := 0
	err := p.sink.client.withProducer(func(kp *kafka.Producer) error {
		for ; sent < len(ents); sent++ {
			e := &ents[sent]
			msg.Key, msg.Value = e.Key, e.Value
			msg.Timestamp = time.UnixMilli(e.Time)
			msg.Headers = toKafkaHeaders(msg.Headers[:0], e.Headers)
			for {
				err := kp.Produce(&msg, nil)
				if err == nil {
					break
				}
				var ke kafka.Error
				if errors.As(err, &ke) && ke.Code() == kafka.ErrQueueFull {
					if !sleep(ctx, 10*time.Millisecond) {
						return ctx.Err()
					}
					continue
				}
				if _, drop := classify(err); drop {
					b.delivered(err)
					break
				}
				return err
			}
		}
		return nil
	})
	if err != nil {
		// The rest of the batch was not handed over; it completes as failed
		// so that the partition rewinds and sends it again in order.
		for ; sent < len(ents); sent++ {
			b.delivered(retriableError{err})
		}
	}
}

// retriableError marks a failure to hand a record to librdkafka at all.
type retriableError struct{ err error }

func (e retriableError) Error() string { return e.err.Error() }
func (e retriableError) Unwrap() error { return e.err }

func toKafkaHeaders(dst []kafka.Header, hs []buffer.Header) []kafka.Header {
	for _, h := range hs {
		dst = append(dst, kafka.Header{Key: h.Key, Value: h.Value})
	}
	if len(dst) == 0 {
		return nil
	}
	return dst
}
