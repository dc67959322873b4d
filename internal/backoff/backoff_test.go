package backoff

import (
	"context"
	"testing"
	"time"
)

// TestBounds: each wait lies between half and all of its step, the steps
// double from Min up to Max, and Reset starts again from Min.
func TestBounds(t *testing.T) {
	b := Backoff{Min: 100 * time.Millisecond, Max: 5 * time.Second}
	steps := []time.Duration{100, 200, 400, 800, 1600, 3200, 5000, 5000}
	for round := range 2 {
		for i, ms := range steps {
			step := ms * time.Millisecond
			if d := b.Next(); d < step/2 || d > step {
				t.Fatalf("round %d wait %d: %v, want within [%v, %v]", round, i, d, step/2, step)
			}
		}
		b.Reset()
	}
}

// TestSpread: waits drawn for one step spread over the whole range, so that
// clients failing together do not retry in lockstep.
func TestSpread(t *testing.T) {
	const step = time.Second
	seen := map[time.Duration]bool{}
	lo, hi := step, time.Duration(0)
	for range 1000 {
		b := Backoff{Min: step, Max: step}
		d := b.Next()
		seen[d] = true
		lo, hi = min(lo, d), max(hi, d)
	}
	if len(seen) < 900 {
		t.Errorf("%d distinct waits of 1000", len(seen))
	}
	if lo > 6*step/10 || hi < 9*step/10 {
		t.Errorf("waits within [%v, %v], want them spread over [%v, %v]", lo, hi, step/2, step)
	}
}

func TestSleepEndsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	if !Sleep(ctx, 0) {
		t.Fatal("a live context reported ended")
	}
	cancel()
	if Sleep(ctx, time.Hour) || Sleep(ctx, 0) {
		t.Fatal("an ended context reported alive")
	}
}
