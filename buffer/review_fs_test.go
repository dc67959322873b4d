package buffer

import (
	"context"
	"testing"

	"github.com/mqkafka/mqkafka/ack"
)

// TestReviewDirSyncedAfterFailedFirstWrite: the disk fills just as a new
// segment is created: the file exists, its first write fails. Once space is
// free the next group goes into that same file without creating it, so no
// directory fsync happens before its appenders are told their records are
// durable: a power loss can lose the file with acknowledged records in it.
func TestReviewDirSyncedAfterFailedFirstWrite(t *testing.T) {
	fs := newFullFS(t, 4<<20)
	dir := fs.dir
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
	fs.fill(t)
	before, _ := listSegments(dir)
	if err := q.Append(ctx, ack.InCall(), rec(v)); err == nil {
		t.Fatal("append on a full disk succeeded")
	}
	if after, _ := listSegments(dir); len(after) != len(before)+1 {
		t.Fatalf("segments %v then %v: the failed write did not create one", before, after)
	}
	fs.free(t, q, v)
	d.mu.Lock()
	dirty := d.dirDirty
	d.mu.Unlock()
	if dirty {
		t.Fatal("an append was acknowledged (fsync batch) while the creation of its segment file was not synced")
	}
}
