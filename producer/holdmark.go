package producer

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"

	"github.com/mqkafka/mqkafka/buffer"
)

// moveMark is how far a disk or hybrid topic's holding queue has been moved
// into its partitions: the Seq of the last moved held record and a checksum
// of that record, written right after each move. The holding queue saves its
// own ack point lazily (up to 100 ms late), so without the mark a crash just
// after a move would move the same records a second time.
type moveMark struct {
	f    *os.File
	path string
	sync bool // fsync = "batch": the mark is as durable as the partition appends it follows
}

const (
	moveMarkName = "_hold.moved"
	moveMarkLen  = 1 + 8 + 4 + 4 // version, Seq, record checksum, checksum of the three
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// openMoveMark opens the topic's mark in dir and returns the Seq and record
// checksum it holds; a missing or torn mark reads as Seq 0 (nothing moved).
func openMoveMark(dir string, sync bool) (*moveMark, uint64, uint32, error) {
	path := filepath.Join(dir, moveMarkName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("holding queue mark: %w", err)
	}
	m := &moveMark{f: f, path: path, sync: sync}
	var b [moveMarkLen]byte
	if n, _ := f.ReadAt(b[:], 0); n < moveMarkLen || b[0] != 1 ||
		binary.LittleEndian.Uint32(b[13:]) != crc32.Checksum(b[:13], castagnoli) {
		return m, 0, 0, nil
	}
	return m, binary.LittleEndian.Uint64(b[1:]), binary.LittleEndian.Uint32(b[9:]), nil
}

// save records that every held record up to seq has been moved; sum is
// recordSum of the record at seq.
func (m *moveMark) save(seq uint64, sum uint32) error {
	var b [moveMarkLen]byte
	b[0] = 1
	binary.LittleEndian.PutUint64(b[1:], seq)
	binary.LittleEndian.PutUint32(b[9:], sum)
	binary.LittleEndian.PutUint32(b[13:], crc32.Checksum(b[:13], castagnoli))
	if _, err := m.f.WriteAt(b[:], 0); err != nil {
		return fmt.Errorf("saving %s: %w", m.path, err)
	}
	if m.sync {
		if err := m.f.Sync(); err != nil {
			return fmt.Errorf("saving %s: %w", m.path, err)
		}
	}
	return nil
}

func (m *moveMark) close() error { return m.f.Close() }

// recordSum identifies a held record, so that a mark is not applied to a
// different record that reuses its Seq after a crash cut the queue's tail.
func recordSum(r *buffer.Record) uint32 {
	var t [8]byte
	binary.LittleEndian.PutUint64(t[:], uint64(r.Time))
	h := crc32.Update(0, castagnoli, t[:])
	h = crc32.Update(h, castagnoli, r.Key)
	h = crc32.Update(h, castagnoli, r.Value)
	for i := range r.Headers {
		h = crc32.Update(h, castagnoli, []byte(r.Headers[i].Key))
		h = crc32.Update(h, castagnoli, r.Headers[i].Value)
	}
	return h
}
