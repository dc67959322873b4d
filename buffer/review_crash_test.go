package buffer

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/mqkafka/mqkafka/ack"
)

func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	os.RemoveAll(dst)
	if err := os.MkdirAll(dst, 0o750); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(src)
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o640); err != nil {
			t.Fatal(err)
		}
	}
}

// TestReviewTornTailEveryByte cuts the tail segment at every byte offset of
// its last entries (a crash mid-write) and reopens: no error, the kept
// entries are a prefix of the written ones, Seqs go on monotonically, and
// appends after the reopen survive another reopen.
func TestReviewTornTailEveryByte(t *testing.T) {
	for _, mode := range durableModes {
		t.Run(string(mode), func(t *testing.T) {
			base := t.TempDir()
			src := filepath.Join(base, "src")
			sz := sizeOf(rec(0))
			opts := Options{SegmentBytes: int64(20 * sz), MemoryLimit: int64(5 * sz)}
			q := open(t, mode, src, opts)
			appendN(t, q, 0, 50)
			got := drain(t, q, 1<<20)
			q.Ack(got[9].Seq)
			crash(q)
			if mode == ModeHybrid {
				q.(*Disk).seg.close()
			}
			segs, _ := listSegments(src)
			tail := segmentPath(src, segs[len(segs)-1])
			fi, _ := os.Stat(tail)
			for cut := fi.Size(); cut >= 0 && cut > fi.Size()-400; cut-- {
				dir := filepath.Join(base, "c")
				copyDir(t, src, dir)
				if err := os.Truncate(filepath.Join(dir, filepath.Base(tail)), cut); err != nil {
					t.Fatal(err)
				}
				q := open(t, ModeDisk, dir, opts)
				es := drain(t, q, 1<<20)
				vs := values(t, es)
				for i, v := range vs {
					if v != vs[0]+i || es[i].Seq != uint64(v+1) {
						t.Fatalf("cut %d: entries %v", cut, vs)
					}
				}
				if len(vs) > 0 && vs[0] > 10 {
					t.Fatalf("cut %d: unacknowledged lost: %v", cut, vs)
				}
				last := uint64(0)
				if len(es) > 0 {
					last = es[len(es)-1].Seq
				}
				r := rec(1000)
				seq, err := q.(*Disk).AppendSeq(context.Background(), ack.InCall(), &r)
				if err != nil || seq <= last {
					t.Fatalf("cut %d: append after reopen: seq %d (last %d), %v", cut, seq, last, err)
				}
				if err := q.Close(); err != nil {
					t.Fatal(err)
				}
				q = open(t, ModeDisk, dir, opts)
				es2 := drain(t, q, 1<<20)
				if len(es2) != len(es)+1 || es2[len(es2)-1].Seq != seq {
					t.Fatalf("cut %d: second reopen has %d entries, want %d", cut, len(es2), len(es)+1)
				}
				q.Close()
			}
		})
	}
}
