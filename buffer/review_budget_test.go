package buffer

import (
	"context"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"

	"github.com/mqkafka/mqkafka/ack"
)

// TestReviewBudgetReturned: queues sharing a CacheBudget give all of it
// back when closed, whatever happened to their records (overflow drops,
// acks, rewinds, reads from the log).
func TestReviewBudgetReturned(t *testing.T) {
	base := t.TempDir()
	budget := NewCacheBudget(6 << 10)
	c := NewCommitter()
	defer c.Close()
	var wg sync.WaitGroup
	for qi := range 3 {
		opts := Options{SegmentBytes: 4 << 10, ReadCache: budget, Committer: c, Limit: 5 << 10, Overflow: DropOldest}
		q := open(t, ModeDisk, filepath.Join(base, string(rune('a'+qi))), opts)
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := rand.New(rand.NewPCG(uint64(qi), 2))
			for i := range 3000 {
				r := rec(i)
				if rnd.IntN(10) == 0 {
					r.Value = append(r.Value, make([]byte, rnd.IntN(3000))...)
				}
				if err := q.Append(context.Background(), ack.NoWait(), r); err != nil {
					t.Errorf("append: %v", err)
					return
				}
				switch rnd.IntN(6) {
				case 0:
					es, _ := q.Read(nil, rnd.IntN(4000))
					if len(es) > 0 && rnd.IntN(2) == 0 {
						q.Ack(es[len(es)-1].Seq)
					}
				case 1:
					q.Rewind()
				}
			}
			q.Close()
		}()
	}
	wg.Wait()
	if u := budget.Used(); u != 0 {
		t.Fatalf("closed queues still hold %d bytes of the read cache", u)
	}
}
