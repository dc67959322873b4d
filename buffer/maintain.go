package buffer

import (
	"syscall"
	"time"
)

const (
	// firstRetry and maxRetry bound the wait between probes of a disk that
	// failed a write.
	firstRetry = 250 * time.Millisecond
	maxRetry   = 5 * time.Second
	// probeFreeBytes is the free space a probe wants to see before the
	// queue accepts appends again after a failed write.
	probeFreeBytes = 1 << 20
)

// maintain runs the queue's slow work off the append and ack paths: removing
// acknowledged segments, saving the ack point, fsyncing under FsyncInterval,
// and probing the disk after a failed write.
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
	retryTimer := time.NewTimer(time.Hour)
	retryTimer.Stop()
	defer retryTimer.Stop()
	var ackC, retryC <-chan time.Time
	for {
		select {
		case <-d.stop:
			return
		case <-d.poke:
		case <-ackC:
			ackC = nil
		case <-retryC:
			retryC = nil
			d.probe()
		case <-tick:
			d.syncDirty()
		}
		if retryC == nil {
			if wait := d.retryWait(); wait > 0 {
				retryTimer.Reset(wait)
				retryC = retryTimer.C
			}
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

// retryWait is how long to wait before the next probe of a failed disk, 0
// when the queue is not refusing appends; each wait doubles, up to maxRetry.
func (d *Disk) retryWait() time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.err == nil || d.closed {
		return 0
	}
	d.backoff = min(max(2*d.backoff, firstRetry), maxRetry)
	return d.backoff
}

// probe lets appends in again once the disk has room: the next group's
// write is the real test, and a failure refuses appends again.
func (d *Disk) probe() {
	var st syscall.Statfs_t
	if err := syscall.Statfs(d.dir, &st); err != nil {
		d.log.Warn("probing the disk after a failed write", "err", err)
		return
	}
	if free := uint64(st.Bavail) * uint64(st.Bsize); free < probeFreeBytes {
		return
	}
	d.mu.Lock()
	if d.err != nil {
		d.log.Info("the disk has room again; accepting appends", "cause", d.err)
		d.err = nil
	}
	d.mu.Unlock()
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
	err := d.seg.sync()
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

// truncate removes the segments whose entries are all acknowledged. The
// ack point on disk may lag: a restart then starts at the log's first entry.
func (d *Disk) truncate() {
	d.mu.Lock()
	acked := min(d.head-1, d.written)
	d.mu.Unlock()
	if _, err := d.seg.truncate(acked + 1); err != nil {
		d.log.Error("removing acknowledged segments", "err", err)
	}
}
