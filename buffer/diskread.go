package buffer

import "fmt"

// maxReadSpan bounds one positional read: the planned entries plus the
// evicted ones between them.
const maxReadSpan = 4 << 20

// readLimitLocked is the last Seq a reader may see: a disk entry once the
// log has it, a hybrid entry at once.
func (d *Disk) readLimitLocked() uint64 {
	if d.hybrid {
		return d.nextSeq - 1
	}
	return d.written
}

// Read implements Queue. Recent entries come from the read cache; older ones
// (after a reopen, a rewind, a slow reader or when the cache budget was
// short) from the segment files, CRC-checked.
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
	seg, segNext, segEnd, ok := d.seg.locate(d.cursor)
	if !ok {
		seq := d.cursor
		d.mu.Unlock()
		d.dropCorrupt(seq, max(segEnd, seq+1), nil, 0)
		return dst, fmt.Errorf("buffer %s: entry %d: %w: %w", d.dir, seq, ErrCorrupt, errUnreadable)
	}
	// Plan a run of one segment's entries and mark it in flight before
	// letting go of the lock, so that overflow cannot evict what is read.
	plan := d.plan[:0]
	taken := 0
	for ; d.cursor <= limit && d.cursor < d.cacheFirst && d.cursor < segNext; d.cursor++ {
		s := *d.sizes.at(int(d.cursor - d.head))
		if s&evictedBit != 0 {
			continue
		}
		sz := int(s)
		if taken > 0 && (taken+sz+d.opts.ReadCost > maxBytes) {
			break
		}
		taken += sz + d.opts.ReadCost
		plan = append(plan, d.cursor)
		d.inflight++
		d.inflightBytes += int64(sz)
	}
	end := d.cursor
	d.plan = plan
	d.mu.Unlock()
	if len(plan) == 0 {
		// The cursor's segment is broken before it.
		d.dropCorrupt(end, segEnd, nil, 0)
		return dst, fmt.Errorf("buffer %s: entry %d: %w: %w", d.dir, end, ErrCorrupt, errUnreadable)
	}
	return d.readLog(dst, seg, plan, end)
}

// readLog reads the planned entries of segment seg with one positional read
// into a new buffer, which the records then point into.
func (d *Disk) readLog(dst []Entry, seg *segment, plan []uint64, end uint64) ([]Entry, error) {
	from, to, at := d.seg.span(seg, plan[0], plan[len(plan)-1])
	for to-from > maxReadSpan && len(plan) > 1 {
		// Evicted entries between the planned ones: read fewer.
		k := max(len(plan)/2, 1)
		d.unplan(plan[k:], end)
		plan, end = plan[:k], plan[k]
		from, to, at = d.seg.span(seg, plan[0], plan[k-1])
	}
	if to-from > maxReadSpan {
		// One entry among large neighbours: read only its frame.
		from, to, at = d.seg.frameOf(seg, from, to, at, plan[0])
	}
	buf, err := d.seg.readAt(seg, from, to)
	if err != nil {
		d.unplan(plan, end)
		return dst, fmt.Errorf("buffer %s: read %d: %w", d.dir, plan[0], err)
	}
	// Walk the frames from the mark, decoding the planned ones.
	o := 0
	for i, seq := range plan {
		var rec Record
		var tomb bool
		err := errBadEntry
		for ; at < seq && o+frameHdrLen <= len(buf); at++ {
			o += frameHdrLen + int(leUint32(buf[o:]))
		}
		if at == seq && o+frameHdrLen <= len(buf) {
			if n := int(leUint32(buf[o:])); n <= len(buf)-o-frameHdrLen {
				rec, tomb, err = decodeEntry(buf[o+frameHdrLen : o+frameHdrLen+n])
			}
		}
		if err == nil && tomb {
			err = errBadEntry // tombstones are never planned: the index is off
		}
		if err == nil {
			dst = append(dst, Entry{Seq: seq, Record: rec})
			continue
		}
		if i > 0 {
			// Hand out the good entries; the failure shows on the next Read.
			d.unplan(plan[i:], end)
			return dst, nil
		}
		d.dropCorrupt(seq, seq+1, plan, end)
		return dst, fmt.Errorf("buffer %s: entry %d: %w", d.dir, seq, ErrCorrupt)
	}
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
		if taken > 0 && taken+sz+d.opts.ReadCost > maxBytes {
			break
		}
		taken += sz + d.opts.ReadCost
		dst = append(dst, Entry{Seq: d.cursor, Record: *d.cache.at(int(d.cursor - d.cacheFirst))})
		d.inflight++
		d.inflightBytes += int64(sz)
	}
	return dst
}

// unplan returns the unread rest of a planned read to the unread region,
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

// dropCorrupt counts the damaged entries [seq, before) as dropped, so that
// the reader moves past them instead of failing on them forever.
func (d *Disk) dropCorrupt(seq, before uint64, plan []uint64, end uint64) {
	d.unplan(plan, end)
	d.mu.Lock()
	if plan == nil {
		d.cursor = seq
	}
	n := 0
	for s := max(seq, d.head, d.cursor); s < before && s <= d.written && s < d.nextSeq; s++ {
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
	d.log.Error("dropped corrupt log entries", "first_seq", seq, "last_seq", before-1, "records", n)
}

// dropEntryLocked marks an unread entry evicted and releases its bytes.
func (d *Disk) dropEntryLocked(seq uint64, s *uint32) {
	sz := int64(*s)
	*s = evictedBit
	d.bytes -= sz
	d.live--
	if seq >= d.cacheFirst {
		*d.cache.at(int(seq - d.cacheFirst)) = Record{}
		d.uncacheLocked(cacheCost(sz))
	}
	if d.hybrid && seq > d.queued {
		d.memBytes -= sz
	}
}

// evictLocked drops the oldest unread entries until need bytes are freed.
// Entries in flight are never evicted; false means not enough could go. The
// log keeps an evicted entry's bytes until the acknowledged prefix passes it.
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
	// them now so that the log can be cut even while nothing is acknowledged.
	if d.advanceLocked(d.head - 1) {
		d.pokeMaintainer()
	}
	return true
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
				d.uncacheLocked(cacheCost(int64(s)))
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
