package bench

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// collector is the far end of a run (the Kafka consumer, or the MQTT
// subscribers): it counts distinct ids and duplicates of the run's tag and
// measures publish→arrival latency from the time in the payload.
type collector struct {
	tag      uint32
	seen     idSet
	distinct atomic.Int64
	dups     atomic.Int64
	foreign  atomic.Int64 // records of other runs (or of the warm-up)
	lastNs   atomic.Int64
	hists    hists
}

func newCollector(tag uint32) *collector { return &collector{tag: tag} }

// recorder is one goroutine's view of a collector: histograms are not safe
// for concurrent use, so each reading goroutine has its own.
type recorder struct {
	c *collector
	h *hdrhistogram.Histogram
}

func (c *collector) recorder() *recorder {
	r := &recorder{c: c, h: newHist()}
	c.hists.add(r.h)
	return r
}

func (r *recorder) record(payload []byte, nowNs int64) {
	tag, id, sent, err := parsePayload(payload)
	if err != nil || tag != r.c.tag {
		r.c.foreign.Add(1)
		return
	}
	if r.c.seen.add(id) {
		r.c.dups.Add(1)
		return
	}
	r.c.distinct.Add(1)
	storeMax(&r.c.lastNs, nowNs)
	recordLatency(r.h, time.Duration(nowNs-sent))
}

func storeMax(a *atomic.Int64, v int64) {
	for {
		old := a.Load()
		if v <= old || a.CompareAndSwap(old, v) {
			return
		}
	}
}

// waitFor waits until the collector has want distinct ids, or nothing new
// arrived for idle, or ctx ends; it reports whether all arrived.
func (c *collector) waitFor(ctx context.Context, want int64, idle time.Duration) bool {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	last, lastChange := c.distinct.Load(), time.Now()
	for {
		n := c.distinct.Load()
		if n >= want {
			return true
		}
		if n != last {
			last, lastChange = n, time.Now()
		} else if time.Since(lastChange) > idle {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
	}
}
