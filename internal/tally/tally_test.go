package tally

import (
	"maps"
	"sync"
	"testing"
)

type reason string

func TestDrops(t *testing.T) {
	var c Counters[reason]
	if c.DroppedTotal() != 0 || len(c.Dropped()) != 0 {
		t.Fatalf("zero value: %v", c.Dropped())
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				c.Drop("a", 1)
				c.Drop("b", 2)
			}
		})
	}
	wg.Wait()
	c.Drop("c", 0)
	if want := map[reason]int64{"a": 800, "b": 1600}; !maps.Equal(c.Dropped(), want) {
		t.Fatalf("dropped %v, want %v", c.Dropped(), want)
	}
	if n := c.DroppedTotal(); n != 2400 {
		t.Fatalf("total %d", n)
	}
}
