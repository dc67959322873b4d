// Package producer is the Kafka sink: it renders rule records into Kafka
// records, appends them to the per-partition buffers and drains those into
// librdkafka, acknowledging a buffer only up to what Kafka confirmed.
//
// A record's partition is chosen when it is enqueued, which needs the
// topic's partition count. Until metadata has been read once (Kafka down at
// start), records wait in the topic's holding queue, a buffer.Queue of the
// sink's mode under `<topic>/_hold`, so they are kept exactly as durably as
// partitioned ones. Once the count is known, the topic's goroutine moves
// them, in order, into their partition queues; until the holding queue is
// empty, new records go there too so none overtakes an older one.
package producer

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mqkafka/mqkafka/buffer"
	"github.com/mqkafka/mqkafka/conf"
	"github.com/mqkafka/mqkafka/rule"
)

// Sink is one `[[sinks]]` entry at run time.
type Sink struct {
	// Counters are the sink's metrics.
	Counters Counters

	cfg     conf.Sink
	client  *Client
	log     *slog.Logger
	dataDir string

	keyTpl, valueTpl *rule.Template
	topic            *topic

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	overloaded func() bool

	scratch  sync.Pool
	dropLogs sync.Map // reason+topic → *atomic.Int64 (last log, unix ns)
}

// SinkEnv is what a sink takes from the process around it.
type SinkEnv struct {
	DataDir string
	Log     *slog.Logger
	// Overloaded reports system memory shortage (memory_overload_protection).
	Overloaded func() bool
}

// NewSink builds a sink on a client and starts its goroutines; Close stops them.
func NewSink(cfg conf.Sink, client *Client, env SinkEnv) (*Sink, error) {
	s := &Sink{
		cfg:     cfg,
		client:  client,
		log:     env.Log.With("sink", cfg.Name),
		dataDir: env.DataDir,
	}
	if cfg.Buffer.MemoryOverloadProtection {
		s.overloaded = env.Overloaded
	}
	var err error
	if s.keyTpl, err = rule.CompileTemplate(cfg.Key); err != nil {
		return nil, fmt.Errorf("sink %s: key: %w", cfg.Name, err)
	}
	if s.valueTpl, err = rule.CompileTemplate(cfg.Value); err != nil {
		return nil, fmt.Errorf("sink %s: value: %w", cfg.Name, err)
	}
	s.scratch.New = func() any { b := make([]byte, 0, 1024); return &b }
	s.ctx, s.cancel = context.WithCancel(context.Background())
	t, err := s.newTopic(cfg.Topic)
	if err != nil {
		s.cancel()
		return nil, err
	}
	s.topic = t
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t.run(s.ctx)
	}()
	return s, nil
}

// Name is the sink's name.
func (s *Sink) Name() string { return s.cfg.Name }

func (s *Sink) openQueue(topic, part string) (buffer.Queue, error) {
	q, err := buffer.Open(buffer.Options{
		Mode:          buffer.Mode(s.cfg.Buffer.Mode),
		Dir:           filepath.Join(s.dataDir, "buffer", s.cfg.Name, topic, part),
		Limit:         int64(s.cfg.Buffer.PerPartitionLimit),
		Overflow:      buffer.Overflow(s.cfg.Buffer.Overflow),
		BlockTimeout:  s.cfg.Buffer.BlockTimeout,
		OnDrop:        s.Counters.Drop,
		Fsync:         buffer.Fsync(s.cfg.Buffer.Fsync),
		FsyncInterval: s.cfg.Buffer.FsyncInterval,
		SegmentBytes:  int64(s.cfg.Buffer.SegmentBytes),
		MemoryLimit:   int64(s.cfg.Buffer.MemoryLimit),
		Logger:        s.log.With("topic", topic, "partition", part),
		Overloaded:    s.overloaded,
	})
	if err != nil {
		return nil, fmt.Errorf("sink %s: topic %s partition %s: %w", s.cfg.Name, topic, part, err)
	}
	return q, nil
}

// Enqueue renders a rule's record and appends it to its partition's buffer.
// When it returns nil the record is kept as the buffer mode promises.
func (s *Sink) Enqueue(ctx context.Context, r rule.Record) error {
	s.Counters.Matched.Add(1)
	bp := s.scratch.Get().(*[]byte)
	buf := s.keyTpl.Render((*bp)[:0], r)
	k := len(buf)
	buf = s.valueTpl.Render(buf, r)
	// One exact allocation holds key and value; the scratch is reused.
	kv := make([]byte, len(buf))
	copy(kv, buf)
	*bp = buf
	s.scratch.Put(bp)
	rec := buffer.Record{Key: kv[:k:k], Value: kv[k:], Time: time.Now().UnixMilli()}
	err := s.topic.enqueue(ctx, rec)
	if err != nil {
		s.Counters.Failed.Add(1)
	}
	return err
}

// warnEvery logs at most one line per second for each key.
func (s *Sink) warnEvery(key, msg string, args ...any) {
	v, _ := s.dropLogs.LoadOrStore(key, new(atomic.Int64))
	last := v.(*atomic.Int64)
	now := time.Now().UnixNano()
	if l := last.Load(); now-l < int64(time.Second) || !last.CompareAndSwap(l, now) {
		return
	}
	s.log.Warn(msg, args...)
}

// logDrop reports dropped records, at most once a second per reason and topic.
func (s *Sink) logDrop(reason buffer.Reason, topic string, err error) {
	s.warnEvery(string(reason)+"\x00"+topic, "dropping records", "reason", string(reason), "topic", topic,
		"err", err, "dropped_total", s.Counters.DroppedTotal())
}

func (s *Sink) logRetry(topic string, part int32, err error) {
	s.warnEvery("retry\x00"+topic, "sending records again from the buffer", "topic", topic,
		"partition", part, "err", err)
}

// PartitionStats is one partition queue's gauges.
type PartitionStats struct {
	Topic     string
	Partition int32 // -1 for records waiting for the topic's metadata
	buffer.Stats
}

// Stats returns the gauges of every queue of the sink.
func (s *Sink) Stats() []PartitionStats {
	return s.topic.stats()
}

// Queued sums the sink's queues.
func (s *Sink) Queued() buffer.Stats {
	var total buffer.Stats
	for _, ps := range s.Stats() {
		total.Records += ps.Records
		total.Bytes += ps.Bytes
		total.Inflight += ps.Inflight
	}
	return total
}

// Drain waits until every buffered record has been delivered or ctx ends.
func (s *Sink) Drain(ctx context.Context) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if s.Queued().Records == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("sink %s: %d records still buffered: %w", s.cfg.Name, s.Queued().Records, ctx.Err())
		case <-tick.C:
		}
	}
}

// Close stops the sink's goroutines and closes its queues. Records still
// buffered stay there (memory mode loses them, as documented).
func (s *Sink) Close() error {
	s.cancel()
	s.wg.Wait()
	return s.topic.close()
}

// topic is one Kafka topic of a sink: its partitions and its holding queue.
type topic struct {
	s    *Sink
	name string
	hold buffer.Queue

	// mu is held for reading by every enqueue (an Append may block under
	// overflow = "block") and for writing only to end holding, which
	// cannot happen while an append into the holding queue is under way.
	mu      sync.RWMutex
	holding bool

	// Partitions are copy-on-write so that learning them never waits for
	// appenders blocked on a full holding queue.
	parts   atomic.Pointer[[]*partition]
	partsMu sync.Mutex
	unknown atomic.Bool
}

func (t *topic) partitions() []*partition {
	if p := t.parts.Load(); p != nil {
		return *p
	}
	return nil
}

func (s *Sink) newTopic(name string) (*topic, error) {
	hold, err := s.openQueue(name, "_hold")
	if err != nil {
		return nil, err
	}
	return &topic{s: s, name: name, hold: hold, holding: true}, nil
}

func (t *topic) enqueue(ctx context.Context, rec buffer.Record) error {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.holding {
		return t.hold.Append(ctx, rec)
	}
	parts := t.partitions()
	if t.unknown.Load() || len(parts) == 0 {
		t.s.Counters.Drop(buffer.ReasonUnknownTopic, 1)
		t.s.logDrop(buffer.ReasonUnknownTopic, t.name, fmt.Errorf("topic %q does not exist", t.name))
		return nil
	}
	return parts[rand.IntN(len(parts))].q.Append(ctx, rec)
}

const (
	metadataRefresh = 60 * time.Second
	unknownRecheck  = 10 * time.Second
)

// run learns the topic's partitions, moves held records into them and keeps
// the partition count fresh.
func (t *topic) run(ctx context.Context) {
	backoff := 200 * time.Millisecond
	for ctx.Err() == nil {
		// librdkafka cannot cancel a metadata request, so its timeout is
		// also how long a stop may wait for this goroutine.
		mctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		info, err := t.s.client.Metadata(mctx, t.name)
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
		next := metadataRefresh
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
		p := &partition{
			sink:  t.s,
			topic: namePtr,
			id:    int32(id),
			q:     q,
			log:   t.s.log.With("topic", t.name, "partition", id),
			wake:  make(chan struct{}, 1),
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

func (t *topic) move(ctx context.Context, ents []buffer.Entry) bool {
	parts := t.partitions()
	if t.unknown.Load() || len(parts) == 0 {
		t.s.Counters.Drop(buffer.ReasonUnknownTopic, len(ents))
		return true
	}
	for i := range ents {
		if err := parts[rand.IntN(len(parts))].q.Append(ctx, ents[i].Record); err != nil && ctx.Err() != nil {
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
