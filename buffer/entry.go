package buffer

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
)

// A log entry is
//
//	version (1 byte) | CRC32C of everything after it (4, little endian) |
//	flags (1) | enqueue time, Unix ms (8, little endian) |
//	key | value | header count (uvarint) | per header: key length (uvarint), key, value
//
// where key, value and header values are written as uvarint(len+1) followed by
// the bytes, 0 standing for nil: Kafka tells a null key or value from an empty one.
const (
	entryVersion  = 1
	entryHdrLen   = 1 + 4 + 1 + 8
	flagTombstone = 1 // a hybrid queue's evicted entry, written only to keep a segment's Seqs contiguous
)

// maxRecordSize keeps sizes in 30 bits; the top bits of a size slot are flags.
const maxRecordSize = 1<<30 - 1

// evictedBit marks a size slot whose entry was dropped by overflow (or is a tombstone).
const evictedBit = 1 << 31

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errBadEntry is a log entry that fails its checksum or does not parse.
var errBadEntry = errors.New("corrupt entry")

func appendBytes(dst, b []byte) []byte {
	if b == nil {
		return append(dst, 0)
	}
	dst = binary.AppendUvarint(dst, uint64(len(b))+1)
	return append(dst, b...)
}

// appendEntry encodes r as one WAL entry onto dst.
func appendEntry(dst []byte, r *Record, flags byte) []byte {
	start := len(dst)
	dst = append(dst, entryVersion, 0, 0, 0, 0, flags)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(r.Time))
	dst = appendBytes(dst, r.Key)
	dst = appendBytes(dst, r.Value)
	dst = binary.AppendUvarint(dst, uint64(len(r.Headers)))
	for i := range r.Headers {
		h := &r.Headers[i]
		dst = binary.AppendUvarint(dst, uint64(len(h.Key)))
		dst = append(dst, h.Key...)
		dst = appendBytes(dst, h.Value)
	}
	binary.LittleEndian.PutUint32(dst[start+1:], crc32.Checksum(dst[start+5:], castagnoli))
	return dst
}

// entryReader walks the fields of one entry.
type entryReader struct {
	b   []byte
	bad bool
}

func (r *entryReader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.bad = true
		r.b = nil
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *entryReader) take(n uint64) []byte {
	if n > uint64(len(r.b)) {
		r.bad = true
		r.b = nil
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

// field returns a nil-able byte field and whether it was nil.
func (r *entryReader) field() ([]byte, bool) {
	n := r.uvarint()
	if n == 0 {
		return nil, true
	}
	return r.take(n - 1), false
}

func checkEntry(data []byte) bool {
	return len(data) >= entryHdrLen && data[0] == entryVersion &&
		binary.LittleEndian.Uint32(data[1:]) == crc32.Checksum(data[5:], castagnoli)
}

// entryInfo returns the size an entry is charged (Record.Size) and whether it
// is a tombstone, without copying or checking the CRC.
func entryInfo(data []byte) (size int, tomb, ok bool) {
	if len(data) < entryHdrLen || data[0] != entryVersion {
		return 0, false, false
	}
	r := entryReader{b: data[entryHdrLen:]}
	k, _ := r.field()
	v, _ := r.field()
	size = entryOverhead + len(k) + len(v)
	for nh := r.uvarint(); nh > 0 && !r.bad; nh-- {
		hk := r.take(r.uvarint())
		hv, _ := r.field()
		size += len(hk) + len(hv)
	}
	return size, data[5]&flagTombstone != 0, !r.bad
}

// decodeEntry verifies and decodes an entry; the record points into data.
func decodeEntry(data []byte) (rec Record, tomb bool, err error) {
	if !checkEntry(data) {
		return Record{}, false, errBadEntry
	}
	rec.Time = int64(binary.LittleEndian.Uint64(data[6:]))
	if data[5]&flagTombstone != 0 {
		return Record{}, true, nil
	}
	r := entryReader{b: data[entryHdrLen:]}
	rec.Key, _ = r.field()
	rec.Value, _ = r.field()
	if nh := r.uvarint(); nh > 0 && !r.bad {
		if nh > uint64(len(r.b)) {
			return Record{}, false, errBadEntry
		}
		rec.Headers = make([]Header, 0, nh)
		for ; nh > 0 && !r.bad; nh-- {
			k := string(r.take(r.uvarint()))
			v, _ := r.field()
			rec.Headers = append(rec.Headers, Header{Key: k, Value: v})
		}
	}
	if r.bad {
		return Record{}, false, errBadEntry
	}
	return rec, false, nil
}

// ring is a FIFO slice whose consumed prefix is reclaimed in amortised O(1).
type ring[T any] struct {
	buf  []T
	head int
}

func (r *ring[T]) len() int    { return len(r.buf) - r.head }
func (r *ring[T]) at(i int) *T { return &r.buf[r.head+i] }
func (r *ring[T]) push(v T)    { r.buf = append(r.buf, v) }
func (r *ring[T]) popBack() {
	var zero T
	r.buf[len(r.buf)-1] = zero
	r.buf = r.buf[:len(r.buf)-1]
	if len(r.buf) == r.head {
		r.buf, r.head = r.buf[:0], 0
	}
}
func (r *ring[T]) popFront() {
	var zero T
	r.buf[r.head] = zero
	r.head++
	if r.head == len(r.buf) {
		r.buf = r.buf[:0]
		r.head = 0
		return
	}
	// Copy only once the dead prefix dominates, so each element moves O(1) times.
	if r.head >= 1024 && r.head >= len(r.buf)/2 {
		n := copy(r.buf, r.buf[r.head:])
		clear(r.buf[n:])
		r.buf = r.buf[:n]
		r.head = 0
	}
}
