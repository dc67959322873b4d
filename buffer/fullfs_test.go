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

// fullFS is a queue directory on a small real file system (a tmpfs) that a
// test fills up and frees again.
type fullFS struct {
	root   string // the file system's mount point
	dir    string // the queue's directory on it
	filler string // what fill wrote, "" while the file system has room
}

// newFullFS mounts a file system of size bytes for one queue directory.
func newFullFS(t *testing.T, size int64) *fullFS {
	t.Helper()
	root := testkit.SmallFS(t, t.TempDir(), size)
	return &fullFS{root: root, dir: filepath.Join(root, "q")}
}

// fill writes to the file system until it is full.
func (f *fullFS) fill(t *testing.T) { f.filler = testkit.Fill(t, f.root) }

// free removes what fill wrote and appends rec(v+1), rec(v+2), … until q
// accepts one again; it returns the accepted v.
func (f *fullFS) free(t *testing.T, q Queue, v int) int {
	t.Helper()
	if err := os.Remove(f.filler); err != nil {
		t.Fatal(err)
	}
	f.filler = ""
	testkit.WaitFor(t, 10*time.Second, "appends accepted again", func() bool {
		v++
		return q.Append(context.Background(), ack.InCall(), rec(v)) == nil
	})
	return v
}

// appendUntilRefused appends rec(v), rec(v+1), … below limit until q refuses
// one; it returns the values accepted, the value after the refused one (or
// limit) and the refusal (nil if none).
func appendUntilRefused(q Queue, v, limit int) (accepted []int, next int, err error) {
	for ; v < limit; v++ {
		if err := q.Append(context.Background(), ack.InCall(), rec(v)); err != nil {
			return accepted, v + 1, err
		}
		accepted = append(accepted, v)
	}
	return accepted, limit, nil
}
