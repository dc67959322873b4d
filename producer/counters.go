package producer

import (
	"sync/atomic"

	"github.com/mqkafka/mqkafka/buffer"
)

// reasons lists every drop reason, so that counters are a fixed array and
// counting a drop is one atomic add.
var reasons = [...]buffer.Reason{
	buffer.ReasonQueueFull,
	buffer.ReasonExpired,
	buffer.ReasonTooLarge,
	buffer.ReasonUnknownTopic,
	buffer.ReasonRenderFailed,
	buffer.ReasonOverload,
	buffer.ReasonShutdown,
	buffer.ReasonCorrupt,
	buffer.ReasonKafkaError,
}

// Counters are one sink's counters, named as EMQX's action metrics.
type Counters struct {
	Matched atomic.Int64 // records handed to the sink by rules
	Success atomic.Int64 // records Kafka acknowledged
	Failed  atomic.Int64 // records that failed to enter the buffer
	Retried atomic.Int64 // records sent again after a failure or restart
	dropped [len(reasons)]atomic.Int64
}

// Drop counts n records dropped for reason.
func (c *Counters) Drop(reason buffer.Reason, n int) {
	for i, r := range reasons {
		if r == reason {
			c.dropped[i].Add(int64(n))
			return
		}
	}
	c.dropped[len(reasons)-1].Add(int64(n))
}

// Dropped returns the drop counts by reason, omitting zeros.
func (c *Counters) Dropped() map[buffer.Reason]int64 {
	m := map[buffer.Reason]int64{}
	for i, r := range reasons {
		if n := c.dropped[i].Load(); n > 0 {
			m[r] = n
		}
	}
	return m
}

// DroppedTotal is the sum of all drops.
func (c *Counters) DroppedTotal() int64 {
	var n int64
	for i := range c.dropped {
		n += c.dropped[i].Load()
	}
	return n
}
