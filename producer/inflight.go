package producer

import (
	"context"
	"sync"
)

// inflightBudget is a sink's max_inflight_bytes: the bytes of records its
// partitions have handed to librdkafka and Kafka has not acknowledged yet,
// which librdkafka holds copies of. It is taken and given back a batch at a
// time. Waiters are served first come, first served, so a partition that
// waits is never overtaken by one that already has batches out: every
// partition keeps progressing however many share the budget.
type inflightBudget struct {
	size int64

	mu      sync.Mutex
	used    int64
	peak    int64
	waiters []*budgetWaiter // oldest first
}

type budgetWaiter struct {
	n     int64
	ready chan struct{} // closed when the bytes were granted
}

func newInflightBudget(size int64) *inflightBudget { return &inflightBudget{size: size} }

// acquire takes n bytes (at most the whole budget), waiting for them in
// turn until ctx ends.
func (b *inflightBudget) acquire(ctx context.Context, n int64) error {
	n = min(n, b.size)
	b.mu.Lock()
	if len(b.waiters) == 0 && b.used+n <= b.size {
		b.takeLocked(n)
		b.mu.Unlock()
		return nil
	}
	w := &budgetWaiter{n: n, ready: make(chan struct{})}
	b.waiters = append(b.waiters, w)
	b.mu.Unlock()
	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
	}
	b.mu.Lock()
	select {
	case <-w.ready:
		// Granted meanwhile: give it back.
		b.used -= n
	default:
		for i, o := range b.waiters {
			if o == w {
				b.waiters = append(b.waiters[:i], b.waiters[i+1:]...)
				break
			}
		}
	}
	b.grantLocked()
	b.mu.Unlock()
	return ctx.Err()
}

// release gives back n bytes taken by acquire.
func (b *inflightBudget) release(n int64) {
	if n <= 0 {
		return
	}
	b.mu.Lock()
	b.used -= n
	b.grantLocked()
	b.mu.Unlock()
}

func (b *inflightBudget) takeLocked(n int64) {
	b.used += n
	b.peak = max(b.peak, b.used)
}

// grantLocked wakes the waiters at the head of the line whose bytes fit.
func (b *inflightBudget) grantLocked() {
	for len(b.waiters) > 0 {
		w := b.waiters[0]
		if b.used+w.n > b.size {
			return
		}
		b.takeLocked(w.n)
		close(w.ready)
		b.waiters[0] = nil
		b.waiters = b.waiters[1:]
	}
}

// stats returns the bytes taken now and the most ever taken at once.
func (b *inflightBudget) stats() (used, peak int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used, b.peak
}
