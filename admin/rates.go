package admin

import (
	"context"
	"sync"
	"time"
)

// rateWindow is how many one-second samples are kept: a minute and one.
const rateWindow = 61

// rates samples counters once a second so that the API can show current
// rates without any work on the message path.
type rates struct {
	mu      sync.Mutex
	samples []sample // ring, newest at (next-1)
	next    int
}

type sample struct {
	at     time.Time
	values map[string]int64
}

// counterValues flattens a snapshot into the counters rates are kept for.
func counterValues(s Snapshot) map[string]int64 {
	v := map[string]int64{"broker:received": s.Broker.MessagesReceived, "broker:sent": s.Broker.MessagesSent}
	for _, k := range s.Sinks {
		v["sink:"+k.Name] = k.Counters.Success
		v["sink_matched:"+k.Name] = k.Counters.Matched
	}
	for _, src := range s.Sources {
		v["source:"+src.Name] = src.Success
	}
	for _, r := range s.Rules {
		v["rule:"+r.ID] = r.Matched
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
	if len(r.samples) < rateWindow {
		r.samples = append(r.samples, s)
		r.next = len(r.samples) % rateWindow
		return
	}
	r.samples[r.next] = s
	r.next = (r.next + 1) % rateWindow
}

// rate is the per-second rate of key over the last d, from the samples.
func (r *rates) rate(key string, d time.Duration, now sample) float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var oldest *sample
	for i := range r.samples {
		s := &r.samples[i]
		if now.at.Sub(s.at) <= d+500*time.Millisecond && (oldest == nil || s.at.Before(oldest.at)) {
			oldest = s
		}
	}
	if oldest == nil {
		return 0
	}
	secs := now.at.Sub(oldest.at).Seconds()
	if secs <= 0 {
		return 0
	}
	return float64(now.values[key]-oldest.values[key]) / secs
}

func (r *rates) rates(key, counter string, now sample) Rates {
	return Rates{Last5s: r.rate(key, 5*time.Second, now), Last1m: r.rate(key, time.Minute, now), Counter: counter}
}

// fill sets the rates of every entry of s.
func (r *rates) fill(s *Snapshot) {
	now := sample{at: s.Time, values: counterValues(*s)}
	s.Broker.ReceivedRate = r.rates("broker:received", "messages_received", now)
	s.Broker.SentRate = r.rates("broker:sent", "messages_sent", now)
	for i := range s.Sinks {
		s.Sinks[i].Rates = r.rates("sink:"+s.Sinks[i].Name, "success", now)
	}
	for i := range s.Sources {
		s.Sources[i].Rates = r.rates("source:"+s.Sources[i].Name, "success", now)
	}
	for i := range s.Rules {
		s.Rules[i].Rates = r.rates("rule:"+s.Rules[i].ID, "matched", now)
	}
}
