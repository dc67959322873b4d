package buffer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
	"unsafe"

	"github.com/mqkafka/mqkafka/ack"
)

// The disk queue in brief (one file per concern):
//
//   - segment.go: the log, mqkafka's own segment files of length-framed
//     entries, each entry with its own version byte and CRC32C (entry.go);
//     the log's Seq is the queue's Seq.
//   - disk.go: opening (a torn or corrupt tail is cut back to the last valid
//     entry; sizes are rebuilt by scanning the unacknowledged entries) and
//     appending.
//   - diskwrite.go: group commit. Appenders add their encoded records to the
//     pending group and wake the queue's Committer (its own, or the sink's,
//     see commit.go), which writes the group with one positional write and
//     (FsyncBatch) one fsync. An ack.Deferred append does not wait: the
//     committer tells its ticket instead. A failed write is cut off the
//     file and refused to its appenders; the queue refuses appends until
//     the disk takes writes again (see maintain.go).
//   - diskread.go: reads, from the read cache (recent records, within the
//     shared CacheBudget) or with positional reads of the segment files;
//     acknowledgement; overflow.
//   - ackfile.go: the ack point, kept in a small "ack" file rewritten at most
//     every ackSaveEvery and on Close, so that a restart resends at most
//     that window.
//   - maintain.go: removing acknowledged segments, saving the ack point,
//     fsync under FsyncInterval, and recovery after a failed write.
//   - oldformat.go: moving an earlier version's tidwall/wal log into
//     segment files at open.
//
// drop_oldest marks unread entries evicted in memory. Evicted entries at the
// head (nothing in flight before them) advance the ack point, so they are cut
// from disk and not resent; evicted entries behind entries in flight are
// resent after a restart (at least once; the drop was counted).

// ReasonCorrupt counts entries found damaged in the middle of a log: they
// cannot be delivered, and retrying them would block the partition forever.
const ReasonCorrupt Reason = "corrupt"

// ErrCorrupt is returned by Read for a log entry that fails its checksum.
var ErrCorrupt = errors.New("buffer: corrupt entry")

const (
	defaultSegmentBytes  = 10 << 20
	defaultFsyncInterval = 100 * time.Millisecond
	// defaultQueueCache is the read cache of a disk queue opened without a
	// shared CacheBudget or MemoryLimit.
	defaultQueueCache = 1 << 20
	// spillChunk bounds one hybrid spill write, which runs under the queue lock
	// while encoding.
	spillChunk = 4 << 20
)

// Disk is a queue kept in a log of segment files whose Seqs are the queue's.
// In hybrid mode the newest entries live only in memory until they exceed
// MemoryLimit or the queue is closed.
type Disk struct {
	opts     Options
	dir      string
	hybrid   bool
	log      *slog.Logger
	memLimit int64 // hybrid: the memory part's limit
	budget   *CacheBudget
	ready    chan struct{}
	poke     chan struct{}
	stop     chan struct{}
	own      *Committer // the queue's committer when Options gave none
	wg       sync.WaitGroup
	ackFile  *os.File
	seg      *segLog

	// Owned by the maintainer goroutine (and by Open and Close around it).
	ackSaved   uint64
	ackSavedAt time.Time

	// Owned by the reader.
	plan []uint64

	mu   sync.Mutex
	idle sync.Cond // signalled when writing turns false

	head    uint64 // oldest unacknowledged Seq
	cursor  uint64 // next Seq to read
	hint    uint64 // every entry in [cursor, hint) is evicted
	nextSeq uint64
	queued  uint64 // last Seq handed to a log write
	written uint64 // last Seq whose write returned
	synced  uint64 // last Seq known fsynced

	sizes      ring[uint32] // Record.Size per Seq from head, evictedBit when dropped
	cache      ring[Record] // records of Seqs [cacheFirst, nextSeq)
	cacheFirst uint64
	cacheBytes int64

	bytes, live, inflight, inflightBytes int64
	memBytes                             int64 // hybrid: entries not yet handed to the log

	room    chan struct{}
	closed  bool
	writing bool
	pending *group
	free    []*wbuf

	// err refuses appends after a failed write until the maintainer sees
	// the disk take writes again; backoff is the wait before its next probe.
	err      error
	failing  bool // from a failed write to the next successful one
	backoff  time.Duration
	dirDirty bool // a segment file was created since the directory was last synced
}

// OpenDisk opens (or creates) a disk queue in opts.Dir, repairing a torn tail.
func OpenDisk(opts Options) (*Disk, error) { return openDisk(opts, false) }

func openDisk(opts Options, hybrid bool) (*Disk, error) {
	if opts.Dir == "" {
		return nil, fmt.Errorf("buffer: mode %s needs a directory", opts.Mode)
	}
	if opts.OnDrop == nil {
		opts.OnDrop = func(Reason, int) {}
	}
	switch opts.Fsync {
	case "":
		opts.Fsync = FsyncBatch
	case FsyncBatch, FsyncInterval, FsyncNever:
	default:
		return nil, fmt.Errorf("buffer %s: fsync policy %q is not supported", opts.Dir, opts.Fsync)
	}
	if opts.FsyncInterval <= 0 {
		opts.FsyncInterval = defaultFsyncInterval
	}
	if opts.SegmentBytes <= 0 {
		opts.SegmentBytes = defaultSegmentBytes
	}
	if opts.MemoryLimit <= 0 {
		opts.MemoryLimit = opts.SegmentBytes
		if !hybrid {
			opts.MemoryLimit = defaultQueueCache
		}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	d := &Disk{
		opts:     opts,
		dir:      opts.Dir,
		hybrid:   hybrid,
		log:      opts.Logger.With("buffer", opts.Dir),
		memLimit: opts.MemoryLimit,
		budget:   opts.ReadCache,
		ready:    make(chan struct{}, 1),
		poke:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
		room:     make(chan struct{}),
	}
	if d.budget == nil {
		d.budget = NewCacheBudget(opts.MemoryLimit)
	}
	d.idle.L = &d.mu
	if err := d.open(); err != nil {
		if d.seg != nil {
			d.seg.close()
		}
		if d.ackFile != nil {
			d.ackFile.Close()
		}
		return nil, fmt.Errorf("buffer %s: %w", d.dir, err)
	}
	d.pending = d.newGroup()
	d.wg.Add(1)
	go d.maintain()
	if !hybrid && opts.Committer == nil {
		d.own = NewCommitter()
		d.opts.Committer = d.own
	}
	return d, nil
}

func (d *Disk) open() error {
	if err := os.MkdirAll(d.dir, 0o750); err != nil {
		return err
	}
	ack, err := d.openAckFile()
	if err != nil {
		return err
	}
	if err := migrateOldFormat(d.dir, ack, d.opts.SegmentBytes, d.log); err != nil {
		return err
	}
	d.head = ack + 1
	// Entries before the log's first were acknowledged and removed (the ack
	// point is saved lazily): start at the first segment file, so that the
	// scan does not take the Seqs in between for entries.
	firsts, err := listSegments(d.dir)
	if err != nil {
		return err
	}
	if len(firsts) > 0 {
		d.head = max(d.head, firsts[0])
	}
	// The scan runs before the log's extent is known: Seqs from the ack point
	// on are pushed as they come, a gap between segments as acknowledged
	// (advanceLocked below releases a gap at the head).
	d.nextSeq = d.head
	d.seg, err = openSegLog(d.dir, d.opts.SegmentBytes, d.head, d.pushScanned, func(path string, kept int, n int64) {
		d.log.Warn("cut a torn or corrupt log tail back to the last valid entry",
			"segment", path, "kept_entries", kept, "dropped_bytes", n)
	})
	if err != nil {
		return err
	}
	next := d.seg.next()
	// Damaged segments end early: their missing entries are charged by a
	// minimum so that reading them reports the damage.
	for ; d.nextSeq < next; d.nextSeq++ {
		d.pushScanned(d.nextSeq, nil)
	}
	d.queued, d.written, d.synced = d.nextSeq-1, d.nextSeq-1, d.nextSeq-1
	d.cacheFirst = d.nextSeq
	d.cursor, d.hint = d.head, d.head
	d.advanceLocked(d.head - 1)
	if err := d.writeAck(d.head-1, false); err != nil {
		return err
	}
	return syncDir(d.dir)
}

// pushScanned records the size of entry seq found by the open scan (nil:
// unreadable); Seqs skipped since the previous one are acknowledged.
func (d *Disk) pushScanned(seq uint64, data []byte) {
	for ; d.nextSeq < seq; d.nextSeq++ {
		d.sizes.push(evictedBit)
	}
	d.nextSeq = seq + 1
	size, tomb, ok := entryOverhead, false, false
	if data != nil {
		size, tomb, ok = entryInfo(data)
		if !ok {
			// Charged by its length; Read reports it.
			size = entryOverhead + len(data)
		}
	}
	if tomb {
		d.sizes.push(evictedBit)
		return
	}
	d.sizes.push(uint32(min(size, maxRecordSize)))
	d.bytes += int64(size)
	d.live++
}

// Append implements Queue.
func (d *Disk) Append(ctx context.Context, w ack.Wait, recs ...Record) error {
	_, err := d.append(ctx, w, recs)
	return err
}

// AppendSeq implements Queue.
func (d *Disk) AppendSeq(ctx context.Context, w ack.Wait, rec *Record) (uint64, error) {
	return d.append(ctx, w, unsafe.Slice(rec, 1))
}

// LastSeq implements Queue.
func (d *Disk) LastSeq() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.nextSeq - 1
}

func (d *Disk) append(ctx context.Context, w ack.Wait, recs []Record) (uint64, error) {
	size := int64(0)
	tooLarge := false
	for i := range recs {
		s := recs[i].Size()
		tooLarge = tooLarge || s > maxRecordSize
		size += int64(s)
	}
	d.mu.Lock()
	if tooLarge && !d.closed {
		d.mu.Unlock()
		d.opts.OnDrop(ReasonTooLarge, len(recs))
		return 0, ack.ErrFull
	}
	if err := d.makeRoomLocked(ctx, size, len(recs)); err != nil {
		d.mu.Unlock()
		return 0, err
	}
	if len(recs) == 0 {
		last := d.nextSeq - 1
		d.mu.Unlock()
		return last, nil
	}
	if d.hybrid {
		last := d.nextSeq + uint64(len(recs)) - 1
		return last, d.appendMemoryLocked(recs, size)
	}
	g := d.pending
	if g.n == 0 {
		g.first = d.nextSeq
		d.opts.Committer.add(d)
	}
	for i := range recs {
		r := &recs[i]
		// Encoded straight into the group's buffer, which is what is written.
		g.buf.frames, g.buf.lens = appendFrame(g.buf.frames, g.buf.lens, r, 0)
		d.pushLocked(r)
	}
	g.n += len(recs)
	order := d.opts.Committer.appended.Add(uint64(len(recs)))
	g.last = d.nextSeq - 1
	d.queued = g.last
	d.bytes += size
	d.live += int64(len(recs))
	last := d.nextSeq - 1
	if t := w.Ticket(); t != nil {
		t.Hold()
		g.buf.tickets = append(g.buf.tickets, t)
		g.buf.orders = append(g.buf.orders, order)
	}
	d.mu.Unlock()
	if !w.InCall() {
		return last, nil
	}
	<-g.done
	return last, g.err
}

// appendFrame encodes r as one frame of a segment file onto frames.
func appendFrame(frames []byte, lens []int32, r *Record, flags byte) ([]byte, []int32) {
	start := len(frames)
	frames = append(frames, 0, 0, 0, 0)
	frames = appendEntry(frames, r, flags)
	putUint32(frames[start:], uint32(len(frames)-start-frameHdrLen))
	return frames, append(lens, int32(len(frames)-start))
}

// pushLocked assigns the next Seq to r and keeps it in the read cache if
// the budget allows; a disk queue whose record does not fit gives back its
// whole cache, so that the budget goes to the queues being read.
func (d *Disk) pushLocked(r *Record) {
	sz := int64(r.Size())
	d.sizes.push(uint32(sz))
	cached := d.hybrid || d.budget.take(cacheCost(sz))
	if !cached {
		d.dropCacheLocked()
		cached = d.budget.take(cacheCost(sz))
	}
	d.nextSeq++
	if !cached {
		d.cacheFirst = d.nextSeq
		return
	}
	d.cache.push(*r)
	d.cacheBytes += cacheCost(sz)
}

// cacheSlotBytes is what a cached record costs beyond its Size: its slot in
// the cache ring.
const cacheSlotBytes = int64(unsafe.Sizeof(Record{})) - entryOverhead

// cacheCost is what a cached record of size sz is charged.
func cacheCost(sz int64) int64 { return sz + cacheSlotBytes }

// dropCacheLocked empties a disk queue's read cache and frees its ring:
// every entry in it is in the log once written, and the reader reads no
// further than that.
func (d *Disk) dropCacheLocked() {
	d.uncacheLocked(d.cacheBytes)
	d.cache = ring[Record]{}
	d.cacheFirst = d.nextSeq
}

// uncacheLocked releases n bytes of the read cache.
func (d *Disk) uncacheLocked(n int64) {
	d.cacheBytes -= n
	if !d.hybrid {
		d.budget.give(n)
	}
}

func (d *Disk) signal() { notify(d.ready) }

func (d *Disk) pokeMaintainer() { notify(d.poke) }

// makeRoomLocked applies the overflow policy; it returns with d.mu held.
func (d *Disk) makeRoomLocked(ctx context.Context, size int64, n int) error {
	if d.closed {
		return ErrClosed
	}
	if d.err != nil {
		return d.err
	}
	return makeRoom(ctx, &d.opts, &d.mu, d, size, n)
}

func (d *Disk) overflowUsed() int64 { return d.bytes }

func (d *Disk) overflowEvict(need int64) bool { return d.evictLocked(need) }

func (d *Disk) overflowRoom() (<-chan struct{}, error) {
	if d.closed {
		return nil, ErrClosed
	}
	if d.err != nil {
		return nil, d.err
	}
	return d.room, nil
}

// Ready implements Queue.
func (d *Disk) Ready() <-chan struct{} { return d.ready }

// Stats implements Queue.
func (d *Disk) Stats() Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	return Stats{Records: d.live, Bytes: d.bytes, Inflight: d.inflight, Err: d.err}
}

// Err reports why the queue refuses appends (a failed disk write it has not
// yet recovered from), or nil.
func (d *Disk) Err() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.err
}

// Memory is the queue's own accounting of the memory it holds: the read
// cache (or, hybrid, the memory part), the per-entry index (4 bytes per
// buffered record, its size, and 4 per markEvery entries on disk, their
// file offset) and the write buffers.
func (d *Disk) Memory() int64 {
	d.mu.Lock()
	n := d.cacheBytes + int64(cap(d.sizes.buf))*4 + int64(cap(d.cache.buf)-d.cache.len())*int64(unsafe.Sizeof(Record{}))
	for _, b := range d.free {
		n += int64(cap(b.frames)) + int64(cap(b.lens))*4
	}
	if d.pending != nil && d.pending.buf != nil {
		n += int64(cap(d.pending.buf.frames)) + int64(cap(d.pending.buf.lens))*4
	}
	d.mu.Unlock()
	return n + d.seg.indexBytes()
}

// Close implements Queue: it writes what is pending (for hybrid, the memory
// part), fsyncs, saves the ack point and closes the log.
func (d *Disk) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	close(d.room)
	for d.writing {
		d.idle.Wait()
	}
	var err error
	if d.hybrid {
		if err = d.spillLocked(true); err != nil {
			d.log.Error("could not write the memory part to disk; it is lost",
				"records", d.nextSeq-max(d.queued+1, d.head), "err", err)
		}
	} else if d.pending.n > 0 {
		// Appenders whose records are queued are still waiting: write them.
		err = d.leadLocked()
		d.mu.Lock()
	}
	d.dropCacheLocked()
	d.mu.Unlock()
	close(d.stop)
	d.wg.Wait()
	if d.own != nil {
		d.own.Close()
	}
	if d.opts.Fsync != FsyncBatch {
		if serr := d.seg.sync(); serr != nil && err == nil {
			err = fmt.Errorf("buffer %s: fsync: %w", d.dir, serr)
		}
	}
	if cerr := d.seg.close(); cerr != nil && err == nil {
		err = fmt.Errorf("buffer %s: close: %w", d.dir, cerr)
	}
	d.mu.Lock()
	ack := d.head - 1
	d.mu.Unlock()
	if aerr := d.writeAck(ack, false); aerr != nil && err == nil {
		err = aerr
	}
	if cerr := d.ackFile.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("buffer %s: %w", d.dir, cerr)
	}
	if serr := syncDir(d.dir); serr != nil && err == nil {
		err = fmt.Errorf("buffer %s: %w", d.dir, serr)
	}
	return err
}

// syncDir makes file creations, renames and removals in dir durable.
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
