package buffer

import (
	"fmt"
	"os"
	"path/filepath"
	"time"
)

const (
	// ackSaveEvery bounds how often the ack point is rewritten: a restart
	// resends at most what was acknowledged in this window.
	ackSaveEvery = 100 * time.Millisecond
	ackFileName  = "ack"
	ackFileLen   = 1 + 8 + 4
)

// openAckFile opens the ack file and returns the ack point it holds: the
// last Seq acknowledged (0 when missing or torn: everything is resent).
func (d *Disk) openAckFile() (uint64, error) {
	f, err := os.OpenFile(filepath.Join(d.dir, ackFileName), os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return 0, err
	}
	d.ackFile = f
	var b [ackFileLen]byte
	if n, _ := f.ReadAt(b[:], 0); n < ackFileLen || b[0] != 1 ||
		leUint32(b[9:]) != crc32c(b[:9]) {
		return 0, nil
	}
	return leUint64(b[1:]), nil
}

// writeAck records the ack point in place; without an fsync, since losing it
// only means resending. Lowering it is synced: Seqs above it will be reused.
// It rewrites the file's blocks in place, so it works on a full disk.
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
