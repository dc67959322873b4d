package bench

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"
)

// progress rewrites one terminal line every second: what the run has sent,
// what arrived at the far end, and the rate of the last second.
type progress struct {
	w     io.Writer
	label string
	// counters return (sent, acknowledged, arrived); nil functions show as -.
	sent, acked, arrived func() int64

	stop context.CancelFunc
	done chan struct{}
}

// startProgress starts the line; a nil writer shows nothing.
func startProgress(ctx context.Context, w io.Writer, label string, sent, acked, arrived func() int64) *progress {
	p := &progress{w: w, label: label, sent: sent, acked: acked, arrived: arrived, done: make(chan struct{})}
	if w == nil {
		close(p.done)
		p.stop = func() {}
		return p
	}
	ctx, p.stop = context.WithCancel(ctx)
	go p.loop(ctx)
	return p
}

func (p *progress) loop(ctx context.Context) {
	defer close(p.done)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	start := time.Now()
	var lastArrived, lastSent int64
	last := start
	for {
		select {
		case <-ctx.Done():
			fmt.Fprint(p.w, "\r\033[K")
			return
		case now := <-t.C:
			sent, arrived := get(p.sent), get(p.arrived)
			dt := now.Sub(last).Seconds()
			rate := float64(arrived-lastArrived) / dt
			if p.arrived == nil {
				rate = float64(sent-lastSent) / dt
			}
			lastArrived, lastSent, last = arrived, sent, now
			var b strings.Builder
			fmt.Fprintf(&b, "\r\033[K%s  %4.0fs  sent %s", p.label, now.Sub(start).Seconds(), count(sent))
			if p.acked != nil {
				fmt.Fprintf(&b, "  acked %s", count(get(p.acked)))
			}
			if p.arrived != nil {
				fmt.Fprintf(&b, "  arrived %s", count(arrived))
			}
			fmt.Fprintf(&b, "  %s msg/s", count(int64(rate)))
			fmt.Fprint(p.w, b.String())
		}
	}
}

// end clears the line.
func (p *progress) end() {
	p.stop()
	<-p.done
}

func get(f func() int64) int64 {
	if f == nil {
		return 0
	}
	return f()
}

// count formats a count compactly: 1234567 as "1.23M".
func count(n int64) string {
	switch {
	case n >= 10_000_000:
		return fmt.Sprintf("%.1fM", float64(n)/1e6)
	case n >= 1_000_000:
		return fmt.Sprintf("%.2fM", float64(n)/1e6)
	case n >= 10_000:
		return fmt.Sprintf("%.1fk", float64(n)/1e3)
	}
	return fmt.Sprint(n)
}
