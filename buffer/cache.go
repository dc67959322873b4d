package buffer

import (
	"encoding/binary"
	"hash/crc32"
	"sync/atomic"
)

// CacheBudget is the memory the disk queues sharing it may keep their recent
// records in, so that a reader keeping up reads from memory ([buffer]
// read_cache). Queues take from it as records are appended and give back as
// they are acknowledged; a queue that finds it exhausted empties its own
// cache, so the budget moves to the queues whose readers keep up.
type CacheBudget struct {
	limit int64
	used  atomic.Int64
}

// NewCacheBudget returns a budget of limit bytes.
func NewCacheBudget(limit int64) *CacheBudget { return &CacheBudget{limit: limit} }

// Used is the bytes taken now.
func (b *CacheBudget) Used() int64 { return b.used.Load() }

// Limit is the budget's size.
func (b *CacheBudget) Limit() int64 { return b.limit }

func (b *CacheBudget) take(n int64) bool {
	for {
		u := b.used.Load()
		if u+n > b.limit {
			return false
		}
		if b.used.CompareAndSwap(u, u+n) {
			return true
		}
	}
}

func (b *CacheBudget) give(n int64) { b.used.Add(-n) }

// Fixed memory costs of a disk queue, beyond its share of the read cache.
const (
	// queueFixedBytes is an open partition's own: the two write buffers it
	// keeps between groups, its channels and bookkeeping.
	queueFixedBytes = 2*keepBufBytes + 16<<10
	// recordIndexBytes is what each buffered record costs: its size (4
	// bytes) and a share of an offset mark, in slices that grow by doubling.
	recordIndexBytes = 2 * (4 + 1)
)

// MemoryBound is the most memory disk queues sharing a read cache of
// readCache bytes account for with partitions open holding records in all
// (what Disk.Memory sums to). Records in flight to Kafka and the groups
// being written are the producer's and the publishers' and come on top.
func MemoryBound(readCache int64, partitions int, records int64) int64 {
	return readCache + int64(partitions)*queueFixedBytes + records*recordIndexBytes
}

func crc32c(b []byte) uint32       { return crc32.Checksum(b, castagnoli) }
func leUint32(b []byte) uint32     { return binary.LittleEndian.Uint32(b) }
func leUint64(b []byte) uint64     { return binary.LittleEndian.Uint64(b) }
func putUint32(b []byte, v uint32) { binary.LittleEndian.PutUint32(b, v) }
func putUint64(b []byte, v uint64) { binary.LittleEndian.PutUint64(b, v) }
