// Package producer is the Kafka sink: it renders rule records into Kafka
// records, appends them to the per-partition buffers and drains those into
// librdkafka, acknowledging a buffer only up to what Kafka confirmed.
//
// A record's partition is chosen when it is enqueued, which needs the
// topic's partition count: from the partition queues a previous run left on
// disk, or from Kafka's metadata (the process asks before it opens its
// listeners, see WaitPartitions). Until it is known (Kafka down at start),
// records wait in the topic's holding queue, a buffer.Queue of the sink's
// mode under `<topic>/_hold`, so they are kept exactly as durably as
// partitioned ones. Once the count is known, the topic's goroutine moves
// them, in order and in batches (one append per partition), into their
// partition queues; until the holding queue is empty, new records go there
// too so none overtakes an older one. A held record's partition follows from
// its place in the holding queue, and a mark file written right after each
// move records how far the moves got: a crash neither sends a record to two
// partitions nor moves it again once its move is marked.
//
// Topics may be templates: each rendered topic gets its own queues, created
// on first use. After a restart, the topics found on disk are opened again so
// that their backlog is delivered even if no new record names them.
package producer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/mqkafka/mqkafka/ack"
	"github.com/mqkafka/mqkafka/buffer"
	"github.com/mqkafka/mqkafka/conf"
	"github.com/mqkafka/mqkafka/internal/logx"
	"github.com/mqkafka/mqkafka/rule"
)

// Sink is one `[[sinks]]` entry at run time.
type Sink struct {
	// Counters are the sink's metrics.
	Counters Counters

	cfg        conf.Sink
	clients    []*Client // concurrent_clients producers; partition p uses clients[p % len]
	log        *slog.Logger
	dataDir    string
	overloaded func() bool
	render     *renderer
	committer  *buffer.Committer // disk mode: one group commit round for all partitions
	readCache  *buffer.CacheBudget
	inflight   *inflightBudget // max_inflight_bytes, shared by every partition
	// batchEnts are the entry slices of batches being read and handed
	// over; pooled rather than kept per partition, so that their memory
	// follows the bytes in flight and not the number of partitions.
	batchEnts sync.Pool // *[]buffer.Entry

	topicsMu sync.Mutex
	topics   sync.Map // name → *topic

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	scratch  sync.Pool
	staged   sync.Pool  // *staged
	dropLogs logx.Keyed // warnEvery's once a second per key
}

// SinkEnv is what a sink takes from the process around it.
type SinkEnv struct {
	DataDir string
	Log     *slog.Logger
	// Overloaded reports system memory shortage (memory_overload_protection).
	Overloaded func() bool
	// ReadCache is the read cache budget of disk queues ([buffer] read_cache),
	// shared by every sink of the process.
	ReadCache *buffer.CacheBudget
}

// NewSink builds a sink on its clients and starts its goroutines; Close stops them.
func NewSink(cfg conf.Sink, clients []*Client, env SinkEnv) (*Sink, error) {
	if len(clients) == 0 {
		return nil, fmt.Errorf("sink %s: no Kafka client", cfg.Name)
	}
	r, err := newRenderer(cfg)
	if err != nil {
		return nil, err
	}
	wire, err := conf.MessageMaxBytes(clients[0].cfg.Conn.Properties)
	if err != nil {
		return nil, fmt.Errorf("sink %s: %w", cfg.Name, err)
	}
	if cfg.MaxInflightBytes < conf.MinInflightBytes {
		return nil, fmt.Errorf("sink %s: max_inflight_bytes must be at least %d bytes", cfg.Name, conf.MinInflightBytes)
	}
	// A record must fit in the in-flight budget on its own, or it could
	// never be sent.
	r.limit = &recordLimit{wire: wire, queue: min(int64(cfg.Buffer.PerPartitionLimit), int64(cfg.MaxInflightBytes)-inflightRecordCost)}
	s := &Sink{
		cfg:     cfg,
		clients: clients,
		log:     env.Log.With("sink", cfg.Name),
		dataDir: env.DataDir,
		render:  r,

		readCache: env.ReadCache,
		inflight:  newInflightBudget(int64(cfg.MaxInflightBytes)),
	}
	if cfg.Buffer.MemoryOverloadProtection {
		s.overloaded = env.Overloaded
	}
	s.scratch.New = func() any { b := make([]byte, 0, 1024); return &b }
	s.staged.New = func() any { return &staged{s: s} }
	s.batchEnts.New = func() any { return new([]buffer.Entry) }
	if cfg.Buffer.Mode == string(buffer.ModeDisk) {
		s.committer = buffer.NewCommitter()
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if err := s.restoreTopics(); err != nil {
		s.Close()
		return nil, err
	}
	if r.staticTopic != "" {
		if _, err := s.topic(r.staticTopic); err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

// inflightRecordCost is what a record in flight costs besides its bytes:
// librdkafka's message and its place in a produce request, the Go client's
// handle and delivery report, and the batch's msgRef. It is charged to the
// in-flight budget, so that small records cannot hide in it.
const inflightRecordCost = 256

// batchGrant is what a partition takes from the in-flight budget before
// it reads a batch: room for max_batch_bytes, or for the largest record
// the sink takes, which goes alone; never more than the whole budget.
func (s *Sink) batchGrant() int64 {
	largest := min(int64(s.render.limit.wire), s.render.limit.queue) + inflightRecordCost
	return min(s.inflight.size, max(int64(s.cfg.MaxBatchBytes), largest))
}

// InflightBytes reports the bytes of records handed to librdkafka and not
// yet acknowledged (max_inflight_bytes bounds it), and the most at once.
func (s *Sink) InflightBytes() (now, peak int64) { return s.inflight.stats() }

// Name is the sink's name.
func (s *Sink) Name() string { return s.cfg.Name }

func (s *Sink) queueDir(topic string) string {
	return filepath.Join(s.dataDir, "buffer", s.cfg.Name, topic)
}

func (s *Sink) openQueue(topic, part string) (buffer.Queue, error) {
	// A partition's batches are read in the in-flight budget's measure;
	// the holding queue's go to other queues, not to librdkafka.
	cost := inflightRecordCost
	if part == holdQueue {
		cost = 0
	}
	q, err := buffer.Open(buffer.Options{
		Mode:          buffer.Mode(s.cfg.Buffer.Mode),
		Dir:           filepath.Join(s.queueDir(topic), part),
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
		Committer:     s.committer,
		ReadCache:     s.readCache,
		ReadCost:      cost,
	})
	if err != nil {
		return nil, fmt.Errorf("sink %s: topic %s partition %s: %w", s.cfg.Name, topic, part, err)
	}
	return q, nil
}

// restoreTopics reopens every topic a disk or hybrid buffer holds records for.
func (s *Sink) restoreTopics() error {
	if s.cfg.Buffer.Mode == string(buffer.ModeMemory) {
		return nil
	}
	ents, err := os.ReadDir(filepath.Join(s.dataDir, "buffer", s.cfg.Name))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("sink %s: %w", s.cfg.Name, err)
	}
	for _, e := range ents {
		if !e.IsDir() || conf.ValidTopicName(e.Name()) != nil {
			continue
		}
		if _, err := s.topic(e.Name()); err != nil {
			return err
		}
	}
	return nil
}

// topic returns the state of a Kafka topic, creating it on first use.
func (s *Sink) topic(name string) (*topic, error) {
	if t, ok := s.topics.Load(name); ok {
		return t.(*topic), nil
	}
	s.topicsMu.Lock()
	defer s.topicsMu.Unlock()
	if t, ok := s.topics.Load(name); ok {
		return t.(*topic), nil
	}
	if s.ctx.Err() != nil {
		return nil, fmt.Errorf("sink %s: %w", s.cfg.Name, buffer.ErrClosed)
	}
	t, err := s.newTopic(name)
	if err != nil {
		return nil, err
	}
	s.topics.Store(name, t)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t.run(s.ctx)
	}()
	return t, nil
}

// WaitPartitions waits until every topic the sink has opened knows its
// partitions (from Kafka, or from the queues a previous run left on disk) or
// knows that it does not exist, or until ctx ends; it reports whether all
// did. It waits at most one metadata request: when that failed, Kafka is
// down. A record enqueued before its topic knows waits in the holding queue.
func (s *Sink) WaitPartitions(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, s.clients[0].metadataTimeout())
	defer cancel()
	all := true
	s.eachTopic(func(t *topic) {
		select {
		case <-t.learned:
		case <-ctx.Done():
			all = false
		}
	})
	return all
}

func (s *Sink) eachTopic(fn func(t *topic)) {
	s.topics.Range(func(_, v any) bool {
		fn(v.(*topic))
		return true
	})
}

// errSyncTimeout: under query_mode = "sync", Kafka did not acknowledge the
// record within sync_query_timeout; it stays buffered and is still sent.
var errSyncTimeout = errors.New("kafka did not acknowledge within sync_query_timeout")

// Enqueue renders a rule's record and appends it to its partition's buffer,
// returning as w says; under query_mode = "sync", once Kafka has also
// acknowledged it.
func (s *Sink) Enqueue(ctx context.Context, w ack.Wait, r rule.Record) error {
	st, err := s.Stage(r)
	if st == nil {
		return err
	}
	return st.Append(ctx, w)
}

// Stage implements rule.Stager: it renders a rule's record and refuses it
// (ack.ErrTooLarge, counted as dropped too_large) when it is larger than
// the sink can send, before the publish is acknowledged or appended to any
// sink. A record that cannot be rendered is counted as render_failed and
// not refused.
func (s *Sink) Stage(r rule.Record) (rule.Staged, error) {
	var rec buffer.Record
	bp := s.scratch.Get().(*[]byte)
	name, scratch, err := s.render.render(r, *bp, time.Now().UnixMilli(), &rec)
	*bp = scratch
	s.scratch.Put(bp)
	if errors.Is(err, ack.ErrTooLarge) {
		s.Counters.Matched.Add(1)
		s.Counters.Failed.Add(1)
		s.Counters.Drop(buffer.ReasonTooLarge, 1)
		s.warnEvery("too_large", "refusing a publish whose record the sink cannot send",
			"reason", buffer.ReasonTooLarge, "err", err)
		return nil, fmt.Errorf("sink %s: %w", s.cfg.Name, err)
	}
	if err != nil {
		s.Counters.Matched.Add(1)
		s.Counters.Drop(buffer.ReasonRenderFailed, 1)
		s.warnEvery("render", "dropping a record that cannot be rendered", "reason", buffer.ReasonRenderFailed, "err", err)
		return nil, nil
	}
	t, err := s.topic(name)
	if err != nil {
		s.Counters.Matched.Add(1)
		s.Counters.Failed.Add(1)
		return nil, err
	}
	st := s.staged.Get().(*staged)
	st.t, st.rec = t, rec
	return st, nil
}

// staged is a record rendered for a sink and not yet appended; the sink
// counts it as matched only when it is appended.
type staged struct {
	s   *Sink
	t   *topic
	rec buffer.Record
}

// Append implements rule.Staged.
func (st *staged) Append(ctx context.Context, w ack.Wait) error {
	s, t := st.s, st.t
	s.Counters.Matched.Add(1)
	// The queue copies the record from st, which is pooled: a copy on the
	// stack would escape through the queue's interface, one allocation per
	// publish.
	var err error
	if s.cfg.QueryMode == "sync" {
		err = t.enqueueSync(ctx, w, &st.rec, s.cfg.SyncQueryTimeout)
	} else {
		_, _, err = t.enqueue(ctx, w, &st.rec)
	}
	st.Discard()
	if err != nil {
		s.Counters.Failed.Add(1)
	}
	return err
}

// Discard implements rule.Staged. The record's bytes are not reused: a
// buffer may hold them.
func (st *staged) Discard() {
	st.t, st.rec = nil, buffer.Record{}
	st.s.staged.Put(st)
}

// warnEvery logs at most one line per second for each key.
func (s *Sink) warnEvery(key, msg string, args ...any) {
	if s.dropLogs.Allowed(key) {
		s.log.Warn(msg, args...)
	}
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
	var out []PartitionStats
	s.eachTopic(func(t *topic) { out = append(out, t.stats()...) })
	return out
}

// BufferErr reports why one of the sink's queues refuses records (a disk
// write failed and the disk does not take writes yet), or nil.
func (s *Sink) BufferErr() error {
	for _, ps := range s.Stats() {
		if ps.Err != nil {
			return fmt.Errorf("topic %s partition %d: %w", ps.Topic, ps.Partition, ps.Err)
		}
	}
	return nil
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
	s.topicsMu.Lock()
	s.cancel()
	s.topicsMu.Unlock()
	s.wg.Wait()
	var errs []error
	s.eachTopic(func(t *topic) { errs = append(errs, t.close()) })
	if s.committer != nil {
		s.committer.Close()
	}
	return errors.Join(errs...)
}
