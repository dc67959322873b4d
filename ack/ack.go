// Package ack is the contract between what acknowledges a message and the
// buffers that keep its records: when an append returns (Wait), how an
// acknowledgement sent after it learns that the records are kept (Ticket),
// and why an append refuses them.
package ack

import (
	"errors"
	"sync/atomic"
)

// ErrFull refuses records a queue had no room for (drop_new, or block after
// its timeout); they were counted as dropped.
var ErrFull = errors.New("buffer: queue full")

// ErrTooLarge refuses a record larger than its sink can send (Kafka's
// message.max.bytes); it was counted as dropped (too_large).
var ErrTooLarge = errors.New("record too large for its sink")

// ErrWriteFailed wraps the cause of a failed disk write (a full disk, an I/O
// error): a disk queue refuses records with it until it could write again.
var ErrWriteFailed = errors.New("buffer: disk write failed")

// Wait says when an append returns, against when its records are kept as
// the buffer mode promises (for disk: written and synced per the fsync
// policy). The zero Wait is InCall.
type Wait struct {
	t      *Ticket
	noWait bool
}

// InCall makes an append return once its records are kept: for a caller
// that answers the sender itself, or a reader that must see every record
// the append returned for.
func InCall() Wait { return Wait{} }

// NoWait makes an append return once its records are queued, telling
// nobody when they are kept: for records whose sender is not told (MQTT
// QoS 0).
func NoWait() Wait { return Wait{noWait: true} }

// Deferred makes an append return once its records are queued and tell t
// when they are kept, or failed to be: the acknowledgement waits, the
// caller does not, so one group commit gathers many records per publisher.
func Deferred(t *Ticket) Wait { return Wait{t: t} }

// Ticket is the ticket a Deferred append tells, or nil.
func (w Wait) Ticket() *Ticket { return w.t }

// InCall reports whether the append returns only once its records are kept.
func (w Wait) InCall() bool { return w.t == nil && !w.noWait }

// Ticket follows the Deferred appends made for one message, so that the
// message is acknowledged once every one of them is kept.
type Ticket struct {
	pending atomic.Int32
	failed  atomic.Bool
	onDone  func(failed bool)
}

// NewTicket returns a ticket whose onDone runs once every append made under
// it is kept (or failed to be), unless Release reports completion first.
func NewTicket(onDone func(failed bool)) *Ticket {
	t := &Ticket{onDone: onDone}
	t.Reset()
	return t
}

// Reset readies a finished ticket for the next message.
func (t *Ticket) Reset() {
	t.failed.Store(false)
	t.pending.Store(1)
}

// Release drops the caller's hold taken by NewTicket or Reset. It reports true
// when nothing is outstanding any more; onDone is then not called.
func (t *Ticket) Release() bool { return t.pending.Add(-1) == 0 }

// Failed reports whether an append made under the ticket failed to be kept.
func (t *Ticket) Failed() bool { return t.failed.Load() }

// Hold is a queue's note that an append under t returned before its
// records were kept; the queue calls Done once they are.
func (t *Ticket) Hold() { t.pending.Add(1) }

// Done is a queue's report, once per Hold, that the records are kept (err
// nil) or failed to be.
func (t *Ticket) Done(err error) {
	if err != nil {
		t.failed.Store(true)
	}
	if t.pending.Add(-1) == 0 {
		t.onDone(t.failed.Load())
	}
}
