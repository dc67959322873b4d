package buffer

import (
	"context"
	"errors"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/mqkafka/mqkafka/ack"
)

// TestReviewConcurrentQueues runs appenders, a reader that acks and rewinds,
// on two disk queues sharing a Committer and a small CacheBudget, then
// crashes them: every accepted record the reader did not acknowledge is
// there after the reopen, once; acknowledged ones are not delivered beyond
// the first segment; Seqs never go back.
func TestReviewConcurrentQueues(t *testing.T) {
	base := t.TempDir()
	c := NewCommitter()
	budget := NewCacheBudget(8 << 10)
	opts := Options{SegmentBytes: 8 << 10, ReadCache: budget, Committer: c}
	var qs [2]Queue
	for i := range qs {
		qs[i] = open(t, ModeDisk, filepath.Join(base, string(rune('a'+i))), opts)
	}
	type state struct {
		mu       sync.Mutex
		accepted map[int]uint64
		acked    uint64
	}
	var st [2]state
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for qi, q := range qs {
		st[qi].accepted = map[int]uint64{}
		for a := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					v := a*1000000 + i
					r := rec(v)
					if i%7 == 0 {
						r.Value = append(r.Value, make([]byte, 3000)...)
					}
					seq, err := q.(*Disk).AppendSeq(context.Background(), ack.InCall(), &r)
					if errors.Is(err, ErrClosed) {
						return
					}
					if err != nil {
						t.Errorf("append: %v", err)
						return
					}
					st[qi].mu.Lock()
					st[qi].accepted[v] = seq
					st[qi].mu.Unlock()
				}
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := rand.New(rand.NewPCG(uint64(qi), 1))
			for {
				select {
				case <-stop:
					return
				case <-q.Ready():
				case <-time.After(time.Millisecond):
				}
				es, err := q.Read(nil, 1+rnd.IntN(20000))
				if err != nil {
					t.Errorf("read: %v", err)
					return
				}
				for _, e := range es {
					if e.Seq <= st[qi].acked {
						t.Errorf("delivered acked seq %d", e.Seq)
					}
				}
				if len(es) > 0 {
					switch rnd.IntN(5) {
					case 0:
						q.Rewind()
					default:
						last := es[len(es)-1].Seq
						if rnd.IntN(2) == 0 {
							last = es[len(es)/2].Seq
						}
						q.Ack(last)
						st[qi].mu.Lock()
						st[qi].acked = max(st[qi].acked, last)
						st[qi].mu.Unlock()
						q.Rewind()
					}
				}
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	for qi, q := range qs {
		crash(q)
		q.(*Disk).seg.close()
		q.(*Disk).ackFile.Close()
		dir := filepath.Join(base, string(rune('a'+qi)))
		q = open(t, ModeDisk, dir, Options{SegmentBytes: 8 << 10})
		es := drain(t, q, 1<<20)
		seen := map[int]uint64{}
		for _, e := range es {
			v := valueOf(t, e)
			if _, dup := seen[v]; dup {
				t.Fatalf("queue %d: %d twice", qi, v)
			}
			seen[v] = e.Seq
		}
		lost := 0
		for v, seq := range st[qi].accepted {
			if seq > st[qi].acked {
				if s, ok := seen[v]; !ok || s != seq {
					lost++
				}
			}
		}
		if lost > 0 {
			t.Errorf("queue %d: %d unacknowledged accepted records lost (%d accepted, acked %d, %d found)", qi, lost, len(st[qi].accepted), st[qi].acked, len(es))
		}
		q.Close()
	}
	c.Close()
}
