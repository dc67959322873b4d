package buffer

import (
	"fmt"

	"github.com/mqkafka/mqkafka/ack"
)

// A hybrid queue is a disk queue whose newest entries are not yet written:
// Seqs (queued, nextSeq) live only in the read cache. When they exceed
// MemoryLimit the oldest of them are written to the log ("spilled"), and
// Close writes all of them. The log therefore always holds a prefix of the
// queue and memory the rest, so FIFO order survives a graceful restart
// without any merging. Entries read and acknowledged while still in memory
// never touch the disk; the next spill then starts a new segment at the
// first unacknowledged Seq, the log's Seqs in between being acknowledged.

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

// spillLocked writes the oldest memory-only entries to the log: down to 3/4
// of MemoryLimit (at most spillChunk), or all of them when all is set. Called
// with d.mu held and no write in progress; returns with d.mu held.
func (d *Disk) spillLocked(all bool) error {
	if d.err != nil {
		return d.err
	}
	start := max(d.queued+1, d.head)
	if start >= d.nextSeq {
		return nil
	}
	d.writing = true
	wb := d.takeBuf()
	low := d.memLimit - min(d.memLimit/4, spillChunk)
	var spilled int64
	seq := start
	for ; seq < d.nextSeq; seq++ {
		if !all && seq > start && (d.memBytes-spilled <= low || len(wb.frames) >= spillChunk) {
			break
		}
		s := *d.sizes.at(int(seq - d.head))
		if s&evictedBit != 0 {
			// Keeps the segment's Seqs contiguous, and the drop survives a restart.
			wb.frames, wb.lens = appendFrame(wb.frames, wb.lens, &Record{}, flagTombstone)
		} else {
			wb.frames, wb.lens = appendFrame(wb.frames, wb.lens, d.cache.at(int(seq-d.cacheFirst)), 0)
			spilled += int64(s)
		}
	}
	end := seq - 1
	d.memBytes -= spilled
	d.queued = end
	d.mu.Unlock()

	created, err := d.writeFrames(start, wb)
	if err == nil && d.opts.Fsync == FsyncBatch {
		err = d.syncLog(created)
	}

	d.mu.Lock()
	if err != nil {
		// The entries stay in memory; appends are refused until the disk
		// takes writes again (the memory part would outgrow its limit).
		d.seg.unwrite(start)
		d.err = fmt.Errorf("%w: %w", ack.ErrWriteFailed, err)
		if !d.failing {
			d.failing = true
			d.backoff = 0
		}
		d.pokeMaintainer()
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
		d.recoveredLocked()
		d.trimCacheLocked()
	}
	d.writing = false
	d.idle.Broadcast()
	d.mu.Unlock()
	d.release(wb, nil)
	d.mu.Lock()
	return err
}

// trimCacheLocked keeps a hybrid queue's cache within MemoryLimit by
// forgetting its oldest entries that the log already holds.
func (d *Disk) trimCacheLocked() {
	for d.cacheBytes > d.memLimit && d.cache.len() > 0 && d.cacheFirst <= d.written {
		if s := *d.sizes.at(int(d.cacheFirst - d.head)); s&evictedBit == 0 {
			d.uncacheLocked(cacheCost(int64(s)))
		}
		d.cache.popFront()
		d.cacheFirst++
	}
}
