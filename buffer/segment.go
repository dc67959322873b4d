package buffer

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// The log a disk queue keeps its entries in is mqkafka's own: a directory of
// segment files, each named after the Seq of its first entry
// ("%020d.seg"), holding frames
//
//	length of the entry (4 bytes, little endian) | entry (entry.go)
//
// appended with positional writes and synced by the queue. Seqs are
// contiguous within a segment; a new segment may start past the previous
// one's end (entries forgotten after a failed write, a hybrid queue's
// entries acknowledged in memory), and the Seqs in between are known to be
// acknowledged. In memory the log holds, per segment, the file offset of
// every markEvery-th entry (a read starts at the mark before its first entry
// and walks the frames from there) and one open file: the tail it appends
// to. Reads open the segment they need, so nothing else of a segment stays
// in memory.

const (
	segSuffix   = ".seg"
	frameHdrLen = 4
	// maxSegmentBytes keeps entry offsets in 32 bits (a group may overshoot).
	maxSegmentBytes = 1 << 30
	// scanBufBytes is the read buffer of a segment scan at open.
	scanBufBytes = 64 << 10
	// markEvery is how many entries share one offset in the index: a read
	// reads up to markEvery-1 entries before and after the ones it wants.
	markEvery = 16
)

// segment is one segment file: entries first .. first+n-1.
type segment struct {
	first uint64
	n     int
	marks []uint32 // file offset of entries first, first+markEvery, …
	size  int64    // bytes of complete frames
	// broken: the file holds frames past the n entries that do not parse (a
	// damaged non-tail segment); Seqs up to the next segment's first are
	// unreadable.
	broken bool
}

func (s *segment) next() uint64 { return s.first + uint64(s.n) }

// add indexes a frame of n bytes appended at the segment's end.
func (s *segment) add(n int64) {
	if s.n%markEvery == 0 {
		s.marks = append(s.marks, uint32(s.size))
	}
	s.n++
	s.size += n
}

// segLog is the set of segment files of one queue. Appends come from one
// writer at a time, reads from one reader, removals from the maintainer; mu
// guards the segment list and the tail.
type segLog struct {
	dir      string
	segBytes int64

	mu   sync.Mutex
	segs []*segment
	tail *os.File // open on segs[len(segs)-1] once written to; nil otherwise
	// tailDirty: a failed write may have left bytes past the tail's size.
	tailDirty bool
	// The last write, which unwrite takes back: its first Seq, where it
	// started in the tail and the tail's entry count before it.
	lastFirst uint64
	lastAt    int64
	lastN     int
}

// segmentPath is the file of the segment whose first entry is first.
func segmentPath(dir string, first uint64) string {
	return filepath.Join(dir, fmt.Sprintf("%020d%s", first, segSuffix))
}

// listSegments returns the first Seqs of the segment files in dir, sorted.
func listSegments(dir string) ([]uint64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var segs []uint64
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), segSuffix)
		if !ok || len(name) != 20 || e.IsDir() {
			continue
		}
		if first, err := strconv.ParseUint(name, 10, 64); err == nil {
			segs = append(segs, first)
		}
	}
	slices.Sort(segs)
	return segs, nil
}

// scanFn receives each entry of a segment at open, the Seq and its bytes
// (valid only during the call).
type scanFn func(seq uint64, data []byte)

// openSegLog loads the segment index of dir, calling fn for every entry at
// or after from. A torn or corrupt tail is cut back to its last valid entry;
// cut reports the entries the tail kept and the bytes cut.
func openSegLog(dir string, segBytes int64, from uint64, fn scanFn, cut func(path string, kept int, bytes int64)) (*segLog, error) {
	l := &segLog{dir: dir, segBytes: min(segBytes, maxSegmentBytes)}
	firsts, err := listSegments(dir)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, 0, 4<<10)
	for i, first := range firsts {
		last := i == len(firsts)-1
		s := &segment{first: first}
		path := segmentPath(dir, first)
		if len(l.segs) > 0 && first < l.segs[len(l.segs)-1].next() {
			return nil, fmt.Errorf("segment %s overlaps its predecessor", path)
		}
		fileSize, err := scanSegment(path, s, last, from, fn, &buf)
		if err != nil {
			return nil, err
		}
		if s.size < fileSize {
			if last {
				if err := os.Truncate(path, s.size); err != nil {
					return nil, err
				}
				cut(path, s.n, fileSize-s.size)
			} else {
				// Its entries past the damage are unreadable: reported as
				// such, unlike a gap between segments, which is acknowledged.
				s.broken = true
				for seq := max(s.next(), from); seq < firsts[i+1]; seq++ {
					fn(seq, nil)
				}
			}
		}
		if s.n == 0 && !s.broken {
			// Nothing to keep: an empty segment only marks where Seqs go on,
			// which the ack point and the next append say as well.
			if err := os.Remove(path); err != nil {
				return nil, err
			}
			continue
		}
		l.segs = append(l.segs, s)
	}
	return l, nil
}

// scanSegment indexes a segment file's frames into s, calling fn for the
// entries at or after from; the tail's entries are checked against their
// CRC (a damaged entry ends it), the others only parsed (Read checks them).
func scanSegment(path string, s *segment, verify bool, from uint64, fn scanFn, buf *[]byte) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	r := bufio.NewReaderSize(f, scanBufBytes)
	var hdr [frameHdrLen]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			break
		}
		n := int64(leUint32(hdr[:]))
		if n < entryHdrLen || s.size+frameHdrLen+n > fi.Size() || n > maxRecordSize+1<<20 {
			break
		}
		if int64(cap(*buf)) < n {
			*buf = make([]byte, n)
		}
		data := (*buf)[:n]
		if _, err := io.ReadFull(r, data); err != nil {
			break
		}
		if verify && !checkEntry(data) {
			break
		}
		seq := s.next()
		s.add(frameHdrLen + n)
		if seq >= from {
			fn(seq, data)
		}
	}
	if cap(*buf) > scanBufBytes {
		*buf = nil
	}
	return fi.Size(), nil
}

// next is the Seq after the newest entry on disk, or 0 when there is none.
func (l *segLog) next() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.segs) == 0 {
		return 0
	}
	return l.segs[len(l.segs)-1].next()
}

// write appends frames (the encoded entries first, first+1, …, each lens[i]
// bytes with its header) and reports whether it created a segment file,
// whose directory entry the caller must sync. A failed write is cut off the
// file, so the log holds exactly what it held before.
func (l *segLog) write(first uint64, frames []byte, lens []int32) (created bool, err error) {
	l.mu.Lock()
	var s *segment
	if n := len(l.segs); n > 0 {
		s = l.segs[n-1]
	}
	if l.tailDirty && s != nil {
		if err := l.tail.Truncate(s.size); err != nil {
			l.mu.Unlock()
			return false, fmt.Errorf("cut a failed write: %w", err)
		}
		l.tailDirty = false
	}
	if s != nil && l.tail == nil && !s.broken && s.next() == first && s.size < l.segBytes {
		// The tail segment as found at open.
		if l.tail, err = os.OpenFile(segmentPath(l.dir, s.first), os.O_RDWR, 0); err != nil {
			l.mu.Unlock()
			return false, err
		}
	}
	if s == nil || s.broken || s.next() != first || s.size >= l.segBytes {
		s, err = l.createLocked(first)
		if err != nil {
			l.mu.Unlock()
			return false, err
		}
		created = true
	}
	f, at := l.tail, s.size
	l.lastFirst = 0
	l.mu.Unlock()

	if _, err := f.WriteAt(frames, at); err != nil {
		l.mu.Lock()
		if terr := f.Truncate(at); terr != nil {
			l.tailDirty = true
		}
		l.mu.Unlock()
		return created, err
	}
	l.mu.Lock()
	l.lastFirst, l.lastAt, l.lastN = first, at, s.n
	for _, n := range lens {
		s.add(int64(n))
	}
	l.mu.Unlock()
	return created, nil
}

// unwrite takes back the last write, if it started at Seq first: a write
// whose fsync failed. A failed cut is retried before the next write.
func (l *segLog) unwrite(first uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := len(l.segs)
	if n == 0 || first != l.lastFirst || l.segs[n-1].next() <= first {
		return
	}
	s := l.segs[n-1]
	s.n, s.size = l.lastN, l.lastAt
	s.marks = s.marks[:(s.n+markEvery-1)/markEvery]
	l.lastFirst = 0
	if err := l.tail.Truncate(s.size); err != nil {
		l.tailDirty = true
	}
}

// createLocked starts a new tail segment at first.
func (l *segLog) createLocked(first uint64) (*segment, error) {
	f, err := os.OpenFile(segmentPath(l.dir, first), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return nil, err
	}
	if l.tail != nil {
		// Its last writes may not be synced yet (fsync interval or never).
		l.tail.Sync()
		l.tail.Close()
	}
	l.tail = f
	s := &segment{first: first}
	l.segs = append(l.segs, s)
	return s, nil
}

// sync makes the tail's writes durable.
func (l *segLog) sync() error {
	l.mu.Lock()
	f := l.tail
	l.mu.Unlock()
	if f == nil {
		return nil
	}
	return f.Sync()
}

// errUnreadable is a Seq whose segment is damaged before it.
var errUnreadable = errors.New("entry beyond a damaged part of its segment")

// locate returns the segment holding seq, the Seq after its entries now,
// and the Seq it ends before (for a broken segment, the next segment's
// first).
func (l *segLog) locate(seq uint64) (s *segment, next, end uint64, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	k, found := slices.BinarySearchFunc(l.segs, seq, func(s *segment, seq uint64) int {
		switch {
		case s.first > seq:
			return 1
		case s.first == seq:
			return 0
		}
		return -1
	})
	if !found {
		k--
	}
	if k < 0 {
		return nil, 0, 0, false
	}
	s = l.segs[k]
	next = s.next()
	end = next
	if s.broken && k+1 < len(l.segs) {
		end = l.segs[k+1].first
	}
	return s, next, end, seq < end
}

// span returns the file offsets [from, to) of the frames of segment s from
// the mark before Seq first to the mark after Seq last (which s must hold),
// and the Seq of the frame at from.
func (l *segLog) span(s *segment, first, last uint64) (from, to int64, at uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := (first - s.first) / markEvery
	from, at = int64(s.marks[k]), s.first+k*markEvery
	to = s.size
	if j := (last-s.first)/markEvery + 1; j < uint64(len(s.marks)) {
		to = int64(s.marks[j])
	}
	return from, to, at
}

// frameOf narrows the span [from, to) of segment s, whose frame at from is
// Seq at's, to the frame of Seq seq by reading the frame headers before it.
// Headers that do not add up leave the span as it is (the read then reports
// the damage).
func (l *segLog) frameOf(s *segment, from, to int64, at, seq uint64) (int64, int64, uint64) {
	f, err := os.Open(segmentPath(l.dir, s.first))
	if err != nil {
		return from, to, at
	}
	defer f.Close()
	var hdr [frameHdrLen]byte
	off := from
	for a := at; ; a++ {
		if _, err := f.ReadAt(hdr[:], off); err != nil {
			return from, to, at
		}
		end := off + frameHdrLen + int64(leUint32(hdr[:]))
		if end > to {
			return from, to, at
		}
		if a == seq {
			return off, end, seq
		}
		off = end
	}
}

// readAt reads segment s's bytes [from, to) into a new buffer. It opens the
// file for the read only, so that no descriptor keeps a removed segment's
// space from being freed.
func (l *segLog) readAt(s *segment, from, to int64) ([]byte, error) {
	f, err := os.Open(segmentPath(l.dir, s.first))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, to-from)
	if _, err := f.ReadAt(b, from); err != nil {
		return nil, err
	}
	return b, nil
}

// truncate removes the segments whose entries all come before seq; they
// are acknowledged, so the order of removals does not matter to a restart.
func (l *segLog) truncate(seq uint64) (removed int, err error) {
	for {
		l.mu.Lock()
		if len(l.segs) < 2 || l.segs[1].first > seq {
			l.mu.Unlock()
			return removed, nil
		}
		s := l.segs[0]
		l.mu.Unlock()
		if err := os.Remove(segmentPath(l.dir, s.first)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return removed, err
		}
		l.mu.Lock()
		l.segs = slices.Delete(l.segs, 0, 1)
		l.mu.Unlock()
		removed++
	}
}

// indexBytes is the memory of the offset index.
func (l *segLog) indexBytes() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := int64(0)
	for _, s := range l.segs {
		n += int64(cap(s.marks)) * 4
	}
	return n
}

// close closes the tail file.
func (l *segLog) close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.tail == nil {
		return nil
	}
	err := l.tail.Close()
	l.tail = nil
	return err
}
