package buffer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
	"time"

	"github.com/tidwall/wal"
)

// The disk queue in brief:
//
//   - One tidwall/wal log per queue; the WAL index is the queue Seq. Each
//     entry carries its own version byte and CRC32C (see entry.go).
//   - Group commit: appenders add their records to the pending group and
//     wake the queue's Committer (its own, or one it shares with the sink's
//     other partitions, see commit.go), which lets
//     late appenders join, then writes the group as one WriteBatch and
//     (FsyncBatch) one fsync and wakes it. An append under a Ticket does not
//     wait: the committer reports to the ticket instead (see ticket.go).
//   - Acknowledged prefixes stay on disk until they span a segment; then one
//     TruncateFront cuts them at that segment's last entry. The ack point is
//     kept in a small "ack" file, rewritten at most every ackSaveEvery and on
//     Close, so that a restart resends at most that window.
//   - drop_oldest marks unread entries evicted in memory. Evicted entries at
//     the head (nothing in flight before them) advance the ack point, so they
//     are cut from disk and not resent; evicted entries behind entries in
//     flight are resent after a restart (at least once; the drop was counted).
//   - Open cuts a torn or corrupt tail back to the last entry whose length and
//     CRC are intact, and rebuilds sizes by scanning the unacknowledged
//     entries (checksums of older segments are checked when read).

// ReasonCorrupt counts entries found damaged in the middle of a WAL: they
// cannot be delivered, and retrying them would block the partition forever.
const ReasonCorrupt Reason = "corrupt"

// ErrCorrupt is returned by Read for a WAL entry that fails its checksum.
var ErrCorrupt = errors.New("buffer: corrupt entry")

const (
	defaultSegmentBytes  = 10 << 20
	defaultFsyncInterval = 100 * time.Millisecond
	// ackSaveEvery bounds how often the ack point is rewritten: a restart
	// resends at most what was acknowledged in this window.
	ackSaveEvery = 100 * time.Millisecond
	// spillChunk bounds one hybrid spill write, which runs under the queue lock
	// while encoding.
	spillChunk  = 4 << 20
	ackFileName = "ack"
	ackFileLen  = 1 + 8 + 4
)

// Disk is a queue kept in a tidwall/wal write-ahead log whose index is the
// queue's Seq. In hybrid mode the newest entries live only in memory until
// they exceed MemoryLimit or the queue is closed.
type Disk struct {
	opts     Options
	dir      string
	hybrid   bool
	walOpts  wal.Options
	log      *slog.Logger
	segBytes int64
	memLimit int64
	ready    chan struct{}
	poke     chan struct{}
	stop     chan struct{}
	own      *Committer // the queue's committer when Options gave none
	wg       sync.WaitGroup
	ackFile  *os.File

	// logMu guards the wal handle against replacement (hybrid rebase); the
	// wal serialises its own operations.
	logMu sync.RWMutex
	wal   *wal.Log

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
	queued  uint64 // last Seq handed to a WAL write
	written uint64 // last Seq whose write returned
	synced  uint64 // last Seq known fsynced

	sizes      ring[uint32] // Record.Size per Seq from head, evictedBit when dropped
	cache      ring[Record] // records of Seqs [cacheFirst, nextSeq)
	cacheFirst uint64
	cacheBytes int64

	bytes, live, inflight, inflightBytes int64
	memBytes                             int64 // hybrid: entries not yet handed to the WAL

	room    chan struct{}
	closed  bool
	err     error // sticky write failure: the wal's state is unknown until reopen
	writing bool
	pending *group
	free    []*wbuf
	enc     []byte

	// Segment boundaries, mirrored from tidwall/wal's cycling rule so that
	// TruncateFront can cut at a segment end (cheap) instead of mid-segment.
	segStarts []uint64
	tailBytes int64
	dirDirty  bool // a segment file was created since the directory was last synced
	walGen    int  // bumped by a rebase
}

// group is one group commit: the records of every Append that arrived while
// the previous group was being written.
type group struct {
	buf   *wbuf
	n     int
	first uint64
	last  uint64
	done  chan struct{}
	err   error
}

type wbuf struct {
	b       wal.Batch
	lens    []int32
	tickets []*Ticket // appends waiting under a ticket, one entry per append
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
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	d := &Disk{
		opts:     opts,
		dir:      opts.Dir,
		hybrid:   hybrid,
		log:      opts.Logger.With("buffer", opts.Dir),
		segBytes: opts.SegmentBytes,
		memLimit: opts.MemoryLimit,
		ready:    make(chan struct{}, 1),
		poke:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
		room:     make(chan struct{}),
		walOpts: wal.Options{
			NoSync:           true, // the queue fsyncs itself, once per group
			SegmentSize:      int(opts.SegmentBytes),
			LogFormat:        wal.Binary,
			SegmentCacheSize: 1, // reads are sequential
			NoCopy:           true,
			AllowEmpty:       true,
			DirPerms:         0o750,
			FilePerms:        0o640,
		},
	}
	d.idle.L = &d.mu
	if err := d.open(); err != nil {
		if d.wal != nil {
			d.wal.Close()
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
	tail, err := d.openWAL()
	if err != nil {
		return err
	}
	first, err := d.wal.FirstIndex()
	if err != nil {
		return err
	}
	last, err := d.wal.LastIndex()
	if err != nil {
		return err
	}
	segs, err := listSegments(d.dir)
	if err != nil {
		return err
	}
	d.segStarts = segs
	d.tailBytes = int64(len(tail))

	ack, err := d.openAckFile()
	if err != nil {
		return err
	}
	// An ack point past the log's end is from entries lost in a crash (or from
	// a hybrid queue's memory part); new entries will reuse those Seqs.
	clipped := ack > last
	ack = min(ack, last)
	d.head = max(first, ack+1)
	d.nextSeq = last + 1
	d.queued, d.written, d.synced = last, last, last
	d.cacheFirst = d.nextSeq
	if err := d.scan(tail, last); err != nil {
		return err
	}
	d.advanceLocked(d.head - 1)
	d.cursor, d.hint = d.head, d.head
	if err := d.writeAck(d.head-1, clipped); err != nil {
		return err
	}
	return syncDir(d.dir)
}

// openWAL opens the log, cutting a torn or corrupt tail back to its last
// valid entry; it returns the contents of the (repaired) tail segment.
func (d *Disk) openWAL() ([]byte, error) {
	for attempt := 0; ; attempt++ {
		l, err := wal.Open(d.dir, &d.walOpts)
		if err != nil && !errors.Is(err, wal.ErrCorrupt) {
			return nil, err
		}
		if l != nil {
			d.wal = l
		}
		segs, lerr := listSegments(d.dir)
		if lerr != nil {
			return nil, lerr
		}
		if len(segs) == 0 {
			if err != nil {
				return nil, err
			}
			return nil, nil
		}
		path := segmentPath(d.dir, segs[len(segs)-1])
		tail, rerr := os.ReadFile(path)
		if rerr != nil {
			return nil, rerr
		}
		good, n := walkSegment(tail, true, nil)
		if good == len(tail) {
			if err != nil {
				return nil, err // not a tail problem
			}
			return tail, nil
		}
		if attempt > 0 {
			if err == nil {
				err = fmt.Errorf("tail segment %s still corrupt after repair", path)
			}
			return nil, err
		}
		if d.wal != nil {
			d.wal.Close()
			d.wal = nil
		}
		// Count what the cut loses, as far as the damaged bytes still parse.
		_, lost := walkSegment(tail[good:], false, nil)
		if terr := os.Truncate(path, int64(good)); terr != nil {
			return nil, terr
		}
		d.log.Warn("cut a torn or corrupt WAL tail back to the last valid entry",
			"segment", path, "kept_entries", n, "dropped_bytes", len(tail)-good,
			"dropped_entries_at_least", max(lost, 1))
	}
}

// scan rebuilds the size of every unacknowledged entry from the segment
// files; only the tail segment was checked against CRCs (Read checks the rest).
func (d *Disk) scan(tail []byte, last uint64) error {
	if d.head > last {
		return nil
	}
	var buf []byte
	for i, start := range d.segStarts {
		end := last
		if i+1 < len(d.segStarts) {
			end = d.segStarts[i+1] - 1
		}
		if end < d.head || end < start {
			continue
		}
		data := tail
		if i+1 < len(d.segStarts) {
			var err error
			buf, err = readFileInto(buf, segmentPath(d.dir, start))
			if err != nil {
				return err
			}
			data = buf
		}
		idx := start
		walkSegment(data, false, func(e []byte) {
			if idx >= d.head && idx <= end {
				size, tomb, ok := entryInfo(e)
				if !ok {
					// Charged by its length; Read reports it.
					size = entryOverhead + len(e)
				}
				d.pushScanned(size, tomb)
			}
			idx++
		})
		for ; idx <= end; idx++ {
			// A damaged non-tail segment: tidwall/wal will fail to read these.
			if idx >= d.head {
				d.pushScanned(entryOverhead, false)
			}
		}
	}
	return nil
}

func (d *Disk) pushScanned(size int, tomb bool) {
	if tomb {
		d.sizes.push(evictedBit)
		return
	}
	d.sizes.push(uint32(min(size, maxRecordSize)))
	d.bytes += int64(size)
	d.live++
}

// Append implements Queue.
func (d *Disk) Append(ctx context.Context, recs ...Record) error {
	_, err := d.AppendSeq(ctx, recs...)
	return err
}

// AppendSeq implements Queue.
func (d *Disk) AppendSeq(ctx context.Context, recs ...Record) (uint64, error) {
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
		return 0, ErrFull
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
		d.enc = appendEntry(d.enc[:0], r, 0)
		g.buf.b.Write(d.nextSeq, d.enc)
		g.buf.lens = append(g.buf.lens, int32(len(d.enc)))
		d.pushLocked(r)
	}
	g.n += len(recs)
	g.last = d.nextSeq - 1
	d.queued = g.last
	d.bytes += size
	d.live += int64(len(recs))
	d.trimCacheLocked()
	last := d.nextSeq - 1
	t, noWait := waitOf(ctx)
	if t != nil {
		t.hold()
		g.buf.tickets = append(g.buf.tickets, t)
	}
	d.mu.Unlock()
	if t != nil || noWait {
		return last, nil
	}
	<-g.done
	return last, g.err
}

// pushLocked assigns the next Seq to r and keeps it in the read cache.
func (d *Disk) pushLocked(r *Record) {
	sz := r.Size()
	d.sizes.push(uint32(sz))
	d.cache.push(*r)
	d.cacheBytes += int64(sz)
	d.nextSeq++
}

// maxGather bounds how long a committer waits for appenders to join a group.
const maxGather = 200 * time.Microsecond

// gather lets appenders woken by the previous group's fsync join the pending
// groups (n counts their records), for as long as they keep coming but not
// longer than maxGather: under load it multiplies the records per fsync, and
// when nobody else is runnable it costs one Gosched.
func gather(n func() int) {
	start := time.Now()
	for seen := 0; n() > seen && time.Since(start) < maxGather; {
		seen = n()
		runtime.Gosched()
	}
}

// groupWrite is one group on its way to disk, in steps, so that a shared
// Committer can write the groups of several queues and then sync them all
// before telling any appender.
type groupWrite struct {
	d      *Disk
	g      *group
	cycled bool
	err    error
}

// beginLocked takes the pending group for writing; called with d.mu held, no
// write in progress and records pending.
func (d *Disk) beginLocked() groupWrite {
	g := d.pending
	d.writing = true
	d.pending = d.newGroup()
	w := groupWrite{d: d, g: g, err: d.err}
	if w.err == nil {
		w.cycled = d.mirrorLocked(g.first, g.buf.lens)
	}
	return w
}

// put hands the group to the WAL.
func (w *groupWrite) put() {
	if w.err == nil {
		w.err = w.d.writeBatch(&w.g.buf.b)
	}
}

// sync makes the group durable under FsyncBatch.
func (w *groupWrite) sync() {
	if w.err == nil && w.d.opts.Fsync == FsyncBatch {
		w.err = w.d.syncLog(w.cycled)
	}
}

// end wakes the group's appenders, tells its tickets and frees its buffer.
func (w *groupWrite) end() error {
	d, g, err := w.d, w.g, w.err
	d.mu.Lock()
	buf := g.buf
	d.finishLocked(g, err)
	d.mu.Unlock()
	d.signal()
	for i, t := range buf.tickets {
		t.finish(err)
		buf.tickets[i] = nil
	}
	buf.tickets = buf.tickets[:0]
	d.mu.Lock()
	d.free = append(d.free, buf)
	d.mu.Unlock()
	return err
}

// leadLocked writes the pending group; called with d.mu held, no write in
// progress and records pending, returns with it released.
func (d *Disk) leadLocked() error {
	w := d.beginLocked()
	d.mu.Unlock()
	w.put()
	w.sync()
	return w.end()
}

// finishLocked ends g: the appenders waiting in the call are woken; those
// under a ticket are told by the caller, which then frees g's buffer.
func (d *Disk) finishLocked(g *group, err error) {
	if err != nil {
		d.failLocked(err, g.first, g.last)
	} else {
		d.written = g.last
		if d.opts.Fsync == FsyncBatch {
			d.synced = g.last
		}
		d.trimCacheLocked()
	}
	g.err = err
	close(g.done)
	g.buf.b.Clear()
	g.buf.lens = g.buf.lens[:0]
	g.buf = nil
	d.writing = false
	d.idle.Broadcast()
}

// failLocked makes a write failure sticky and forgets the entries whose
// write failed: their Append returns the error, so they were never accepted.
func (d *Disk) failLocked(err error, first, last uint64) {
	if d.err == nil {
		d.err = err
		d.log.Error("WAL write failed; the queue refuses appends until reopened", "err", err)
	}
	for seq := max(first, d.head); seq <= last && seq < d.nextSeq; seq++ {
		s := d.sizes.at(int(seq - d.head))
		if *s&evictedBit != 0 {
			continue
		}
		d.dropEntryLocked(seq, s)
	}
	d.advanceLocked(d.head - 1)
}

// dropEntryLocked marks an unread entry evicted and releases its bytes.
func (d *Disk) dropEntryLocked(seq uint64, s *uint32) {
	sz := int64(*s)
	*s = evictedBit
	d.bytes -= sz
	d.live--
	if seq >= d.cacheFirst {
		*d.cache.at(int(seq - d.cacheFirst)) = Record{}
		d.cacheBytes -= sz
	}
	if d.hybrid && seq > d.queued {
		d.memBytes -= sz
	}
}

func (d *Disk) newGroup() *group {
	return &group{buf: d.takeBuf(), done: make(chan struct{})}
}

// writeBatch writes b to the WAL.
func (d *Disk) writeBatch(b *wal.Batch) error {
	d.logMu.RLock()
	defer d.logMu.RUnlock()
	if err := d.wal.WriteBatch(b); err != nil {
		return fmt.Errorf("buffer %s: write: %w", d.dir, err)
	}
	return nil
}

// syncLog fsyncs the WAL (and the directory when a segment file was created).
func (d *Disk) syncLog(cycled bool) error {
	d.logMu.RLock()
	defer d.logMu.RUnlock()
	if err := d.wal.Sync(); err != nil {
		return fmt.Errorf("buffer %s: fsync: %w", d.dir, err)
	}
	if cycled {
		if err := syncDir(d.dir); err != nil {
			return fmt.Errorf("buffer %s: fsync dir: %w", d.dir, err)
		}
		d.mu.Lock()
		d.dirDirty = false
		d.mu.Unlock()
	}
	return nil
}

// mirrorLocked replays tidwall/wal's writeBatch cycling rule for a batch
// starting at first and reports whether it created a segment file.
func (d *Disk) mirrorLocked(first uint64, lens []int32) bool {
	cycled := false
	if d.tailBytes > d.segBytes {
		d.segStarts = append(d.segStarts, first)
		d.tailBytes = 0
		cycled = true
	}
	for i, n := range lens {
		d.tailBytes += int64(uvarintLen(uint64(n)) + int(n))
		if d.tailBytes >= d.segBytes {
			d.segStarts = append(d.segStarts, first+uint64(i)+1)
			d.tailBytes = 0
			cycled = true
		}
	}
	if cycled {
		d.dirDirty = true
	}
	return cycled
}

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

func (d *Disk) signal() {
	select {
	case d.ready <- struct{}{}:
	default:
	}
}

func (d *Disk) pokeMaintainer() {
	select {
	case d.poke <- struct{}{}:
	default:
	}
}

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

// evictLocked drops the oldest unread entries until need bytes are freed.
// Entries in flight are never evicted; false means not enough could go. The
// WAL keeps an evicted entry's bytes until the acknowledged prefix passes it.
func (d *Disk) evictLocked(need int64) bool {
	if d.bytes-d.inflightBytes < need {
		return false
	}
	dropped := 0
	seq := max(d.cursor, d.hint)
	for ; need > 0 && seq < d.nextSeq; seq++ {
		s := d.sizes.at(int(seq - d.head))
		if *s&evictedBit != 0 {
			continue
		}
		need -= int64(*s)
		d.dropEntryLocked(seq, s)
		dropped++
	}
	d.hint = seq
	d.opts.OnDrop(ReasonQueueFull, dropped)
	// With nothing in flight the evicted entries sit at the head: release
	// them now so that the WAL can be cut even while nothing is acknowledged.
	if d.advanceLocked(d.head - 1) {
		d.pokeMaintainer()
	}
	return true
}

// readLimitLocked is the last Seq a reader may see: a disk entry once the
// WAL has it, a hybrid entry at once.
func (d *Disk) readLimitLocked() uint64 {
	if d.hybrid {
		return d.nextSeq - 1
	}
	return d.written
}

// Read implements Queue. Recent entries come from the in-memory cache; older
// ones (after a reopen, a rewind or a slow reader) from the WAL, CRC-checked.
func (d *Disk) Read(dst []Entry, maxBytes int) ([]Entry, error) {
	d.mu.Lock()
	limit := d.readLimitLocked()
	if d.cursor < d.hint {
		d.cursor = d.hint
	}
	for d.cursor <= limit && *d.sizes.at(int(d.cursor - d.head))&evictedBit != 0 {
		d.cursor++
	}
	if d.cursor > limit {
		d.mu.Unlock()
		return dst, nil
	}
	if d.cursor >= d.cacheFirst {
		dst = d.readCacheLocked(dst, maxBytes, limit)
		d.mu.Unlock()
		return dst, nil
	}
	// Plan a run of WAL entries and mark it in flight before letting go of the
	// lock, so that overflow cannot evict what is being read.
	plan := d.plan[:0]
	taken, payload := 0, 0
	for ; d.cursor <= limit && d.cursor < d.cacheFirst; d.cursor++ {
		s := *d.sizes.at(int(d.cursor - d.head))
		if s&evictedBit != 0 {
			continue
		}
		sz := int(s)
		if taken > 0 && taken+sz > maxBytes {
			break
		}
		taken += sz
		payload += sz - entryOverhead
		plan = append(plan, d.cursor)
		d.inflight++
		d.inflightBytes += int64(sz)
	}
	end := d.cursor
	d.plan = plan
	d.mu.Unlock()

	slab := make([]byte, 0, max(payload, 0))
	d.logMu.RLock()
	for i, seq := range plan {
		data, err := d.wal.Read(seq)
		segmentBad := errors.Is(err, wal.ErrCorrupt)
		var rec Record
		if err == nil {
			var tomb bool
			rec, tomb, err = decodeEntry(data, &slab)
			if err == nil && tomb {
				err = errBadEntry // tombstones are never planned: the index is off
			}
		}
		if err == nil {
			dst = append(dst, Entry{Seq: seq, Record: rec})
			continue
		}
		d.logMu.RUnlock()
		if i > 0 {
			// Hand out the good entries; the failure shows on the next Read.
			d.unplan(plan[i:], end)
			return dst, nil
		}
		if segmentBad || errors.Is(err, errBadEntry) {
			d.dropCorrupt(seq, segmentBad, plan, end)
			return dst, fmt.Errorf("buffer %s: entry %d: %w", d.dir, seq, ErrCorrupt)
		}
		d.unplan(plan, end)
		return dst, fmt.Errorf("buffer %s: read %d: %w", d.dir, seq, err)
	}
	d.logMu.RUnlock()
	return dst, nil
}

func (d *Disk) readCacheLocked(dst []Entry, maxBytes int, limit uint64) []Entry {
	taken := 0
	for ; d.cursor <= limit; d.cursor++ {
		s := *d.sizes.at(int(d.cursor - d.head))
		if s&evictedBit != 0 {
			continue
		}
		sz := int(s)
		if taken > 0 && taken+sz > maxBytes {
			break
		}
		taken += sz
		dst = append(dst, Entry{Seq: d.cursor, Record: *d.cache.at(int(d.cursor - d.cacheFirst))})
		d.inflight++
		d.inflightBytes += int64(sz)
	}
	return dst
}

// unplan returns the unread rest of a planned WAL read to the unread region,
// unless the cursor moved meanwhile (a rewind).
func (d *Disk) unplan(rest []uint64, end uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cursor != end || len(rest) == 0 {
		return
	}
	for _, seq := range rest {
		if seq >= d.head {
			d.inflight--
			d.inflightBytes -= int64(*d.sizes.at(int(seq - d.head)))
		}
	}
	d.cursor = max(rest[0], d.head)
	d.hint = d.cursor
}

// dropCorrupt counts a damaged entry (or, when tidwall/wal cannot parse its
// segment at all, the rest of that segment) as dropped, so that the reader
// moves past it instead of failing on it forever.
func (d *Disk) dropCorrupt(seq uint64, wholeSegment bool, plan []uint64, end uint64) {
	d.unplan(plan, end)
	d.mu.Lock()
	last := seq
	if wholeSegment {
		k := sort.Search(len(d.segStarts), func(i int) bool { return d.segStarts[i] > seq })
		last = d.written
		if k < len(d.segStarts) {
			last = d.segStarts[k] - 1
		}
	}
	n := 0
	for s := max(seq, d.head, d.cursor); s <= last && s < d.nextSeq; s++ {
		p := d.sizes.at(int(s - d.head))
		if *p&evictedBit == 0 {
			d.dropEntryLocked(s, p)
			n++
		}
	}
	if n > 0 {
		d.opts.OnDrop(ReasonCorrupt, n)
		d.advanceLocked(d.head - 1)
	}
	d.mu.Unlock()
	d.log.Error("dropped corrupt WAL entries", "first_seq", seq, "last_seq", last, "records", n)
}

// Rewind implements Queue.
func (d *Disk) Rewind() {
	d.mu.Lock()
	d.cursor, d.hint = d.head, d.head
	d.inflight, d.inflightBytes = 0, 0
	d.mu.Unlock()
	d.signal()
}

// Ack implements Queue.
func (d *Disk) Ack(seq uint64) error {
	d.mu.Lock()
	seq = min(seq, d.readLimitLocked())
	freed := d.advanceLocked(seq)
	d.mu.Unlock()
	if freed {
		d.pokeMaintainer()
	}
	return nil
}

// advanceLocked removes entries with Seq <= upTo and evicted entries at the
// head; it reports whether any went, and frees room for blocked appenders.
func (d *Disk) advanceLocked(upTo uint64) bool {
	freed := false
	for d.sizes.len() > 0 {
		s := *d.sizes.at(0)
		evicted := s&evictedBit != 0
		if d.head > upTo && !evicted {
			break
		}
		if !evicted {
			sz := int64(s)
			d.bytes -= sz
			d.live--
			if d.head < d.cursor {
				d.inflight--
				d.inflightBytes -= sz
			}
			if d.hybrid && d.head > d.queued {
				d.memBytes -= sz
			}
		}
		if d.head == d.cacheFirst && d.cache.len() > 0 {
			if !evicted {
				d.cacheBytes -= int64(s)
			}
			d.cache.popFront()
			d.cacheFirst++
		}
		d.sizes.popFront()
		d.head++
		freed = true
	}
	if d.cursor < d.head {
		d.cursor = d.head
	}
	if freed && !d.closed {
		close(d.room)
		d.room = make(chan struct{})
	}
	return freed
}

// trimCacheLocked keeps the read cache within MemoryLimit by forgetting its
// oldest entries that the WAL already holds.
func (d *Disk) trimCacheLocked() {
	for d.cacheBytes > d.memLimit && d.cache.len() > 0 && d.cacheFirst <= d.written {
		if s := *d.sizes.at(int(d.cacheFirst - d.head)); s&evictedBit == 0 {
			d.cacheBytes -= int64(s)
		}
		d.cache.popFront()
		d.cacheFirst++
	}
}

// Ready implements Queue.
func (d *Disk) Ready() <-chan struct{} { return d.ready }

// Stats implements Queue.
func (d *Disk) Stats() Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	return Stats{Records: d.live, Bytes: d.bytes, Inflight: d.inflight}
}

// Close implements Queue: it writes what is pending (for hybrid, the memory
// part), fsyncs, saves the ack point and closes the WAL.
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
	d.mu.Unlock()
	close(d.stop)
	d.wg.Wait()
	if d.own != nil {
		d.own.Close()
	}

	d.logMu.Lock()
	defer d.logMu.Unlock()
	if cerr := d.wal.Close(); cerr != nil && err == nil {
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

// maintain runs the queue's slow work off the append and ack paths: cutting
// the acknowledged prefix off the WAL, saving the ack point, and fsyncing
// under FsyncInterval.
func (d *Disk) maintain() {
	defer d.wg.Done()
	var tick <-chan time.Time
	if d.opts.Fsync == FsyncInterval {
		t := time.NewTicker(d.opts.FsyncInterval)
		defer t.Stop()
		tick = t.C
	}
	ackTimer := time.NewTimer(time.Hour)
	ackTimer.Stop()
	defer ackTimer.Stop()
	var ackC <-chan time.Time
	for {
		select {
		case <-d.stop:
			return
		case <-d.poke:
		case <-ackC:
			ackC = nil
		case <-tick:
			d.syncDirty()
		}
		d.truncate()
		if ackC != nil {
			continue
		}
		d.mu.Lock()
		ack := d.head - 1
		d.mu.Unlock()
		if ack == d.ackSaved {
			continue
		}
		if wait := ackSaveEvery - time.Since(d.ackSavedAt); wait > 0 {
			ackTimer.Reset(wait)
			ackC = ackTimer.C
			continue
		}
		if err := d.writeAck(ack, false); err != nil {
			d.log.Error("saving the ack point", "err", err)
		}
	}
}

func (d *Disk) syncDirty() {
	d.mu.Lock()
	w, dirty := d.written, d.dirDirty
	need := w > d.synced || dirty
	d.dirDirty = false
	d.mu.Unlock()
	if !need {
		return
	}
	d.logMu.RLock()
	err := d.wal.Sync()
	d.logMu.RUnlock()
	if err == nil && dirty {
		err = syncDir(d.dir)
	}
	if err != nil {
		d.log.Error("fsync", "err", err)
		return
	}
	d.mu.Lock()
	d.synced = max(d.synced, w)
	d.mu.Unlock()
}

// truncate drops whole acknowledged segments. It cuts at the last entry of a
// segment so that tidwall/wal rewrites one entry, not a segment; that entry
// stays on disk, already acknowledged.
func (d *Disk) truncate() {
	d.mu.Lock()
	acked := min(d.head-1, d.written)
	segs := d.segStarts
	// j: the newest segment whose predecessor is fully acknowledged.
	j := sort.Search(len(segs), func(i int) bool { return segs[i] > acked+1 }) - 1
	if j < 1 || segs[j]-1 <= segs[0] {
		d.mu.Unlock()
		return
	}
	target := segs[j] - 1
	gen := d.walGen
	d.mu.Unlock()
	// The kept entry is acknowledged: make sure a restart knows it.
	if d.ackSaved < target {
		if err := d.writeAck(acked, false); err != nil {
			d.log.Error("saving the ack point", "err", err)
		}
	}
	d.logMu.RLock()
	err := d.wal.TruncateFront(target)
	d.logMu.RUnlock()
	if err != nil {
		d.log.Error("truncating the acknowledged WAL prefix", "index", target, "err", err)
		return
	}
	d.mu.Lock()
	if gen == d.walGen {
		k := sort.Search(len(d.segStarts), func(i int) bool { return d.segStarts[i] > target }) - 1
		d.segStarts = append([]uint64{target}, d.segStarts[k+1:]...)
	}
	d.mu.Unlock()
}

func (d *Disk) openAckFile() (uint64, error) {
	f, err := os.OpenFile(filepath.Join(d.dir, ackFileName), os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return 0, err
	}
	d.ackFile = f
	var b [ackFileLen]byte
	if n, _ := f.ReadAt(b[:], 0); n < ackFileLen || b[0] != 1 ||
		leUint32(b[9:]) != crc32c(b[:9]) {
		return 0, nil // missing or torn: resend from the log's first entry
	}
	return leUint64(b[1:]), nil
}

// writeAck records the ack point in place; without an fsync, since losing it
// only means resending. Lowering it is synced: Seqs above it will be reused.
func (d *Disk) writeAck(ack uint64, lowered bool) error {
	var b [ackFileLen]byte
	b[0] = 1
	putUint64(b[1:], ack)
	putUint32(b[9:], crc32c(b[:9]))
	if _, err := d.ackFile.WriteAt(b[:], 0); err != nil {
		return fmt.Errorf("buffer %s: save ack point: %w", d.dir, err)
	}
	if lowered {
		if err := d.ackFile.Sync(); err != nil {
			return fmt.Errorf("buffer %s: save ack point: %w", d.dir, err)
		}
	}
	d.ackSaved = ack
	d.ackSavedAt = time.Now()
	return nil
}
