package producer

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mqkafka/mqkafka/ack"
	"github.com/mqkafka/mqkafka/buffer"
	"github.com/mqkafka/mqkafka/internal/backoff"
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
	// kafkaParts is the partition count Kafka last reported, 0 before it
	// answered: a topic recreated with fewer partitions than a previous
	// run left queues for gets records only on those that exist.
	kafkaParts atomic.Int32
	learned    chan struct{} // closed once the partitions are known or the topic is known not to exist
	learnMu    sync.Once

	// Owned by the topic's goroutine (and newTopic before it).
	mark   *moveMark // disk and hybrid: how far holding has been moved
	moved  uint64    // held records up to this Seq were moved before a restart
	groups [][]buffer.Record
}

// holdBatchBytes bounds one read of the holding queue, and so one move.
const holdBatchBytes = 1 << 20

// holdQueue names a topic's holding queue among its partition queues.
const holdQueue = "_hold"

func (s *Sink) newTopic(name string) (*topic, error) {
	hold, err := s.openQueue(name, holdQueue)
	if err != nil {
		return nil, err
	}
	t := &topic{s: s, name: name, hold: hold, holding: true, released: make(chan struct{}), learned: make(chan struct{})}
	if s.cfg.Buffer.Mode == string(buffer.ModeMemory) {
		return t, nil
	}
	if err := t.openMark(); err != nil {
		hold.Close()
		return nil, err
	}
	// The partitions a previous run created tell the count without asking
	// Kafka (a topic's partitions are only ever added; a recreated topic is
	// caught by kafkaParts once Kafka answers); an empty holding queue then
	// lets new records go straight to their partitions.
	if n := partitionsOnDisk(s.queueDir(name)); n > 0 {
		if err := t.setPartitions(s.ctx, n); err != nil {
			s.log.Error("opening partition queues", "topic", name, "err", err)
		} else if hold.Stats().Records == 0 {
			t.learn()
			t.holding = false
			close(t.released)
		}
	}
	return t, nil
}

// openMark reads the holding queue's move mark and works out which held
// records the previous run already moved: those up to the mark, unless the
// record at the mark is no longer there (a crash that cut the queue's tail
// makes it reuse those Seqs for new records, which must be moved).
func (t *topic) openMark() error {
	durable := t.s.cfg.Buffer.Fsync == string(buffer.FsyncBatch) || t.s.cfg.Buffer.Fsync == ""
	m, seq, sum, err := openMoveMark(t.s.queueDir(t.name), durable)
	if err != nil {
		return fmt.Errorf("sink %s: topic %s: %w", t.s.cfg.Name, t.name, err)
	}
	t.mark = m
	if seq == 0 {
		return nil
	}
	defer t.hold.Rewind()
	var ents []buffer.Entry
	var last uint64
	var lastSum uint32
	for {
		ents, err = t.hold.Read(ents[:0], holdBatchBytes)
		if err != nil || len(ents) == 0 {
			// Every record still held that the mark covers was moved; a read
			// error moves them all again rather than guess.
			if err == nil {
				t.moved = last
			}
			break
		}
		if ents[len(ents)-1].Seq < seq {
			last, lastSum = ents[len(ents)-1].Seq, recordSum(&ents[len(ents)-1].Record)
			continue
		}
		for i := range ents {
			if ents[i].Seq == seq && recordSum(&ents[i].Record) == sum {
				t.moved, lastSum = seq, sum
			}
		}
		break
	}
	if t.moved != seq {
		return t.mark.save(t.moved, lastSum)
	}
	return nil
}

// partitionsOnDisk is the number of partitions whose queue directories a
// previous run left in dir, 0 if none.
func partitionsOnDisk(dir string) int {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range ents {
		id, err := strconv.Atoi(e.Name())
		if e.IsDir() && err == nil && id >= 0 && strconv.Itoa(id) == e.Name() {
			n = max(n, id+1)
		}
	}
	return n
}

// learn marks the topic's partitions (or its absence) as known.
func (t *topic) learn() { t.learnMu.Do(func() { close(t.learned) }) }

func (t *topic) partitions() []*partition {
	if p := t.parts.Load(); p != nil {
		return *p
	}
	return nil
}

// enqueue appends rec to its partition's queue (or the holding queue),
// returning as w says, and returns that partition and the record's Seq; a
// nil partition means the record went to the holding queue or was dropped.
// rec is copied, not kept.
func (t *topic) enqueue(ctx context.Context, w ack.Wait, rec *buffer.Record) (*partition, uint64, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.holding {
		// Holding ends with one last drain under t.mu: a record must be
		// readable by then, not merely queued for the WAL, whatever w says.
		return nil, 0, t.hold.Append(ctx, ack.InCall(), *rec)
	}
	p := t.pick(rec, rand.Uint64())
	if p == nil {
		return nil, 0, nil
	}
	seq, err := p.q.AppendSeq(ctx, w, rec)
	return p, seq, err
}

// pick chooses rec's partition (spread as for pickPartition), or counts it
// dropped when the topic or the fixed partition does not exist.
func (t *topic) pick(rec *buffer.Record, spread uint64) *partition {
	parts := t.partitions()
	if t.unknown.Load() || len(parts) == 0 {
		t.s.Counters.Drop(buffer.ReasonUnknownTopic, 1)
		t.s.logDrop(buffer.ReasonUnknownTopic, t.name, fmt.Errorf("topic %q does not exist", t.name))
		return nil
	}
	n := len(parts)
	if k := int(t.kafkaParts.Load()); k > 0 {
		n = min(n, k)
	}
	i := t.s.pickPartition(rec.Key, n, spread)
	if i < 0 {
		t.s.Counters.Drop(buffer.ReasonUnknownTopic, 1)
		t.s.logDrop(buffer.ReasonUnknownTopic, t.name,
			fmt.Errorf("partition %d does not exist: topic %q has %d", t.s.cfg.Partition, t.name, n))
		return nil
	}
	return parts[i]
}

// enqueueSync is enqueue that also waits for Kafka's acknowledgement. While
// the topic's partitions are not known yet it waits for them first, because
// a record in the holding queue has no Seq to wait for.
func (t *topic) enqueueSync(ctx context.Context, w ack.Wait, rec *buffer.Record, timeout time.Duration) error {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-t.released:
	case <-timer.C:
		return fmt.Errorf("topic %s: %w", t.name, errSyncTimeout)
	case <-ctx.Done():
		return ctx.Err()
	}
	p, seq, err := t.enqueue(ctx, w, rec)
	if err != nil || p == nil {
		return err
	}
	return p.await(ctx, seq, timer.C)
}

// run learns the topic's partitions, moves held records into them and keeps
// the partition count fresh.
func (t *topic) run(ctx context.Context) {
	retry := backoff.Backoff{Min: 200 * time.Millisecond, Max: 5 * time.Second}
	for ctx.Err() == nil {
		// librdkafka cannot cancel a metadata request, so its timeout is
		// also how long a stop may wait for this goroutine.
		mctx, cancel := context.WithTimeout(ctx, t.s.clients[0].metadataTimeout())
		info, err := t.s.clients[0].Metadata(mctx, t.name)
		cancel()
		if err != nil {
			t.s.warnEvery("connecting\x00"+t.name, "kafka not reachable; records are kept in the buffer",
				"topic", t.name, "err", err, "queuing", t.hold.Stats().Records)
			if !backoff.Sleep(ctx, retry.Next()) {
				return
			}
			continue
		}
		retry.Reset()
		next := t.s.cfg.PartitionCountRefreshInterval
		if info.Exists {
			t.kafkaParts.Store(int32(info.Partitions))
			if err := t.setPartitions(ctx, info.Partitions); err != nil {
				t.s.log.Error("opening partition queues", "topic", t.name, "err", err)
				next = 5 * time.Second
			}
		} else {
			t.setUnknown()
			next = unknownRecheck
		}
		t.learn()
		if t.isHolding() {
			t.release(ctx)
		}
		if !backoff.Sleep(ctx, next) {
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
			retry:  backoff.Backoff{Min: 100 * time.Millisecond, Max: 5 * time.Second},
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
		ents, err = t.hold.Read(ents[:0], holdBatchBytes)
		if err != nil {
			t.s.log.Error("reading holding queue", "topic", t.name, "err", err)
			return
		}
		if len(ents) > 0 {
			if !t.moveBatch(ctx, ents) {
				return
			}
			continue
		}
		// Appenders hold the read lock, so under the write lock the holding
		// queue cannot grow: what the appenders of the last moment left is
		// moved, and holding ends. Without the lock, a steady stream of
		// publishes would always leave some.
		t.mu.Lock()
		for {
			ents, err = t.hold.Read(ents[:0], holdBatchBytes)
			if err != nil || len(ents) == 0 || !t.moveBatch(ctx, ents) {
				break
			}
		}
		if err == nil && len(ents) == 0 {
			t.holding = false
			close(t.released)
		}
		t.mu.Unlock()
		if err != nil {
			t.s.log.Error("reading holding queue", "topic", t.name, "err", err)
		}
		return
	}
}

// moveBatch moves one read of the holding queue into the partitions, marks
// it moved and acknowledges it; false means it stays held (the sink stops,
// or the acknowledgement failed).
func (t *topic) moveBatch(ctx context.Context, ents []buffer.Entry) bool {
	defer t.sendMoved()
	if !t.move(ctx, ents) {
		t.hold.Rewind()
		return false
	}
	last := &ents[len(ents)-1]
	if t.mark != nil {
		if err := t.mark.save(last.Seq, recordSum(&last.Record)); err != nil {
			t.s.log.Error("saving how far the holding queue was moved", "topic", t.name, "err", err)
		}
	}
	if err := t.hold.Ack(last.Seq); err != nil {
		t.s.log.Error("acknowledging holding queue", "topic", t.name, "err", err)
		return false
	}
	return true
}

// sendMoved lets the partitions send what a move gave them.
func (t *topic) sendMoved() {
	for _, p := range t.partitions() {
		if p.moved.Swap(0) != 0 {
			p.signal()
		}
	}
}

// move appends held records to their partitions, one append of many records
// per partition; false means the sink stopped before every partition took
// its records, which stay held. A held record's partition follows from its
// Seq in the holding queue, so a move repeated after a crash puts each
// record where the first one did, and records the previous run moved (up to
// t.moved) are not moved again.
func (t *topic) move(ctx context.Context, ents []buffer.Entry) bool {
	parts := t.partitions()
	if len(t.groups) < len(parts) {
		t.groups = make([][]buffer.Record, len(parts))
	}
	groups := t.groups[:len(parts)]
	defer func() {
		for i := range groups {
			clear(groups[i])
			groups[i] = groups[i][:0]
		}
	}()
	for i := range ents {
		e := &ents[i]
		if e.Seq <= t.moved {
			continue
		}
		if p := t.pick(&e.Record, e.Seq); p != nil {
			groups[p.id] = append(groups[p.id], e.Record)
		}
	}
	for {
		failed, err := t.appendGroups(parts, groups)
		if failed < 0 {
			return true
		}
		if err == nil {
			err = errors.New("the partition queue's write failed")
		}
		t.s.warnEvery("move\x00"+t.name, "cannot move held records into their partition; retrying",
			"topic", t.name, "partition", failed, "err", err)
		if !backoff.Sleep(ctx, time.Second) {
			return false
		}
	}
}

// appendGroups appends each partition's group under its own ticket, so that
// the partitions' writes share one group commit and the move is marked as
// soon as all are durable. A group once taken is emptied; it returns a
// partition whose append failed (its group stays) and the append's error if
// it returned one, or -1. The appends wait
// for room under overflow = "block" even while the sink stops: a batch half
// moved would be moved again.
func (t *topic) appendGroups(parts []*partition, groups [][]buffer.Record) (int, error) {
	var waits []groupAppend
	for id, recs := range groups {
		if len(recs) > 0 {
			waits = append(waits, t.appendGroup(parts[id], recs))
		}
	}
	failed, ferr := -1, error(nil)
	for _, w := range waits {
		if <-w.done || w.err != nil {
			failed, ferr = w.id, w.err
			continue
		}
		clear(groups[w.id])
		groups[w.id] = groups[w.id][:0]
	}
	return failed, ferr
}

// groupAppend is one partition's append of a move: done receives whether
// its write failed, err what the append returned.
type groupAppend struct {
	id   int
	done chan bool
	err  error
}

func (t *topic) appendGroup(p *partition, recs []buffer.Record) groupAppend {
	w := groupAppend{id: int(p.id), done: make(chan bool, 1)}
	if t.mark != nil {
		// Only moves append to a partition while its topic holds, so what
		// follows the queue's last record now is this move's: the partition
		// holds it back until the move is marked.
		p.moved.Store(p.q.LastSeq() + 1)
	}
	done := w.done
	tk := ack.NewTicket(func(failed bool) { done <- failed })
	w.err = p.q.Append(context.Background(), ack.Deferred(tk), recs...)
	if errors.Is(w.err, ack.ErrFull) {
		w.err = nil // the partition's overflow policy counted them
	}
	if tk.Release() {
		done <- tk.Failed()
	}
	return w
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
	if t.mark != nil {
		t.mark.close()
	}
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
