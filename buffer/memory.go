package buffer

import (
	"context"
	"sync"
	"unsafe"

	"github.com/mqkafka/mqkafka/ack"
)

// slot is a queue position; evicted entries stay as tombstones until the
// acknowledged prefix passes them, because they may sit behind entries in flight.
type slot struct {
	Entry
	evicted bool
}

// Memory is a queue kept in process memory: lost on any restart, by definition.
type Memory struct {
	opts  Options
	ready chan struct{}

	mu      sync.Mutex
	slots   []slot // unacknowledged entries, oldest first, from slots[head]
	head    int
	cursor  int // index into slots of the next entry to read
	nextSeq uint64
	bytes   int64
	live    int64         // non-evicted entries
	room    chan struct{} // closed and replaced whenever room frees up
	closed  bool
}

// NewMemory returns an empty in-memory queue.
func NewMemory(opts Options) *Memory {
	if opts.OnDrop == nil {
		opts.OnDrop = func(Reason, int) {}
	}
	return &Memory{opts: opts, ready: make(chan struct{}, 1), room: make(chan struct{}), nextSeq: 1}
}

// Append implements Queue. Its records are kept once they are queued, so it
// returns then whatever w says, and never holds a ticket.
func (m *Memory) Append(ctx context.Context, _ ack.Wait, recs ...Record) error {
	_, err := m.append(ctx, recs)
	return err
}

// AppendSeq implements Queue, as Append does.
func (m *Memory) AppendSeq(ctx context.Context, _ ack.Wait, rec *Record) (uint64, error) {
	return m.append(ctx, unsafe.Slice(rec, 1))
}

// LastSeq implements Queue.
func (m *Memory) LastSeq() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.nextSeq - 1
}

func (m *Memory) append(ctx context.Context, recs []Record) (uint64, error) {
	size := int64(0)
	for i := range recs {
		size += int64(recs[i].Size())
	}
	m.mu.Lock()
	if err := m.makeRoomLocked(ctx, size, len(recs)); err != nil {
		m.mu.Unlock()
		return 0, err
	}
	for i := range recs {
		m.slots = append(m.slots, slot{Entry: Entry{Seq: m.nextSeq, Record: recs[i]}})
		m.nextSeq++
	}
	last := m.nextSeq - 1
	m.bytes += size
	m.live += int64(len(recs))
	m.mu.Unlock()
	m.signal()
	return last, nil
}

func (m *Memory) signal() { notify(m.ready) }

// makeRoomLocked sheds for memory_overload_protection, then applies the
// overflow policy; it returns with m.mu held.
func (m *Memory) makeRoomLocked(ctx context.Context, size int64, n int) error {
	if m.closed {
		return ErrClosed
	}
	if m.opts.Overloaded != nil && m.opts.Overloaded() {
		// The queue must not grow while memory is short; when nothing is
		// left to shed it is empty anyway, and the record is taken.
		m.evictLocked(size, ReasonOverload, true)
	}
	return makeRoom(ctx, &m.opts, &m.mu, m, size, n)
}

func (m *Memory) overflowUsed() int64 { return m.bytes }

func (m *Memory) overflowEvict(need int64) bool { return m.evictLocked(need, ReasonQueueFull, false) }

func (m *Memory) overflowRoom() (<-chan struct{}, error) {
	if m.closed {
		return nil, ErrClosed
	}
	return m.room, nil
}

// evictLocked drops the oldest unread entries until need bytes are freed.
// Entries in flight are never evicted; false means not enough could go, and
// then nothing is evicted unless partial is set.
func (m *Memory) evictLocked(need int64, reason Reason, partial bool) bool {
	var unread int64
	for i := m.cursor; i < len(m.slots) && unread < need; i++ {
		if !m.slots[i].evicted {
			unread += int64(m.slots[i].Size())
		}
	}
	if unread < need && !partial {
		return false
	}
	dropped := 0
	for i := m.cursor; i < len(m.slots) && need > 0; i++ {
		s := &m.slots[i]
		if s.evicted {
			continue
		}
		sz := int64(s.Size())
		need -= sz
		m.bytes -= sz
		m.live--
		s.evicted = true
		s.Record = Record{}
		dropped++
	}
	if dropped > 0 {
		m.opts.OnDrop(reason, dropped)
	}
	return need <= 0
}

// Read implements Queue.
func (m *Memory) Read(dst []Entry, maxBytes int) ([]Entry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	taken := 0
	for m.cursor < len(m.slots) {
		s := &m.slots[m.cursor]
		if !s.evicted {
			sz := s.Size() + m.opts.ReadCost
			if taken > 0 && taken+sz > maxBytes {
				break
			}
			taken += sz
			dst = append(dst, s.Entry)
		}
		m.cursor++
	}
	return dst, nil
}

// Rewind implements Queue.
func (m *Memory) Rewind() {
	m.mu.Lock()
	m.cursor = m.head
	m.mu.Unlock()
	m.signal()
}

// Ack implements Queue.
func (m *Memory) Ack(seq uint64) error {
	m.mu.Lock()
	freed := false
	for m.head < len(m.slots) {
		s := &m.slots[m.head]
		if s.Seq > seq && !s.evicted {
			break
		}
		if !s.evicted {
			m.bytes -= int64(s.Size())
			m.live--
		}
		*s = slot{}
		m.head++
		freed = true
	}
	if m.cursor < m.head {
		m.cursor = m.head
	}
	m.compactLocked()
	if freed && !m.closed {
		close(m.room)
		m.room = make(chan struct{})
	}
	m.mu.Unlock()
	return nil
}

// compactLocked reclaims the acknowledged prefix once it dominates the slice,
// so that the copy is amortised over many acknowledgements.
func (m *Memory) compactLocked() {
	if m.head == len(m.slots) {
		m.slots = m.slots[:0]
		m.cursor -= m.head
		m.head = 0
		return
	}
	if m.head < 1024 || m.head < len(m.slots)/2 {
		return
	}
	n := copy(m.slots, m.slots[m.head:])
	clear(m.slots[n:])
	m.slots = m.slots[:n]
	m.cursor -= m.head
	m.head = 0
}

// Ready implements Queue.
func (m *Memory) Ready() <-chan struct{} { return m.ready }

// Stats implements Queue.
func (m *Memory) Stats() Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	var inflight int64
	for i := m.head; i < m.cursor; i++ {
		if !m.slots[i].evicted {
			inflight++
		}
	}
	return Stats{Records: m.live, Bytes: m.bytes, Inflight: inflight}
}

// Close implements Queue.
func (m *Memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.closed {
		m.closed = true
		close(m.room)
	}
	return nil
}
