// Package buffer holds the per-partition queues that sit between the rules and
// the Kafka producer: one Queue per (sink, Kafka topic, partition).
//
// A queue has three regions, oldest first: entries in flight (read by the
// producer, not yet acknowledged by Kafka), entries not yet read, and free
// room up to the queue's byte limit. Appenders add at the tail; the single
// reader (the producer's partition drainer) reads from a cursor and
// acknowledges a prefix once Kafka confirmed it. Rewind moves the cursor
// back to the oldest unacknowledged entry so that a failed send is repeated
// from the buffer, in order.
//
// Overflow evicts or refuses only entries that are not in flight, so that
// "delivered + dropped" always adds up to what was appended.
package buffer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/mqkafka/mqkafka/ack"
)

// Mode is how a queue keeps its entries.
type Mode string

// Buffer modes, as EMQX names them.
const (
	ModeMemory Mode = "memory"
	ModeDisk   Mode = "disk"
	ModeHybrid Mode = "hybrid"
)

// Overflow is what a full queue does with a new record.
type Overflow string

// Overflow policies.
const (
	DropOldest Overflow = "drop_oldest"
	DropNew    Overflow = "drop_new"
	Block      Overflow = "block"
)

// Fsync is when a disk or hybrid queue forces its writes to stable storage.
type Fsync string

// Fsync policies.
const (
	// FsyncBatch is group commit: Append returns after its records are
	// fsynced, and appenders arriving together share one fsync.
	FsyncBatch Fsync = "batch"
	// FsyncInterval fsyncs at most every Options.FsyncInterval; Append
	// returns once its records are written.
	FsyncInterval Fsync = "interval"
	// FsyncNever leaves flushing to the OS (and to Close).
	FsyncNever Fsync = "never"
)

// Reason says why a record was dropped; it is the label of the dropped counter.
type Reason string

// Drop reasons shared by the buffer and the producer.
const (
	ReasonQueueFull    Reason = "queue_full"
	ReasonExpired      Reason = "expired"
	ReasonTooLarge     Reason = "too_large"
	ReasonUnknownTopic Reason = "unknown_topic"
	ReasonRenderFailed Reason = "render_failed"
	ReasonOverload     Reason = "overload"
	ReasonShutdown     Reason = "shutdown"
	ReasonKafkaError   Reason = "kafka_error"
)

// ErrClosed is returned by Append after Close.
var ErrClosed = errors.New("buffer: queue closed")

// Header is one Kafka record header.
type Header struct {
	Key   string
	Value []byte
}

// Record is one Kafka-bound record as the producer sends it.
type Record struct {
	Key     []byte
	Value   []byte
	Headers []Header
	// Time is the enqueue time in Unix milliseconds; it becomes the Kafka
	// timestamp and is what max_batch_age is measured against.
	Time int64
}

// entryOverhead approximates the fixed per-record bookkeeping so that a
// queue of empty records still has a byte size.
const entryOverhead = 32

// Size is the number of bytes a record is charged against a queue's limit.
func (r *Record) Size() int {
	n := entryOverhead + len(r.Key) + len(r.Value)
	for i := range r.Headers {
		n += len(r.Headers[i].Key) + len(r.Headers[i].Value)
	}
	return n
}

// Entry is a record at its sequence number in a queue.
type Entry struct {
	Seq uint64
	Record
}

// Stats is a snapshot of a queue's gauges.
type Stats struct {
	Records  int64 // unacknowledged records, in flight included
	Bytes    int64 // their size
	Inflight int64 // records read and not yet acknowledged
	// Err says why the queue refuses appends now (disk and hybrid: a failed
	// write it has not recovered from), or is nil.
	Err error
}

// Queue is a FIFO of records for one (sink, topic, partition). Append may be
// called from many goroutines; Read, Rewind and Ack from one reader.
type Queue interface {
	// Append adds records at the tail and returns as w says; ctx bounds a
	// wait for room (overflow = "block"). It refuses them with ack.ErrFull
	// (counted as dropped), ack.ErrWriteFailed while a disk queue cannot
	// write, or ErrClosed.
	Append(ctx context.Context, w ack.Wait, recs ...Record) error
	// AppendSeq appends one record, which it copies, and returns its Seq.
	// Taking a pointer spares the per-call slice a variadic Append costs
	// through the interface (it escapes, so every publish allocated one).
	AppendSeq(ctx context.Context, w ack.Wait, rec *Record) (uint64, error)
	// LastSeq is the Seq of the last record appended (0: none yet).
	LastSeq() uint64
	// Read appends entries from the cursor to dst, at most maxBytes of them
	// but at least one, and advances the cursor.
	Read(dst []Entry, maxBytes int) ([]Entry, error)
	// Rewind moves the cursor back to the oldest unacknowledged entry.
	Rewind()
	// Ack removes every entry with Seq <= seq.
	Ack(seq uint64) error
	// Ready receives a value whenever an Append made new entries readable.
	Ready() <-chan struct{}
	// Stats reports the current gauges.
	Stats() Stats
	// Close releases the queue; a hybrid queue writes its memory part to disk.
	Close() error
}

// DropFunc counts records a queue dropped itself (overflow, expiry).
type DropFunc func(reason Reason, n int)

// Options configure one queue.
type Options struct {
	Mode     Mode
	Dir      string // disk and hybrid: the partition's directory
	Limit    int64  // per_partition_limit in bytes
	Overflow Overflow
	// BlockTimeout bounds how long Append waits for room under Block.
	BlockTimeout time.Duration
	OnDrop       DropFunc
	// Fsync is the disk and hybrid fsync policy; empty means FsyncBatch.
	Fsync Fsync
	// FsyncInterval is the fsync period under FsyncInterval; 0 means 100ms.
	FsyncInterval time.Duration
	// SegmentBytes is the target size of one segment file; 0 means 10 MB.
	SegmentBytes int64
	// MemoryLimit is how many bytes a hybrid queue keeps only in memory before
	// it spills to disk (0 means SegmentBytes); a disk queue without a
	// ReadCache uses it as a read cache of its own (0 means 1 MB).
	MemoryLimit int64
	// ReadCache, for disk queues, is the read cache budget they share.
	ReadCache *CacheBudget
	// Logger receives WAL repair and I/O reports; nil means slog.Default().
	Logger *slog.Logger
	// Committer, for disk queues, writes and syncs this queue's groups
	// together with those of the other queues sharing it; nil gives the
	// queue one of its own. Hybrid queues write when they spill.
	Committer *Committer
	// ReadCost is added to each record's Size where Read measures a
	// batch against maxBytes: what a reader spends per record besides its
	// bytes.
	ReadCost int
	// Overloaded, for memory queues, reports that system memory is short:
	// each append then sheds at least as many bytes of the oldest unread
	// records, counted as ReasonOverload (memory_overload_protection).
	Overloaded func() bool
}

// Open returns a queue of the configured mode.
func Open(opts Options) (Queue, error) {
	if opts.OnDrop == nil {
		opts.OnDrop = func(Reason, int) {}
	}
	switch opts.Mode {
	case ModeMemory, "":
		return NewMemory(opts), nil
	case ModeDisk:
		return OpenDisk(opts)
	case ModeHybrid:
		return OpenHybrid(opts)
	default:
		return nil, fmt.Errorf("buffer: mode %q is not supported", opts.Mode)
	}
}

// notify wakes ch's waiter without blocking: a wake-up already pending in
// ch's one slot covers this one too.
func notify(ch chan<- struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
