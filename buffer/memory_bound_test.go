package buffer

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/mqkafka/mqkafka/ack"
)

// TestDiskMemoryBounded opens 64 disk partitions sharing one committer and
// one read cache budget, fills a backlog with nothing draining, and requires
// the queues' own accounting of their memory to stay within MemoryBound:
// the budget, a fixed cost per partition and a few bytes per record, not a
// segment per partition.
func TestDiskMemoryBounded(t *testing.T) {
	const (
		parts   = 64
		perPart = 1500
		budget  = 2 << 20
	)
	c := NewCommitter()
	defer c.Close()
	cache := NewCacheBudget(budget)
	qs := make([]*Disk, parts)
	for i := range qs {
		q, err := OpenDisk(Options{Dir: fmt.Sprintf("%s/%d", t.TempDir(), i), SegmentBytes: 4 << 20,
			Committer: c, ReadCache: cache, Fsync: FsyncNever})
		if err != nil {
			t.Fatal(err)
		}
		defer q.Close()
		qs[i] = q
	}
	value := make([]byte, 400)
	check := func(when string) {
		t.Helper()
		if u := cache.Used(); u > cache.Limit() || u < 0 {
			t.Fatalf("%s: read cache holds %d bytes of a %d budget", when, u, cache.Limit())
		}
		var mem, recs int64
		for _, q := range qs {
			mem += q.Memory()
			recs += q.Stats().Records
		}
		if limit := MemoryBound(budget, parts, recs); mem > limit {
			t.Fatalf("%s: queues account %d bytes for %d records, bound %d", when, mem, recs, limit)
		}
		t.Logf("%s: %d records (%d MB on disk), %d KB accounted", when, recs, recs*int64(len(value))>>20, mem>>10)
	}
	var wg sync.WaitGroup
	for a := range 8 {
		wg.Go(func() {
			for i := range perPart * parts / 8 {
				q := qs[(a+i)%parts]
				r := Record{Key: []byte("k"), Value: value, Time: int64(i)}
				if err := q.Append(context.Background(), ack.InCall(), r); err != nil {
					t.Errorf("append: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	check("backlog")
	// Reading it back goes through the files once the budget is spent.
	for _, q := range qs {
		got, err := q.Read(nil, 64<<10)
		if err != nil || len(got) == 0 {
			t.Fatalf("read: %d entries, %v", len(got), err)
		}
		q.Ack(got[len(got)-1].Seq)
	}
	check("after reads")
}
