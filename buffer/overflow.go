package buffer

import (
	"context"
	"sync"
	"time"

	"github.com/mqkafka/mqkafka/ack"
)

// overflowQueue is what the overflow policy needs of a queue; the queue's
// mutex is held around every call.
type overflowQueue interface {
	// overflowUsed is the bytes the queue holds now.
	overflowUsed() int64
	// overflowEvict drops the oldest unread entries to free need bytes;
	// false means not enough could go, and nothing went.
	overflowEvict(need int64) bool
	// overflowRoom is closed whenever room frees up; the error says the
	// queue takes nothing more (closed, or failed).
	overflowRoom() (<-chan struct{}, error)
}

// makeRoom applies opts' overflow policy to n records of size bytes. It is
// called and returns with mu held; under Block it releases mu while it waits.
func makeRoom(ctx context.Context, opts *Options, mu *sync.Mutex, q overflowQueue, size int64, n int) error {
	limit := opts.Limit
	if limit <= 0 || q.overflowUsed()+size <= limit {
		return nil
	}
	if size > limit {
		opts.OnDrop(ReasonTooLarge, n)
		return ack.ErrFull
	}
	switch opts.Overflow {
	case DropNew:
	case Block:
		return waitRoom(ctx, opts, mu, q, size, n)
	default:
		if q.overflowEvict(q.overflowUsed() + size - limit) {
			return nil
		}
	}
	opts.OnDrop(ReasonQueueFull, n)
	return ack.ErrFull
}

// waitRoom blocks until size bytes fit, ctx ends or BlockTimeout passes;
// then the records are refused as under DropNew.
func waitRoom(ctx context.Context, opts *Options, mu *sync.Mutex, q overflowQueue, size int64, n int) error {
	var timeout <-chan time.Time
	if opts.BlockTimeout > 0 {
		t := time.NewTimer(opts.BlockTimeout)
		defer t.Stop()
		timeout = t.C
	}
	for {
		room, err := q.overflowRoom()
		if err != nil {
			return err
		}
		if q.overflowUsed()+size <= opts.Limit {
			return nil
		}
		mu.Unlock()
		select {
		case <-room:
			mu.Lock()
		case <-ctx.Done():
			mu.Lock()
			opts.OnDrop(ReasonQueueFull, n)
			return ack.ErrFull
		case <-timeout:
			mu.Lock()
			opts.OnDrop(ReasonQueueFull, n)
			return ack.ErrFull
		}
	}
}
