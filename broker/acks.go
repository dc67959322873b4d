package broker

import (
	"errors"
	"log/slog"
	"sync"
	"time"

	mqtt "github.com/mqkafka/mqkafka/third_party/mochi"

	"github.com/mqkafka/mqkafka/ack"
)

// ackWriteTimeout bounds a PUBACK write to a client that stopped reading;
// the connection is closed then, and the client resends what it lacks.
const ackWriteTimeout = 10 * time.Second

// flusherIdle is how long a connection's PUBACK writer waits for work before
// it ends (the next PUBACK starts another).
const flusherIdle = 2 * time.Second

// errAckFailed closes an MQTT 3.1.1 connection whose publish could not be
// written to a buffer after it was read: 3.1.1 has no negative PUBACK, and a
// reconnect makes the client resend it.
var errAckFailed = errors.New("a publish could not be written to the buffer")

// acks sends the PUBACKs of the QoS 1 publishes that rules read. mochi reads
// one packet per connection at a time, so waiting for a disk queue's fsync
// in OnPublish would let one group commit gather at most one record per
// connection, and writing the PUBACK there costs a syscall per publish;
// instead the hook returns at once, and each connection's PUBACKs are
// written, in the order the publishes came and many per write, by a
// goroutine of that connection once they are durable.
type acks struct {
	limit int           // pending PUBACKs per connection before the hook waits
	idle  time.Duration // flusherIdle
	log   *slog.Logger
	conns sync.Map // *mqtt.Client → *connAcks
	slots sync.Pool

	mu      sync.Mutex // orders starting flushers against wait
	stopped bool
	wg      sync.WaitGroup
}

// connAcks is one connection's PUBACKs in publish order.
type connAcks struct {
	a    *acks
	cl   *mqtt.Client
	v5   bool
	wake chan struct{}
	gone chan struct{}

	mu      sync.Mutex
	moved   sync.Cond // signalled whenever the head moves or a write ends
	fifo    []*ackSlot
	head    int
	seq     uint64 // of the newest slot
	popped  uint64 // slots are popped in seq order: the last one popped
	writing bool   // popped PUBACKs are being written
	dead    bool   // the connection is closed: nothing more is written
	started bool   // the flusher runs

	out []byte // owned by the flusher
}

// ackSlot is one deferred PUBACK: the publish's ticket and where it stands.
type ackSlot struct {
	t      *ack.Ticket
	c      *connAcks
	seq    uint64
	id     uint16
	done   bool // every append is durable, or failed
	failed bool
	skip   bool // the hook answered the publish itself
	held   bool // the hook is answering it: the flusher stops before it
}

func newAcks(limit int, log *slog.Logger) *acks {
	a := &acks{limit: max(limit, 1), idle: flusherIdle, log: log}
	a.slots.New = func() any {
		s := new(ackSlot)
		s.t = ack.NewTicket(func(failed bool) { s.c.complete(s, failed) })
		return s
	}
	return a
}

// conn returns cl's PUBACK queue.
func (a *acks) conn(cl *mqtt.Client) *connAcks {
	if v, ok := a.conns.Load(cl); ok {
		return v.(*connAcks)
	}
	c := &connAcks{a: a, cl: cl, v5: cl.Properties.ProtocolVersion == 5,
		wake: make(chan struct{}, 1), gone: make(chan struct{})}
	c.moved.L = &c.mu
	a.conns.Store(cl, c)
	return c
}

// behind reports whether cl has PUBACKs not yet written, so that a publish
// mochi answers itself would overtake them.
func (a *acks) behind(cl *mqtt.Client) bool {
	v, ok := a.conns.Load(cl)
	if !ok {
		return false
	}
	c := v.(*connAcks)
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.head < len(c.fifo) || c.writing
}

// drain waits until every PUBACK queued for cl is written, so that an answer
// mochi writes itself (a publish the ACL denies) keeps the publish order.
func (a *acks) drain(cl *mqtt.Client) {
	v, ok := a.conns.Load(cl)
	if !ok {
		return
	}
	c := v.(*connAcks)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.kickLocked()
	for c.head < len(c.fifo) || c.writing {
		c.moved.Wait()
	}
}

// forget stops cl's flusher once its connection is gone; PUBACKs still
// pending are not written (the client resends those publishes).
func (a *acks) forget(cl *mqtt.Client) {
	if v, ok := a.conns.LoadAndDelete(cl); ok {
		close(v.(*connAcks).gone)
	}
}

// wait returns once every flusher has stopped; none starts after it.
func (a *acks) wait() {
	a.mu.Lock()
	a.stopped = true
	a.mu.Unlock()
	a.wg.Wait()
}

// reserve queues a PUBACK for packet id, waiting while the connection has
// limit of them pending: an MQTT 3.1.1 client has no receive maximum.
func (c *connAcks) reserve(id uint16) *ackSlot {
	s := c.a.slots.Get().(*ackSlot)
	s.t.Reset()
	s.c, s.id, s.done, s.failed, s.skip, s.held = c, id, false, false, false, false
	c.mu.Lock()
	for len(c.fifo)-c.head >= c.a.limit {
		c.moved.Wait()
	}
	c.seq++
	s.seq = c.seq
	c.fifo = append(c.fifo, s)
	c.mu.Unlock()
	return s
}

// settle drops the hook's hold on s after its appends; the flusher writes
// its PUBACK once they are durable. That holds even when they already are
// (memory buffers): the read loop then goes on to the next publish at once,
// and the PUBACKs of a busy connection share one write instead of costing
// one each.
func (c *connAcks) settle(s *ackSlot) {
	if !s.t.Release() {
		return
	}
	c.mu.Lock()
	s.done, s.failed = true, s.t.Failed()
	if c.popped == s.seq-1 {
		c.kickLocked()
	}
	c.mu.Unlock()
}

// refuse drops the hook's hold on s, whose publish the hook answers itself,
// and waits until every PUBACK before it is written so the answer keeps
// the publish order.
func (c *connAcks) refuse(s *ackSlot) {
	c.mu.Lock()
	s.held = true
	c.mu.Unlock()
	done := s.t.Release()
	c.mu.Lock()
	defer c.mu.Unlock()
	s.done = s.done || done
	c.kickLocked()
	for c.popped < s.seq-1 || c.writing {
		c.moved.Wait()
	}
	if s.done {
		c.popLocked()
		c.a.slots.Put(s)
		return
	}
	// An append still holds the ticket: the flusher drops s when it reports.
	s.held, s.skip = false, true
}

// complete is the ticket's report that s's appends are written.
func (c *connAcks) complete(s *ackSlot, failed bool) {
	c.mu.Lock()
	s.done, s.failed = true, failed
	if c.popped == s.seq-1 {
		c.kickLocked()
	}
	c.mu.Unlock()
}

// kickLocked wakes the flusher, starting it if it is not running.
func (c *connAcks) kickLocked() {
	if !c.started {
		c.started = true
		c.a.mu.Lock()
		if !c.a.stopped {
			c.a.wg.Add(1)
			go c.run()
		}
		c.a.mu.Unlock()
	}
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *connAcks) popLocked() {
	c.fifo[c.head] = nil
	c.head++
	c.popped++
	if c.head == len(c.fifo) {
		c.fifo, c.head = c.fifo[:0], 0
	} else if c.head > 64 && c.head > len(c.fifo)/2 {
		n := copy(c.fifo, c.fifo[c.head:])
		clear(c.fifo[n:])
		c.fifo, c.head = c.fifo[:n], 0
	}
	c.moved.Broadcast()
}

// run writes the connection's PUBACKs as they become durable, many per
// write. It ends when the connection does, or after flusherIdle without
// work, so that idle connections hold no goroutine of ours.
func (c *connAcks) run() {
	defer c.a.wg.Done()
	idle := time.NewTimer(c.a.idle)
	defer idle.Stop()
	for {
		select {
		case <-c.gone:
			return
		case <-c.wake:
			for c.flush() {
			}
			idle.Reset(c.a.idle)
		case <-idle.C:
			c.mu.Lock()
			if len(c.wake) == 0 {
				c.started = false
				c.mu.Unlock()
				return
			}
			c.mu.Unlock()
			idle.Reset(c.a.idle)
		}
	}
}

// flush writes the durable prefix of the queue and reports whether it wrote.
func (c *connAcks) flush() bool {
	out, n, stop := c.out[:0], 0, false
	c.mu.Lock()
	for c.head < len(c.fifo) && c.fifo[c.head].done && !c.fifo[c.head].held {
		s := c.fifo[c.head]
		if s.failed && !s.skip && !c.v5 && !c.dead {
			c.dead, stop = true, true
		}
		switch {
		case s.skip || c.dead:
		case s.failed:
			// MQTT 5 PUBACK with reason 0x80, unspecified error.
			out = append(out, 0x40, 3, byte(s.id>>8), byte(s.id), 0x80)
			n++
		default:
			out = append(out, 0x40, 2, byte(s.id>>8), byte(s.id))
			n++
		}
		c.popLocked()
		c.a.slots.Put(s)
	}
	c.writing = n > 0
	c.mu.Unlock()
	c.out = out
	if n == 0 && !stop {
		return false
	}
	var err error
	if n > 0 {
		if err = c.cl.WriteEncoded(out, n, ackWriteTimeout); err != nil {
			c.a.log.Debug("writing PUBACKs; closing the connection", "client", c.cl.ID, "err", err)
			c.cl.Stop(err)
		}
	}
	if stop {
		c.a.log.Warn("closing an MQTT 3.1.1 connection: a publish could not be buffered after it was read; the client resends it",
			"client", c.cl.ID)
		c.cl.Stop(errAckFailed)
	}
	c.mu.Lock()
	c.dead = c.dead || err != nil
	c.writing = false
	c.moved.Broadcast()
	c.mu.Unlock()
	return n > 0
}
