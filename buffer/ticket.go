package buffer

import (
	"context"
	"sync/atomic"
)

// Ticket follows the appends made for one message under its context: a disk
// queue then returns as soon as the records are queued for the WAL instead of
// waiting for the write and fsync, and reports to the ticket when they are
// done. This lets the broker acknowledge a publish after the fsync without
// holding the connection's read loop, so one group commit gathers many
// records per connection.
type Ticket struct {
	pending atomic.Int32
	failed  atomic.Bool
	ctx     context.Context
	onDone  func(failed bool)
}

// waitKey's value in a context is a *Ticket or a waitMode.
type waitKey struct{}

type waitMode int

const (
	waitInCall waitMode = iota
	waitNot
)

// NewTicket returns a ticket whose onDone runs once every append made under
// it is written (or failed to be), unless Release reports completion first.
func NewTicket(onDone func(failed bool)) *Ticket {
	t := &Ticket{onDone: onDone}
	t.ctx = context.WithValue(context.Background(), waitKey{}, t)
	t.Reset()
	return t
}

// Reset readies a finished ticket for the next message.
func (t *Ticket) Reset() {
	t.failed.Store(false)
	t.pending.Store(1)
}

// Context is the context to append under; it never ends.
func (t *Ticket) Context() context.Context { return t.ctx }

// Release drops the caller's hold taken by NewTicket or Reset. It reports true
// when nothing is outstanding any more; onDone is then not called.
func (t *Ticket) Release() bool { return t.pending.Add(-1) == 0 }

// Failed reports whether an append made under the ticket failed to be written.
func (t *Ticket) Failed() bool { return t.failed.Load() }

func (t *Ticket) hold() { t.pending.Add(1) }

func (t *Ticket) finish(err error) {
	if err != nil {
		t.failed.Store(true)
	}
	if t.pending.Add(-1) == 0 {
		t.onDone(t.failed.Load())
	}
}

// NoWait returns a context under which disk queue appends do not wait for the
// write at all: for records whose sender is not told (MQTT QoS 0).
func NoWait(ctx context.Context) context.Context {
	return context.WithValue(ctx, waitKey{}, waitNot)
}

// WaitInCall returns a context under which appends wait in the call whatever
// ctx says: for a queue whose reader must see every record that Append
// returned for (a topic's holding queue, drained once more before it closes).
func WaitInCall(ctx context.Context) context.Context {
	return context.WithValue(ctx, waitKey{}, waitInCall)
}

// waitOf says how an append under ctx waits: for its ticket, not at all, or
// (both zero) in the call.
func waitOf(ctx context.Context) (t *Ticket, noWait bool) {
	switch v := ctx.Value(waitKey{}).(type) {
	case *Ticket:
		return v, false
	case waitMode:
		return nil, v == waitNot
	}
	return nil, false
}
