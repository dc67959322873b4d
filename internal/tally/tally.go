// Package tally holds the counters that sinks and sources share, named as
// EMQX's action and source metrics.
package tally

import (
	"sync"
	"sync/atomic"
)

// Counters are what every sink and source counts: messages that got
// through, messages that failed, and messages dropped, by reason. The zero
// value counts from zero.
type Counters[R ~string] struct {
	Success atomic.Int64
	Failed  atomic.Int64
	dropped sync.Map // R → *atomic.Int64; a reason's first drop adds it
}

// Drop counts n messages dropped for reason.
func (c *Counters[R]) Drop(reason R, n int) {
	v, ok := c.dropped.Load(reason)
	if !ok {
		v, _ = c.dropped.LoadOrStore(reason, new(atomic.Int64))
	}
	v.(*atomic.Int64).Add(int64(n))
}

// Dropped returns the drop counts by reason, omitting zeros.
func (c *Counters[R]) Dropped() map[R]int64 {
	m := map[R]int64{}
	c.dropped.Range(func(k, v any) bool {
		if n := v.(*atomic.Int64).Load(); n > 0 {
			m[k.(R)] = n
		}
		return true
	})
	return m
}

// DroppedTotal is the sum of all drops.
func (c *Counters[R]) DroppedTotal() int64 {
	var n int64
	c.dropped.Range(func(_, v any) bool {
		n += v.(*atomic.Int64).Load()
		return true
	})
	return n
}
