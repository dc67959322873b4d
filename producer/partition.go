package producer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/mqkafka/mqkafka/buffer"
	"github.com/mqkafka/mqkafka/internal/backoff"
)

// partition drains one queue into one Kafka partition. Its goroutine is the
// queue's only reader; delivery reports complete batches from the client's
// events goroutine.
type partition struct {
	sink   *Sink
	client *Client
	topic  *string
	id     int32
	q      buffer.Queue
	log    *slog.Logger
	wake   chan struct{}
	// moved, when not 0, is the first Seq of records moved out of the
	// topic's holding queue and not yet marked moved (topic.moveBatch):
	// sending them then could let one crash both resend them from this
	// queue and move them again.
	moved atomic.Uint64

	mu        sync.Mutex
	inflight  []*batch // oldest first
	rewinding bool     // a batch failed: resend from the oldest unacknowledged entry
	// retry spaces out rewinds; an acknowledgement resets it.
	retry backoff.Backoff
	// attempts counts sends of the oldest unacknowledged record, for max_retries.
	attempts  int
	sentHigh  uint64 // highest Seq handed to librdkafka
	retryHigh uint64 // records up to here are being sent again
	// waiters are sync-mode publishers waiting for a Seq's outcome.
	waiters map[uint64]chan error
	acked   uint64           // highest Seq acknowledged
	outcome map[uint64]error // recent drops, for waiters that register late
}

// batch is a run of entries produced together. Its refs are the opaques of
// its records, so one allocation per batch carries every record's outcome.
type batch struct {
	part     *partition
	refs     []msgRef
	lastSeq  uint64
	bytes    int64 // taken from the sink's in-flight budget until complete
	n        int32
	done     atomic.Int32
	retry    atomic.Bool
	complete bool // guarded by part.mu
	firstErr atomic.Pointer[error]
}

// msgRef is one record of a batch; err is written once, before the batch's
// done counter counts the record, and read after the batch completed.
type msgRef struct {
	b      *batch
	seq    uint64
	err    error
	reason buffer.Reason // set when the record is dropped
}

// delivered records the outcome of one record of its batch.
func (m *msgRef) delivered(err error) {
	b := m.b
	if err != nil {
		if reason, drop := classify(err); drop {
			m.err, m.reason = err, reason
			b.part.sink.logDrop(reason, *b.part.topic, err)
		} else {
			b.retry.Store(true)
			// A copy: taking the parameter's address would move it to the
			// heap on every call, one allocation per delivered record.
			first := err
			b.firstErr.CompareAndSwap(nil, &first)
		}
	}
	if b.done.Add(1) == b.n {
		b.part.complete(b)
	}
}

// errExpired drops a record over max_batch_age or max_retries.
var errExpired = errors.New("record expired (max_batch_age or max_retries)")

// classify decides whether a failed record is dropped (and why) or sent again.
func classify(err error) (buffer.Reason, bool) {
	if errors.Is(err, errExpired) {
		return buffer.ReasonExpired, true
	}
	var ke kafka.Error
	if !errors.As(err, &ke) {
		return "", false
	}
	switch ke.Code() {
	case kafka.ErrMsgTimedOut:
		// librdkafka's message.timeout.ms is the sink's max_batch_age.
		return buffer.ReasonExpired, true
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
	// librdkafka has let go of every record of b: its bytes are free.
	p.sink.inflight.release(b.bytes)
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
		p.settleLocked(f)
		p.inflight[0] = nil
		p.inflight = p.inflight[1:]
		p.retry.Reset()
		p.attempts = 0
	}
	p.mu.Unlock()
	if ack > 0 {
		if err := p.q.Ack(ack); err != nil {
			p.log.Error("acknowledging buffer", "err", err)
		}
	}
	p.signal()
}

// settleLocked counts a delivered batch and answers its sync waiters.
func (p *partition) settleLocked(f *batch) {
	c := &p.sink.Counters
	success := int64(f.n)
	for i := range f.refs {
		r := &f.refs[i]
		if r.reason != "" {
			success--
			c.Drop(r.reason, 1)
			if len(p.waiters) > 0 || p.outcome != nil {
				p.rememberLocked(r.seq, r.err)
			}
		}
	}
	c.Success.Add(success)
	p.acked = f.lastSeq
	for seq, ch := range p.waiters {
		if seq <= p.acked {
			ch <- p.outcome[seq]
			delete(p.waiters, seq)
		}
	}
}

// rememberLocked keeps a dropped record's error for a sync waiter that has
// not registered yet; the map is bounded because waiters are few.
func (p *partition) rememberLocked(seq uint64, err error) {
	if p.outcome == nil || len(p.outcome) > 4096 {
		p.outcome = map[uint64]error{}
	}
	p.outcome[seq] = err
}

// await waits for the outcome of the record at seq (query_mode = "sync").
func (p *partition) await(ctx context.Context, seq uint64, timeout <-chan time.Time) error {
	p.mu.Lock()
	if seq <= p.acked {
		err := p.outcome[seq]
		p.mu.Unlock()
		return err
	}
	if p.waiters == nil {
		p.waiters = map[uint64]chan error{}
		p.outcome = map[uint64]error{}
	}
	ch := make(chan error, 1)
	p.waiters[seq] = ch
	p.mu.Unlock()
	select {
	case err := <-ch:
		if err != nil {
			return fmt.Errorf("kafka refused the record: %w", err)
		}
		return nil
	case <-timeout:
	case <-ctx.Done():
	}
	p.mu.Lock()
	delete(p.waiters, seq)
	p.mu.Unlock()
	return fmt.Errorf("topic %s partition %d: %w", *p.topic, p.id, errSyncTimeout)
}

// run drains the queue until ctx ends.
func (p *partition) run(ctx context.Context) {
	maxInflight := p.sink.cfg.MaxInflight
	maxBytes := int(p.sink.cfg.MaxBatchBytes)
	grant := p.sink.batchGrant()
	for ctx.Err() == nil {
		p.mu.Lock()
		var resent int32
		var wait time.Duration
		rewind := p.rewinding && allComplete(p.inflight)
		if rewind {
			for _, f := range p.inflight {
				resent += f.n
			}
			clear(p.inflight)
			p.inflight = p.inflight[:0]
			p.rewinding = false
			p.attempts++
			p.retryHigh = p.sentHigh
			wait = p.retry.Next()
		}
		ready := !p.rewinding && len(p.inflight) < maxInflight
		p.mu.Unlock()
		if rewind {
			p.sink.Counters.Retried.Add(int64(resent))
			p.q.Rewind()
			if !backoff.Sleep(ctx, wait) {
				return
			}
		}
		if !ready {
			p.wait(ctx, nil)
			continue
		}
		// The bytes are taken before the read, so that what waits for
		// budget is a partition and not a batch read into memory.
		if p.sink.inflight.acquire(ctx, grant) != nil {
			return
		}
		ep := p.sink.batchEnts.Get().(*[]buffer.Entry)
		ents, err := p.q.Read((*ep)[:0], int(min(int64(maxBytes), grant)))
		if err != nil || len(ents) == 0 {
			p.sink.inflight.release(grant)
			p.putEnts(ep, ents)
		}
		if err != nil {
			p.log.Error("reading buffer", "err", err)
			if !backoff.Sleep(ctx, time.Second) {
				return
			}
			continue
		}
		if len(ents) == 0 {
			p.wait(ctx, p.q.Ready())
			continue
		}
		// Records moved out of holding wait until their move is marked,
		// so that one crash cannot both resend and move them again.
		for m := p.moved.Load(); m != 0 && ents[len(ents)-1].Seq >= m; m = p.moved.Load() {
			if p.wait(ctx, nil); ctx.Err() != nil {
				p.sink.inflight.release(grant)
				p.putEnts(ep, ents)
				return
			}
		}
		size := int64(len(ents)) * inflightRecordCost
		for i := range ents {
			size += int64(ents[i].Size())
		}
		// Only a record buffered under an earlier, larger limit exceeds
		// the grant; it is counted as the grant.
		size = min(size, grant)
		p.sink.inflight.release(grant - size)
		p.mu.Lock()
		if p.rewinding {
			// A batch failed while this one waited for budget: sending
			// it now would put it before the records sent again. The
			// rewind reads it again.
			p.mu.Unlock()
			p.sink.inflight.release(size)
			p.putEnts(ep, ents)
			continue
		}
		b := &batch{part: p, n: int32(len(ents)), lastSeq: ents[len(ents)-1].Seq, bytes: size, refs: make([]msgRef, len(ents))}
		p.inflight = append(p.inflight, b)
		expireRetries := p.sink.cfg.MaxRetries > 0 && p.attempts >= p.sink.cfg.MaxRetries
		retryHigh := p.retryHigh
		p.sentHigh = max(p.sentHigh, b.lastSeq)
		p.mu.Unlock()
		p.send(ctx, b, ents, expireRetries, retryHigh)
		p.putEnts(ep, ents)
	}
}

// putEnts returns a batch's entry slice to the sink's pool, without the
// records, whose bytes librdkafka has copied.
func (p *partition) putEnts(ep *[]buffer.Entry, ents []buffer.Entry) {
	clear(ents)
	*ep = ents[:0]
	p.sink.batchEnts.Put(ep)
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

// send produces a batch's records in order. A record librdkafka refuses at
// once, or one past max_batch_age or max_retries, completes here with the
// outcome a delivery report would carry.
func (p *partition) send(ctx context.Context, b *batch, ents []buffer.Entry, expireRetries bool, retryHigh uint64) {
	msg := kafka.Message{TopicPartition: kafka.TopicPartition{Topic: p.topic, Partition: p.id}}
	var oldest int64
	if age := p.sink.cfg.MaxBatchAge; age > 0 {
		oldest = time.Now().Add(-age).UnixMilli()
	}
	for i := range ents {
		b.refs[i] = msgRef{b: b, seq: ents[i].Seq}
	}
	sent := 0
	err := p.client.withProducer(func(kp *kafka.Producer) error {
		for ; sent < len(ents); sent++ {
			e, ref := &ents[sent], &b.refs[sent]
			if e.Time < oldest || expireRetries && e.Seq <= retryHigh {
				ref.delivered(errExpired)
				continue
			}
			msg.Key, msg.Value, msg.Opaque = e.Key, e.Value, ref
			msg.Timestamp = time.UnixMilli(e.Time)
			msg.Headers = toKafkaHeaders(msg.Headers[:0], e.Headers)
			for {
				err := kp.Produce(&msg, nil)
				if err == nil {
					break
				}
				var ke kafka.Error
				if errors.As(err, &ke) && ke.Code() == kafka.ErrQueueFull {
					if !backoff.Sleep(ctx, 10*time.Millisecond) {
						return ctx.Err()
					}
					continue
				}
				if _, drop := classify(err); drop {
					ref.delivered(err)
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
			b.refs[sent].delivered(retriableError{err})
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
