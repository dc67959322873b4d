package broker

import (
	"sync"
	"sync/atomic"
)

// refusals counts, by reason, what the broker refused from clients before
// spending work on it: connections, packets and sessions over a limit. The
// reasons are the config keys or causes users see in /metrics
// (mqkafka_broker_refused_total{reason}); refusals are rare, so a map of
// counters under a lock costs nothing on the message path.
type refusals struct {
	mu sync.Mutex
	m  map[string]*atomic.Int64
}

// counter returns reason's counter, made on first use; callers on a hot
// refusal path keep it.
func (r *refusals) counter(reason string) *atomic.Int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = map[string]*atomic.Int64{}
	}
	c, ok := r.m[reason]
	if !ok {
		c = new(atomic.Int64)
		r.m[reason] = c
	}
	return c
}

// add counts one refusal for reason.
func (r *refusals) add(reason string) { r.counter(reason).Add(1) }

// snapshot copies the counters.
func (r *refusals) snapshot() map[string]int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]int64, len(r.m))
	for k, c := range r.m {
		out[k] = c.Load()
	}
	return out
}
