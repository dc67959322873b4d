package buffer

import (
	"cmp"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mqkafka/mqkafka/ack"
)

// Committer writes the pending groups of several disk queues in rounds: all
// of them to their WALs, then every fsync, then every appender is told. The
// queues of one sink (its partitions) fill at the same moment, so one round
// serves them all and the filesystem's journal commits their fsyncs
// together, where each queue on its own would sync at its own time and a
// publisher whose records went to several partitions would wait for the
// slowest cycle.
type Committer struct {
	mu    sync.Mutex
	dirty []*Disk
	// appended counts the records ever added to the queues' pending groups.
	appended atomic.Uint64

	kick chan struct{}
	stop chan struct{}
	done chan struct{}
}

// NewCommitter starts a committer; Close it after the queues that use it.
func NewCommitter() *Committer {
	c := &Committer{kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go c.run()
	return c
}

// Close stops the committer.
func (c *Committer) Close() {
	close(c.stop)
	<-c.done
}

// add schedules d, whose pending group just got its first record.
func (c *Committer) add(d *Disk) {
	c.mu.Lock()
	c.dirty = append(c.dirty, d)
	c.mu.Unlock()
	notify(c.kick)
}

func (c *Committer) run() {
	defer close(c.done)
	var queues []*Disk
	var writes []groupWrite
	var told []toldTicket
	for {
		select {
		case <-c.stop:
			return
		case <-c.kick:
		}
		for {
			c.mu.Lock()
			idle := len(c.dirty) == 0
			c.mu.Unlock()
			if idle {
				break
			}
			// Queues that get their first record while the round gathers
			// join it.
			c.gather()
			c.mu.Lock()
			queues = append(queues[:0], c.dirty...)
			clear(c.dirty)
			c.dirty = c.dirty[:0]
			c.mu.Unlock()
			writes = writes[:0]
			for _, d := range queues {
				d.mu.Lock()
				// A queue being closed writes its pending group itself.
				if d.pending.n > 0 && !d.writing {
					writes = append(writes, d.beginLocked())
				}
				d.mu.Unlock()
			}
			for i := range writes {
				writes[i].put()
			}
			// Concurrent fsyncs join one journal commit; one after another,
			// each would wait for its own.
			var syncs sync.WaitGroup
			for i := 1; i < len(writes); i++ {
				syncs.Go(writes[i].sync)
			}
			if len(writes) > 0 {
				writes[0].sync()
			}
			syncs.Wait()
			told = c.tell(writes, told)
			clear(writes)
			clear(queues)
		}
	}
}

// gather lets appenders woken by the previous round join this one, for as
// long as they keep coming but not longer than maxGather: under load it
// multiplies the records per fsync, and when nobody else is runnable it
// costs one Gosched. It watches a counter rather than the queues, whose
// locks the appenders need.
func (c *Committer) gather() {
	start := time.Now()
	for seen := uint64(0); ; {
		n := c.appended.Load()
		if n == seen || time.Since(start) >= maxGather {
			return
		}
		seen = n
		runtime.Gosched()
	}
}

// toldTicket is a ticket of a round's append with the outcome to tell it.
type toldTicket struct {
	order uint64
	t     *ack.Ticket
	err   error
}

// tell ends a round's groups and tells their tickets newest append first,
// across the queues. A broker connection writes its PUBACKs in publish order
// once the oldest pending one is done: told oldest first, it would wake on
// its first record of the round and write while the rest were still being
// told (its publishes spread over the partitions), several writes where one
// does. It returns told emptied, for reuse.
func (c *Committer) tell(writes []groupWrite, told []toldTicket) []toldTicket {
	for i := range writes {
		w := &writes[i]
		err := w.settle()
		for _, g := range []*group{w.g, w.failed} {
			if g == nil {
				continue
			}
			for k, t := range g.buf.tickets {
				told = append(told, toldTicket{order: g.buf.orders[k], t: t, err: err})
			}
		}
	}
	slices.SortFunc(told, func(a, b toldTicket) int { return cmp.Compare(b.order, a.order) })
	for i := range told {
		told[i].t.Done(told[i].err)
	}
	for i := range writes {
		w := &writes[i]
		w.d.recycle(w.g.buf)
		if w.failed != nil {
			w.d.recycle(w.failed.buf)
		}
	}
	clear(told)
	return told[:0]
}
