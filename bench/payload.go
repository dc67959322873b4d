package bench

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// A payload is printable so that it passes any template, topic filter or
// JSON path untouched: 8 hex digits of run tag, 16 of message id, 16 of send
// time (Unix ns), then '.' up to the message size. Fixed width keeps
// decoding a few shifts, with no allocation on either side.
const (
	tagLen      = 8
	idLen       = 16
	tsLen       = 16
	headerLen   = tagLen + idLen + tsLen
	minSize     = headerLen
	paddingByte = '.'
)

const hexDigits = "0123456789abcdef"

// fillPayload writes a complete payload of len(b) bytes.
func fillPayload(b []byte, tag uint32, id uint64, sentNs int64) {
	putHex(b[:tagLen], uint64(tag))
	putHex(b[tagLen:tagLen+idLen], id)
	putHex(b[tagLen+idLen:headerLen], uint64(sentNs))
	for i := headerLen; i < len(b); i++ {
		b[i] = paddingByte
	}
}

// stampPayload rewrites only the id and send time of a payload made by
// fillPayload: the padding stays.
func stampPayload(b []byte, id uint64, sentNs int64) {
	putHex(b[tagLen:tagLen+idLen], id)
	putHex(b[tagLen+idLen:headerLen], uint64(sentNs))
}

func putHex(dst []byte, v uint64) {
	for i := len(dst) - 1; i >= 0; i-- {
		dst[i] = hexDigits[v&0xf]
		v >>= 4
	}
}

var errNotOurs = errors.New("not a bench payload")

// parsePayload returns the tag, id and send time of a payload.
func parsePayload(b []byte) (tag uint32, id uint64, sentNs int64, err error) {
	if len(b) < headerLen {
		return 0, 0, 0, errNotOurs
	}
	t, ok1 := getHex(b[:tagLen])
	i, ok2 := getHex(b[tagLen : tagLen+idLen])
	s, ok3 := getHex(b[tagLen+idLen : headerLen])
	if !ok1 || !ok2 || !ok3 {
		return 0, 0, 0, errNotOurs
	}
	return uint32(t), i, int64(s), nil
}

func getHex(b []byte) (uint64, bool) {
	var v uint64
	for _, c := range b {
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		default:
			return 0, false
		}
		v = v<<4 | uint64(d)
	}
	return v, true
}

// idSet is a concurrent set of message ids: a lazily allocated bitmap, so
// that a run of unknown length (--duration) needs no size up front and ten
// million ids cost 1.25 MB.
type idSet struct {
	chunks [1 << 12]atomic.Pointer[[chunkWords]uint64]
}

const (
	chunkBits  = 1 << 20
	chunkWords = chunkBits / 64
	maxIDs     = uint64(len(idSet{}.chunks)) * chunkBits
)

// add sets id and reports whether it was already set.
func (s *idSet) add(id uint64) (dup bool) {
	if id >= maxIDs {
		return false
	}
	c := s.chunks[id/chunkBits].Load()
	if c == nil {
		fresh := new([chunkWords]uint64)
		if s.chunks[id/chunkBits].CompareAndSwap(nil, fresh) {
			c = fresh
		} else {
			c = s.chunks[id/chunkBits].Load()
		}
	}
	bit := id % chunkBits
	mask := uint64(1) << (bit % 64)
	return atomic.OrUint64(&c[bit/64], mask)&mask != 0
}

// has reports whether id is set.
func (s *idSet) has(id uint64) bool {
	if id >= maxIDs {
		return false
	}
	c := s.chunks[id/chunkBits].Load()
	if c == nil {
		return false
	}
	bit := id % chunkBits
	return atomic.LoadUint64(&c[bit/64])&(1<<(bit%64)) != 0
}

// missing counts the ids below n in want that are not in s.
func (s *idSet) missing(want *idSet, n uint64) int64 {
	var lost int64
	for id := uint64(0); id < n; id++ {
		if want.has(id) && !s.has(id) {
			lost++
		}
	}
	return lost
}

// Latencies are recorded in microseconds from 1 µs to 10 minutes with three
// significant digits: 0.1% resolution at any magnitude.
const (
	histMin    = 1
	histMax    = int64(10 * time.Minute / time.Microsecond)
	histDigits = 3
)

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(histMin, histMax, histDigits) }

func recordLatency(h *hdrhistogram.Histogram, d time.Duration) {
	us := int64(d / time.Microsecond)
	_ = h.RecordValue(min(max(us, histMin), histMax))
}

// hists merges the per-goroutine histograms of one measurement.
type hists struct {
	mu  sync.Mutex
	all []*hdrhistogram.Histogram
}

func (h *hists) add(x *hdrhistogram.Histogram) {
	h.mu.Lock()
	h.all = append(h.all, x)
	h.mu.Unlock()
}

func (h *hists) merged() *hdrhistogram.Histogram {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := newHist()
	for _, x := range h.all {
		out.Merge(x)
	}
	return out
}
