// Package backoff spaces out retries: a capped exponential backoff with
// jitter, and a sleep that ends with its context.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff is a capped exponential backoff with equal jitter: the nth wait is
// between half and all of Min·2ⁿ⁻¹ (at most Max), so that clients that
// failed together, such as every partition after an outage, do not retry
// together. Set Min and Max; it is not safe for concurrent use.
type Backoff struct {
	Min, Max time.Duration
	step     time.Duration // the next wait before jitter; 0: Min
}

// Next returns the next wait and doubles the one after, up to Max.
func (b *Backoff) Next() time.Duration {
	step := min(max(b.step, b.Min), b.Max)
	b.step = min(2*step, b.Max)
	half := step / 2
	return half + rand.N(step-half+1)
}

// Reset starts again from Min, after a success.
func (b *Backoff) Reset() { b.step = 0 }

// Sleep waits d, or less when ctx ends first; it reports whether ctx is
// still alive.
func Sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
