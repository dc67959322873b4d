package buffer

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/tidwall/wal"
)

// A hybrid queue is a disk queue whose newest entries are not yet written:
// Seqs (queued, nextSeq) live only in the read cache. When they exceed
// MemoryLimit the oldest of them are written to the WAL ("spilled"), and
// Close writes all of them. The WAL therefore always holds a prefix of the
// queue and memory the rest, so FIFO order survives a graceful restart
// without any merging. Entries read and acknowledged while still in memory
// never touch the disk; when the acknowledged prefix has overtaken the WAL,
// the next write starts a fresh log at the first unacknowledged Seq
// ("rebase"), because tidwall/wal indexes must be contiguous.

// OpenHybrid opens (or creates) a hybrid queue in opts.Dir.
func OpenHybrid(opts Options) (*Disk, error) { return openDisk(opts, true) }

// appendMemoryLocked keeps recs in memory only, spilling older entries when
// the memory part is over its limit; called with d.mu held, returns with it
// released. The records are accepted even if a spill fails: they are in memory.
func (d *Disk) appendMemoryLocked(recs []Record, size int64) error {
	for i := range recs {
		d.pushLocked(&recs[i])
	}
	d.bytes += size
	d.live += int64(len(recs))
	d.memBytes += size
	if d.memBytes > d.memLimit && !d.writing {
		if err := d.spillLocked(false); err != nil {
			d.log.Error("spilling to disk", "err", err)
		}
	}
	d.trimCacheLocked()
	d.mu.Unlock()
	d.signal()
	return nil
}

// spillLocked writes the oldest memory-only entries to the WAL: down to 3/4
// of MemoryLimit (at most spillChunk), or all of them when all is set. Called
// with d.mu held and no write in progress; returns with d.mu held.
func (d *Disk) spillLocked(all bool) error {
	if d.err != nil {
		return d.err
	}
	start := max(d.queued+1, d.head)
	rebase := start > d.written+1
	if start >= d.nextSeq && !rebase {
		return nil
	}
	d.writing = true
	wb := d.takeBuf()
	low := d.memLimit - min(d.memLimit/4, spillChunk)
	var spilled int64
	chunk := 0
	seq := start
	for ; seq < d.nextSeq; seq++ {
		if !all && seq > start && (d.memBytes-spilled <= low || chunk >= spillChunk) {
			break
		}
		s := *d.sizes.at(int(seq - d.head))
		if s&evictedBit != 0 {
			// Keeps the WAL's indexes contiguous, and the drop survives a restart.
			d.enc = appendEntry(d.enc[:0], &Record{}, flagTombstone)
		} else {
			d.enc = appendEntry(d.enc[:0], d.cache.at(int(seq-d.cacheFirst)), 0)
			spilled += int64(s)
		}
		wb.b.Write(seq, d.enc)
		wb.lens = append(wb.lens, int32(len(d.enc)))
		chunk += len(d.enc)
	}
	end := seq - 1
	d.memBytes -= spilled
	d.queued = end
	if rebase {
		d.segStarts = []uint64{start}
		d.tailBytes = 0
		d.walGen++
	}
	cycled := d.mirrorLocked(start, wb.lens)
	d.mu.Unlock()

	var err error
	if rebase {
		err = d.rebase(start)
	}
	if err == nil && end >= start {
		err = d.writeBatch(&wb.b)
	}
	if err == nil && end >= start && d.opts.Fsync == FsyncBatch {
		err = d.syncLog(cycled)
	}

	d.mu.Lock()
	if err != nil {
		// The entries stay in memory; the WAL's state is unknown, so no
		// further writes until a reopen.
		d.err = err
		d.queued = d.written
		d.memBytes = 0
		for seq := max(d.written+1, d.head); seq < d.nextSeq; seq++ {
			if s := *d.sizes.at(int(seq - d.head)); s&evictedBit == 0 {
				d.memBytes += int64(s)
			}
		}
	} else {
		d.written = end
		if d.opts.Fsync == FsyncBatch {
			d.synced = end
		}
		d.trimCacheLocked()
	}
	wb.b.Clear()
	wb.lens = wb.lens[:0]
	d.free = append(d.free, wb)
	d.writing = false
	d.idle.Broadcast()
	return err
}

func (d *Disk) takeBuf() *wbuf {
	if n := len(d.free); n > 0 {
		b := d.free[n-1]
		d.free = d.free[:n-1]
		return b
	}
	return new(wbuf)
}

// rebase replaces a fully acknowledged log by an empty one whose next index
// is start. A crash in between leaves either the old files (whose entries the
// ack point skips) or a new log at 1, which the ack point's clipping handles.
func (d *Disk) rebase(start uint64) error {
	d.logMu.Lock()
	defer d.logMu.Unlock()
	if err := d.wal.Close(); err != nil && !errors.Is(err, wal.ErrClosed) {
		return fmt.Errorf("buffer %s: rebase: %w", d.dir, err)
	}
	ents, err := os.ReadDir(d.dir)
	if err != nil {
		return fmt.Errorf("buffer %s: rebase: %w", d.dir, err)
	}
	for _, e := range ents {
		if _, ok := walFileIndex(e.Name()); ok && !e.IsDir() {
			if err := os.Remove(filepath.Join(d.dir, e.Name())); err != nil {
				return fmt.Errorf("buffer %s: rebase: %w", d.dir, err)
			}
		}
	}
	f, err := os.OpenFile(segmentPath(d.dir, start), os.O_CREATE|os.O_TRUNC|os.O_WRONLY, d.walOpts.FilePerms)
	if err != nil {
		return fmt.Errorf("buffer %s: rebase: %w", d.dir, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("buffer %s: rebase: %w", d.dir, err)
	}
	if err := syncDir(d.dir); err != nil {
		return fmt.Errorf("buffer %s: rebase: %w", d.dir, err)
	}
	l, err := wal.Open(d.dir, &d.walOpts)
	if err != nil {
		return fmt.Errorf("buffer %s: rebase: %w", d.dir, err)
	}
	d.wal = l
	return nil
}
