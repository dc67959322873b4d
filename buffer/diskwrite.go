package buffer

import (
	"errors"
	"fmt"
	"time"

	"github.com/mqkafka/mqkafka/ack"
)

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

// wbuf is a group's write buffer: its frames as they go to the file.
type wbuf struct {
	frames  []byte
	lens    []int32       // each frame's length, header included
	tickets []*ack.Ticket // Deferred appends, one entry per append
	orders  []uint64      // each ticket's append in the Committer's count
}

// keepBufBytes bounds the write buffer a queue keeps between groups; a
// larger one (a burst) is freed after its write, so that an idle partition
// holds little.
const keepBufBytes = 64 << 10

// maxGather bounds how long a committer waits for appenders to join a group.
const maxGather = 200 * time.Microsecond

// groupWrite is one group on its way to disk, in steps, so that a shared
// Committer can write the groups of several queues and then sync them all
// before telling any appender.
type groupWrite struct {
	d       *Disk
	g       *group
	created bool
	err     error
	failed  *group // the pending group a failed write took down with it
}

// beginLocked takes the pending group for writing; called with d.mu held, no
// write in progress and records pending.
func (d *Disk) beginLocked() groupWrite {
	g := d.pending
	d.writing = true
	d.pending = d.newGroup()
	return groupWrite{d: d, g: g, err: d.err}
}

// put hands the group to the log.
func (w *groupWrite) put() {
	if w.err == nil {
		w.created, w.err = w.d.writeFrames(w.g.first, w.g.buf)
	}
}

// sync makes the group durable under FsyncBatch.
func (w *groupWrite) sync() {
	if w.err == nil && w.d.opts.Fsync == FsyncBatch {
		w.err = w.d.syncLog(w.created)
	}
}

// end wakes the group's appenders, tells its tickets and frees its buffer.
func (w *groupWrite) end() error {
	err := w.settle()
	w.d.release(w.g.buf, err)
	if w.failed != nil {
		w.d.release(w.failed.buf, err)
	}
	return err
}

// settle ends the group and wakes the appenders waiting in the call; its
// tickets are left to be told (release). It returns the group's outcome,
// which w.err then holds.
func (w *groupWrite) settle() error {
	d, g, err := w.d, w.g, w.err
	d.mu.Lock()
	if err != nil {
		w.failed = d.failLocked(err, g)
		err = d.err
	} else {
		d.written = g.last
		if d.opts.Fsync == FsyncBatch {
			d.synced = g.last
		}
		d.recoveredLocked()
	}
	d.finishLocked(g, err)
	d.mu.Unlock()
	d.signal()
	w.err = err
	return err
}

// release tells a finished group's tickets and keeps its buffer for reuse.
func (d *Disk) release(buf *wbuf, err error) {
	for _, t := range buf.tickets {
		t.Done(err)
	}
	d.recycle(buf)
}

// recycle keeps a finished group's buffer, whose tickets were told, for reuse.
func (d *Disk) recycle(buf *wbuf) {
	clear(buf.tickets)
	buf.tickets = buf.tickets[:0]
	buf.orders = buf.orders[:0]
	buf.lens = buf.lens[:0]
	buf.frames = buf.frames[:0]
	if cap(buf.frames) > keepBufBytes {
		buf.frames, buf.lens, buf.tickets, buf.orders = nil, nil, nil, nil
	}
	d.mu.Lock()
	d.free = append(d.free, buf)
	d.mu.Unlock()
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
	g.err = err
	close(g.done)
	d.writing = false
	d.idle.Broadcast()
}

// failLocked handles a write that failed: the log holds what it held before,
// so the group's records and those of the group pending behind it were
// never accepted. Both are refused and their Seqs given back, and the queue
// refuses appends until the maintainer sees that the disk takes writes
// again. It returns the pending group it failed, if any.
func (d *Disk) failLocked(err error, g *group) *group {
	if !errors.Is(err, ack.ErrWriteFailed) {
		err = fmt.Errorf("%w: %w", ack.ErrWriteFailed, err)
	}
	d.err = err
	if !d.failing {
		d.failing = true
		d.backoff = 0
		d.log.Error("disk write failed; refusing appends until the disk takes writes again", "err", err)
	}
	// A write whose fsync failed is in the file: cut it.
	d.seg.unwrite(g.first)
	var failed *group
	if p := d.pending; p.n > 0 {
		failed = p
		d.pending = d.newGroup()
		p.err = d.err
		close(p.done)
	}
	d.rollbackLocked(g.first)
	d.pokeMaintainer()
	return failed
}

// rollbackLocked forgets the unwritten entries from Seq first on: nobody
// read them (reads stop at the written ones) and their appenders are told
// they failed, so the next append reuses their Seqs.
func (d *Disk) rollbackLocked(first uint64) {
	first = max(first, d.head)
	for d.nextSeq > first {
		d.nextSeq--
		seq := d.nextSeq
		s := *d.sizes.at(int(seq - d.head))
		if s&evictedBit == 0 {
			d.bytes -= int64(s)
			d.live--
			if d.hybrid && seq > d.queued {
				d.memBytes -= int64(s)
			}
		}
		if seq >= d.cacheFirst && d.cache.len() > 0 {
			if s&evictedBit == 0 {
				d.uncacheLocked(cacheCost(int64(s)))
			}
			d.cache.popBack()
		}
		d.sizes.popBack()
	}
	d.cacheFirst = min(d.cacheFirst, d.nextSeq)
	d.queued = min(d.queued, d.nextSeq-1)
	d.hint = min(d.hint, d.nextSeq)
}

// recoveredLocked clears the failure state after a successful write.
func (d *Disk) recoveredLocked() {
	if d.failing {
		d.failing, d.backoff = false, 0
		d.log.Info("disk writes succeed again; appends are accepted")
	}
}

func (d *Disk) newGroup() *group {
	return &group{buf: d.takeBuf(), done: make(chan struct{})}
}

func (d *Disk) takeBuf() *wbuf {
	if n := len(d.free); n > 0 {
		b := d.free[n-1]
		d.free = d.free[:n-1]
		return b
	}
	return new(wbuf)
}

// writeFrames writes a buffer of frames starting at Seq first to the log.
func (d *Disk) writeFrames(first uint64, b *wbuf) (created bool, err error) {
	created, err = d.seg.write(first, b.frames, b.lens)
	if created {
		d.mu.Lock()
		d.dirDirty = true
		d.mu.Unlock()
	}
	if err != nil {
		return created, fmt.Errorf("buffer %s: write: %w", d.dir, err)
	}
	return created, nil
}

// syncLog fsyncs the log (and the directory when a segment file was created
// since it was last synced).
func (d *Disk) syncLog(created bool) error {
	if err := d.seg.sync(); err != nil {
		return fmt.Errorf("buffer %s: fsync: %w", d.dir, err)
	}
	// Also a segment file created by an earlier write that failed: this
	// write may be the first to put entries in it.
	d.mu.Lock()
	created = created || d.dirDirty
	d.mu.Unlock()
	if created {
		if err := syncDir(d.dir); err != nil {
			return fmt.Errorf("buffer %s: fsync dir: %w", d.dir, err)
		}
		d.mu.Lock()
		d.dirDirty = false
		d.mu.Unlock()
	}
	return nil
}
