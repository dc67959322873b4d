package buffer

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mqkafka/mqkafka/ack"
	"github.com/mqkafka/mqkafka/internal/testkit"
)

// TestReviewDirSyncedAfterFailedFirstWrite: the disk fills just as a new
// segment is created: the file exists, its first write fails. Once space is
// free the next group goes into that same file without creating it, so no
// directory fsync happens before its appenders are told their records are
// durable: a power loss can lose the file with acknowledged records in it.
func TestReviewDirSyncedAfterFailedFirstWrite(t *testing.T) {
	root := testkit.SmallFS(t, t.TempDir(), 4<<20)
	dir := filepath.Join(root, "q")
	opts := Options{SegmentBytes: 4 << 10}
	q := open(t, ModeDisk, dir, opts)
	defer q.Close()
	d := q.(*Disk)
	ctx := context.Background()
	v := 0
	// Fill the first segment to its size: the next append creates one.
	for d.seg.next() == 0 || func() bool {
		d.seg.mu.Lock()
		defer d.seg.mu.Unlock()
		return d.seg.segs[len(d.seg.segs)-1].size < d.seg.segBytes
	}() {
		if err := q.Append(ctx, ack.InCall(), rec(v)); err != nil {
			t.Fatal(err)
		}
		v++
	}
	filler := testkit.Fill(t, root)
	before, _ := listSegments(dir)
	if err := q.Append(ctx, ack.InCall(), rec(v)); err == nil {
		t.Fatal("append on a full disk succeeded")
	}
	if after, _ := listSegments(dir); len(after) != len(before)+1 {
		t.Fatalf("segments %v then %v: the failed write did not create one", before, after)
	}
	os.Remove(filler)
	testkit.WaitFor(t, 10*time.Second, "appends accepted again", func() bool {
		return q.Append(ctx, ack.InCall(), rec(v)) == nil
	})
	d.mu.Lock()
	dirty := d.dirDirty
	d.mu.Unlock()
	if dirty {
		t.Fatal("an append was acknowledged (fsync batch) while the creation of its segment file was not synced")
	}
}
