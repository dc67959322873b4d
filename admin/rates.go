package admin

import (
	"context"
	"slices"
	"sync"
	"time"
)

// historyLen is how many one-second samples are kept: five minutes and one,
// so that a rate over the last minute and the dashboard's five-minute
// charts come from the same samples.
const historyLen = 301

// rates samples counters once a second so that the API can show current
// rates, and the last five minutes of them, without any work on the
// message path. Every rate the API shows comes from these samples, so all
// of them cover the same window.
type rates struct {
	mu      sync.Mutex
	samples []sample // ring, newest at (next-1)
	next    int
}

type sample struct {
	at     time.Time
	values map[string]int64
}

// counterKey names a counter in the samples: "sink:s1:success", or
// "broker:messages_received" for the one broker.
func counterKey(kind, name, counter string) string {
	if name == "" {
		return kind + ":" + counter
	}
	return kind + ":" + name + ":" + counter
}

// counterValues flattens a snapshot into the counters rates are kept for.
func counterValues(s Snapshot) map[string]int64 {
	v := map[string]int64{
		counterKey("broker", "", "messages_received"): s.Broker.MessagesReceived,
		counterKey("broker", "", "messages_sent"):     s.Broker.MessagesSent,
	}
	for _, k := range s.Sinks {
		v[counterKey("sink", k.Name, "matched")] = k.Counters.Matched
		v[counterKey("sink", k.Name, "success")] = k.Counters.Success
	}
	for _, src := range s.Sources {
		v[counterKey("source", src.Name, "received")] = src.Received
		v[counterKey("source", src.Name, "success")] = src.Success
	}
	for _, r := range s.Rules {
		v[counterKey("rule", r.ID, "matched")] = r.Matched
		v[counterKey("rule", r.ID, "passed")] = r.Passed
	}
	return v
}

func (r *rates) run(ctx context.Context, snap func() Snapshot) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		r.add(sample{at: time.Now(), values: counterValues(snap())})
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (r *rates) add(s sample) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.samples) < historyLen {
		r.samples = append(r.samples, s)
		r.next = len(r.samples) % historyLen
		return
	}
	r.samples[r.next] = s
	r.next = (r.next + 1) % historyLen
}

// ordered returns the samples oldest first.
func (r *rates) ordered() []sample {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append(slices.Clone(r.samples[r.next:]), r.samples[:r.next]...)
}

// since is the oldest sample at most d (and half a sample) before now.
func since(samples []sample, now time.Time, d time.Duration) (sample, bool) {
	for _, s := range samples {
		if now.Sub(s.at) <= d+500*time.Millisecond && s.at.Before(now) {
			return s, true
		}
	}
	return sample{}, false
}

// rate is the per-second rate of key between from and now; a counter that
// restarted (its sink or rule was replaced) has no rate across the restart.
func rate(key string, from sample, found bool, now sample) float64 {
	old, had := from.values[key]
	if !found || !had {
		return 0
	}
	return float64(max(0, now.values[key]-old)) / now.at.Sub(from.at).Seconds()
}

// fill sets the rates of every entry of s.
func (r *rates) fill(s *Snapshot) {
	samples := r.ordered()
	now := sample{at: s.Time, values: counterValues(*s)}
	s5, ok5 := since(samples, s.Time, 5*time.Second)
	m1, ok1 := since(samples, s.Time, time.Minute)
	of := func(kind, name string, counters ...string) Rates {
		out := Rates{}
		for _, c := range counters {
			key := counterKey(kind, name, c)
			out[c] = Rate{Last5s: rate(key, s5, ok5, now), Last1m: rate(key, m1, ok1, now)}
		}
		return out
	}
	s.Broker.Rates = of("broker", "", "messages_received", "messages_sent")
	for i := range s.Sinks {
		s.Sinks[i].Rates = of("sink", s.Sinks[i].Name, "matched", "success")
	}
	for i := range s.Sources {
		s.Sources[i].Rates = of("source", s.Sources[i].Name, "received", "success")
	}
	for i := range s.Rules {
		s.Rules[i].Rates = of("rule", s.Rules[i].ID, "matched", "passed")
	}
}

// History is the counters of the last five minutes, one sample a second,
// as columns: Counters[key][i] was the value at TimesMs[i], null where the
// entry did not exist then.
type History struct {
	IntervalMs int64               `json:"interval_ms"`
	TimesMs    []int64             `json:"times_unix_ms"`
	Counters   map[string][]*int64 `json:"counters"`
}

func (r *rates) history() History {
	samples := r.ordered()
	h := History{IntervalMs: time.Second.Milliseconds(), TimesMs: make([]int64, len(samples)), Counters: map[string][]*int64{}}
	for i, s := range samples {
		h.TimesMs[i] = s.at.UnixMilli()
		for k, v := range s.values {
			col, ok := h.Counters[k]
			if !ok {
				col = make([]*int64, len(samples))
				h.Counters[k] = col
			}
			col[i] = &v
		}
	}
	return h
}
