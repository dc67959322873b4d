package producer

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mqkafka/mqkafka/buffer"
)

// topic is one Kafka topic of a sink: its partitions and its holding queue.
type topic struct {
	s    *Sink
	name string
	hold buffer.Queue

	// mu is held for reading by every enqueue (an Append may block under
	// overflow = "block") and for writing only to end holding, which
	// cannot happen while an append into the holding queue is under way.
	mu       sync.RWMutex
	holding  bool
	released chan struct{} // closed when holding ends

	// Partitions are copy-on-write so that learning them never waits for
	// appenders blocked on a full holding queue.
	parts   atomic.Pointer[[]*partition]
	partsMu sync.Mutex
	unknown atomic.Bool
}

// holdQueue names a topic's holding queue among its partition queues.
const holdQueue = "_hold"

func (s *Sink) newTopic(name string) (*topic, error) {
	hold, err := s.openQueue(name, holdQueue)
	if err != nil {
		return nil, err
	}
	return &topic{s: s, name: name, hold: hold, holding: true, released: make(chan struct{})}, nil
}

func (t *topic) partitions() []*partition {
	if p := t.parts.Load(); p != nil {
		return *p
	}
	return nil
}

// enqueue appends rec to its partition's queue (or the holding queue) and
// returns that partition and the record's Seq; a nil partition means the
// record went to the holding queue or was dropped.
func (t *topic) enqueue(ctx context.Context, rec buffer.Record) (*partition, uint64, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.holding {
		// Holding ends with one last drain under t.mu: a record must be
		// readable by then, not merely queued for the WAL.
		return nil, 0, t.hold.Append(buffer.WaitInCall(ctx), rec)
	}
	p := t.pick(&rec)
	if p == nil {
		return nil, 0, nil
	}
	seq, err := p.q.AppendSeq(ctx, rec)
	return p, seq, err
}

// pick chooses rec's partition, or counts it dropped when the topic or the
// fixed partition does not exist.
func (t *topic) pick(rec *buffer.Record) *partition {
	parts := t.partitions()
	if t.unknown.Load() || len(parts) == 0 {
		t.s.Counters.Drop(buffer.ReasonUnknownTopic, 1)
		t.s.logDrop(buffer.ReasonUnknownTopic, t.name, fmt.Errorf("topic %q does not exist", t.name))
		return nil
	}
	i := t.s.pickPartition(rec.Key, len(parts))
	if i < 0 {
		t.s.Counters.Drop(buffer.ReasonUnknownTopic, 1)
		t.s.logDrop(buffer.ReasonUnknownTopic, t.name,
			fmt.Errorf("partition %d does not exist: topic %q has %d", t.s.cfg.Partition, t.name, len(parts)))
		return nil
	}
	return parts[i]
}

// enqueueSync is enqueue that also waits for Kafka's acknowledgement. While
// the topic's partitions are not known yet it waits for them first, because
// a record in the holding queue has no Seq to wait for.
func (t *topic) enqueueSync(ctx context.Context, rec buffer.Record, timeout time.Duration) error {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-t.released:
	case <-timer.C:
		return fmt.Errorf("topic %s: %w", t.name, errSyncTimeout)
	case <-ctx.Done():
		return ctx.Err()
	}
	p, seq, err := t.enqueue(ctx, rec)
	if err != nil || p == nil {
		return err
	}
	return p.await(ctx, seq, timer.C)
}

// run learns the topic's partitions, moves held records into them and keeps
// the partition count fresh.
func (t *topic) run(ctx context.Context) {
	backoff := 200 * time.Millisecond
	for ctx.Err() == nil {
		// librdkafka cannot cancel a metadata request, so its timeout is
		// also how long a stop may wait for this goroutine.
		mctx, cancel := context.WithTimeout(ctx, t.s.clients[0].metadataTimeout())
		info, err := t.s.clients[0].Metadata(mctx, t.name)
		cancel()
		if err != nil {
			t.s.warnEvery("connecting\x00"+t.name, "kafka not reachable; records are kept in the buffer",
				"topic", t.name, "err", err, "queuing", t.hold.Stats().Records)
			if !sleep(ctx, backoff) {
				return
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		backoff = 200 * time.Millisecond
		next := t.s.cfg.PartitionCountRefreshInterval
		if info.Exists {
			if err := t.setPartitions(ctx, info.Partitions); err != nil {
				t.s.log.Error("opening partition queues", "topic", t.name, "err", err)
				next = 5 * time.Second
			}
		} else {
			t.setUnknown()
			next = unknownRecheck
		}
		if t.isHolding() {
			t.release(ctx)
		}
		if !sleep(ctx, next) {
			return
		}
	}
}

// unknownRecheck is how often a topic that does not exist is looked up
// again, so that creating it later starts delivery without a restart.
const unknownRecheck = 10 * time.Second

func (t *topic) isHolding() bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.holding
}

func (t *topic) setUnknown() {
	t.unknown.Store(true)
	if t.isHolding() {
		t.s.logDrop(buffer.ReasonUnknownTopic, t.name, fmt.Errorf("topic %q does not exist", t.name))
	}
}

// setPartitions opens queues and starts drainers for partitions not seen yet.
func (t *topic) setPartitions(ctx context.Context, n int) error {
	t.partsMu.Lock()
	defer t.partsMu.Unlock()
	t.unknown.Store(false)
	namePtr := &t.name
	parts := slices.Clone(t.partitions())
	defer func() { t.parts.Store(&parts) }()
	for id := len(parts); id < n; id++ {
		q, err := t.s.openQueue(t.name, strconv.Itoa(id))
		if err != nil {
			return err
		}
		if backlog := q.Stats().Records; backlog > 0 {
			t.s.log.Info("sending records buffered before the restart", "topic", t.name, "partition", id, "records", backlog)
		}
		p := &partition{
			sink:   t.s,
			client: t.s.clients[id%len(t.s.clients)],
			topic:  namePtr,
			id:     int32(id),
			q:      q,
			log:    t.s.log.With("topic", t.name, "partition", id),
			wake:   make(chan struct{}, 1),
		}
		parts = append(parts, p)
		t.s.wg.Add(1)
		go func() {
			defer t.s.wg.Done()
			p.run(ctx)
		}()
	}
	return nil
}

// release empties the holding queue into the partitions (or counts it as
// dropped when the topic does not exist), then lets enqueue go direct.
func (t *topic) release(ctx context.Context) {
	var ents []buffer.Entry
	for ctx.Err() == nil {
		var err error
		ents, err = t.hold.Read(ents[:0], 1<<20)
		if err != nil {
			t.s.log.Error("reading holding queue", "topic", t.name, "err", err)
			return
		}
		if len(ents) == 0 {
			t.mu.Lock()
			// Appenders hold the read lock, so nothing can slip into the
			// holding queue between this last look and the switch.
			ents, err = t.hold.Read(ents[:0], 1<<20)
			if err == nil && len(ents) == 0 {
				t.holding = false
				close(t.released)
				t.mu.Unlock()
				return
			}
			t.mu.Unlock()
			if err != nil {
				return
			}
		}
		if !t.move(ctx, ents) {
			t.hold.Rewind()
			return
		}
		if err := t.hold.Ack(ents[len(ents)-1].Seq); err != nil {
			t.s.log.Error("acknowledging holding queue", "topic", t.name, "err", err)
			return
		}
	}
}

// move appends held records to their partitions; false means the sink is
// stopping and the records stay held.
func (t *topic) move(ctx context.Context, ents []buffer.Entry) bool {
	for i := range ents {
		p := t.pick(&ents[i].Record)
		if p == nil {
			continue
		}
		if err := p.q.Append(ctx, ents[i].Record); err != nil && ctx.Err() != nil {
			return false
		}
	}
	return true
}

func (t *topic) stats() []PartitionStats {
	out := []PartitionStats{{Topic: t.name, Partition: -1, Stats: t.hold.Stats()}}
	for _, p := range t.partitions() {
		out = append(out, PartitionStats{Topic: t.name, Partition: p.id, Stats: p.q.Stats()})
	}
	return out
}

// close closes the topic's queues; records a memory queue still holds are
// lost, by definition of the mode, and counted as dropped{shutdown}.
func (t *topic) close() error {
	queues := []buffer.Queue{t.hold}
	for _, p := range t.partitions() {
		queues = append(queues, p.q)
	}
	var first error
	lost := int64(0)
	for _, q := range queues {
		if t.s.cfg.Buffer.Mode == string(buffer.ModeMemory) {
			lost += q.Stats().Records
		}
		if err := q.Close(); err != nil && first == nil {
			first = err
		}
	}
	if lost > 0 {
		t.s.Counters.Drop(buffer.ReasonShutdown, int(lost))
		t.s.log.Warn("memory buffer: records not yet in Kafka are lost at shutdown", "topic", t.name, "lost", lost)
	}
	return first
}
