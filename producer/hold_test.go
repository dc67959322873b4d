package producer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/mqkafka/mqkafka/ack"
	"github.com/mqkafka/mqkafka/buffer"
	"github.com/mqkafka/mqkafka/conf"
	"github.com/mqkafka/mqkafka/connector"
	"github.com/mqkafka/mqkafka/internal/testkit"
	"github.com/mqkafka/mqkafka/rule"
)

// countingQueue records each Append call; failures makes that many first
// calls fail as a WAL write failure would.
type countingQueue struct {
	buffer.Queue
	mu       sync.Mutex
	calls    [][]buffer.Record
	failures int
}

var errWriteFailed = errors.New("write failed")

func (q *countingQueue) Append(ctx context.Context, w ack.Wait, recs ...buffer.Record) error {
	q.mu.Lock()
	q.calls = append(q.calls, slices.Clone(recs))
	fail := q.failures > 0
	q.failures--
	q.mu.Unlock()
	if fail {
		return errWriteFailed
	}
	return q.Queue.Append(ctx, w, recs...)
}

// movingTopic is a topic with a memory holding queue of n records and three
// partitions on counting memory queues.
func movingTopic(t *testing.T, n int) (*topic, []*countingQueue, []buffer.Entry) {
	var sc conf.Sink
	sc.SetDefaults()
	s := &Sink{cfg: sc, log: testkit.Logger(t)}
	tp := &topic{s: s, name: "x", hold: buffer.NewMemory(buffer.Options{})}
	var parts []*partition
	var queues []*countingQueue
	for id := range 3 {
		q := &countingQueue{Queue: buffer.NewMemory(buffer.Options{})}
		queues = append(queues, q)
		parts = append(parts, &partition{sink: s, id: int32(id), q: q})
	}
	tp.parts.Store(&parts)
	for i := range n {
		if err := tp.hold.Append(context.Background(), ack.InCall(), buffer.Record{Value: fmt.Appendf(nil, "m%03d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	ents, err := tp.hold.Read(nil, 1<<20)
	if err != nil || len(ents) != n {
		t.Fatalf("read %d held records: %v", len(ents), err)
	}
	return tp, queues, ents
}

// TestMoveAppendsOneBatchPerPartition: a move of held records makes one
// append per partition, keeps the holding order within each partition and
// places each record by its Seq in the holding queue, so that moving the
// same records again (after a crash) puts them in the same partitions.
func TestMoveAppendsOneBatchPerPartition(t *testing.T) {
	const n = 301
	tp, queues, ents := movingTopic(t, n)
	if !tp.move(context.Background(), ents) {
		t.Fatal("move failed")
	}
	for id, q := range queues {
		if len(q.calls) != 1 {
			t.Fatalf("partition %d: %d appends for one move, want 1", id, len(q.calls))
		}
		var want []string
		for _, e := range ents {
			if int(e.Seq%3) == id {
				want = append(want, string(e.Value))
			}
		}
		var got []string
		for _, r := range q.calls[0] {
			got = append(got, string(r.Value))
		}
		if !slices.Equal(got, want) {
			t.Fatalf("partition %d got %v…, want %v…", id, got[:min(4, len(got))], want[:min(4, len(want))])
		}
	}
}

// TestMovedRecordsWaitForTheMark: in a disk or hybrid topic, the records a
// move gives a partition are held back from sending (from their first Seq
// on) until the move is marked, and released after.
func TestMovedRecordsWaitForTheMark(t *testing.T) {
	tp, queues, ents := movingTopic(t, 30)
	var err error
	if tp.mark, _, _, err = openMoveMark(t.TempDir(), false); err != nil {
		t.Fatal(err)
	}
	defer tp.mark.close()
	if err := queues[0].Queue.Append(context.Background(), ack.InCall(), buffer.Record{Value: []byte("older")}); err != nil {
		t.Fatal(err)
	}
	if !tp.move(context.Background(), ents) {
		t.Fatal("move failed")
	}
	for id, p := range tp.partitions() {
		want := uint64(1)
		if id == 0 {
			want = 2 // the older record stays sendable
		}
		if got := p.moved.Load(); got != want {
			t.Fatalf("partition %d holds back from Seq %d, want %d", id, got, want)
		}
	}
	tp.sendMoved()
	for id, p := range tp.partitions() {
		if got := p.moved.Load(); got != 0 {
			t.Fatalf("partition %d still holds back from Seq %d after the mark", id, got)
		}
	}
}

// TestMoveRetriesOnlyTheFailedPartition: when one partition's append fails,
// the move retries that partition's records alone, so the others get
// theirs once and nothing is lost.
func TestMoveRetriesOnlyTheFailedPartition(t *testing.T) {
	tp, queues, ents := movingTopic(t, 30)
	queues[1].failures = 1
	if !tp.move(context.Background(), ents) {
		t.Fatal("move failed")
	}
	for id, q := range queues {
		want := 1
		if id == 1 {
			want = 2
		}
		if len(q.calls) != want {
			t.Fatalf("partition %d: %d appends, want %d", id, len(q.calls), want)
		}
		if st := q.Stats(); st.Records != 10 {
			t.Fatalf("partition %d holds %d records, want 10", id, st.Records)
		}
	}
}

// slowQueue takes a millisecond per append, as a disk queue's fsync does.
type slowQueue struct{ buffer.Queue }

func (q slowQueue) Append(ctx context.Context, w ack.Wait, recs ...buffer.Record) error {
	time.Sleep(time.Millisecond)
	return q.Queue.Append(ctx, w, recs...)
}

// TestHoldingEndsUnderSteadyPublishing: publishers that never pause must not
// keep a topic in its holding queue: release moves what they leave and
// switches them to their partitions.
func TestHoldingEndsUnderSteadyPublishing(t *testing.T) {
	tp, queues, _ := movingTopic(t, 0)
	tp.hold = slowQueue{tp.hold}
	tp.holding, tp.released = true, make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var sent [8]int
	for w := range sent {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if _, _, err := tp.enqueue(ctx, ack.InCall(), &buffer.Record{Value: fmt.Appendf(nil, "w%d-%d", w, sent[w])}); err != nil {
					t.Error(err)
					return
				}
				sent[w]++
			}
		}()
	}
	released := make(chan struct{})
	go func() {
		defer close(released)
		tp.release(ctx)
	}()
	select {
	case <-tp.released:
	case <-time.After(20 * time.Second):
		t.Error("still holding after 20 s of steady publishing")
	}
	cancel()
	wg.Wait()
	<-released
	total := 0
	for _, n := range sent {
		total += n
	}
	var queued int64
	for _, q := range queues {
		queued += q.Stats().Records
	}
	if held := tp.hold.Stats().Records; held != 0 || queued != int64(total) {
		t.Fatalf("%d records held, %d in partitions, %d sent", held, queued, total)
	}
}

// holdSink is a disk sink of topic "held" in dataDir whose Kafka is
// kafkaAddr; stop closes it (once, also at the end of the test).
func holdSink(t *testing.T, kafkaAddr, dataDir string) (s *Sink, stop func()) {
	t.Helper()
	var sc conf.Sink
	sc.SetDefaults()
	sc.Name, sc.Connector, sc.Topic = "s", "k", "held"
	sc.Buffer.Mode = string(buffer.ModeDisk)
	log := testkit.Logger(t)
	client, err := NewClient(ClientConfig{
		Connector: "k", Conn: connector.Config{BootstrapHosts: kafkaAddr}, RequiredAcks: sc.RequiredAcks,
		Linger: time.Millisecond, MetadataTimeout: 300 * time.Millisecond,
	}, log)
	if err != nil {
		t.Fatal(err)
	}
	s, err = NewSink(sc, []*Client{client}, SinkEnv{DataDir: dataDir, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	s.render.value = rule.MustTemplate("${payload}")
	var once sync.Once
	stop = func() {
		once.Do(func() {
			if err := s.Close(); err != nil {
				t.Error(err)
			}
			client.Close()
		})
	}
	t.Cleanup(stop)
	return s, stop
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	if err := os.CopyFS(to, os.DirFS(from)); err != nil {
		t.Fatal(err)
	}
}

// TestHeldRecordsKeepTheirPartitionAcrossACrash: records held while Kafka
// was down are moved into their partitions and delivered; then the holding
// queue is put back as it was before the move, which is what a crash leaves
// when it comes before the holding queue saved its ack point. The restart
// must not send them again (the move mark says they were moved); and when
// the mark is lost too, the records moved again must land in the partitions
// the first move chose.
func TestHeldRecordsKeepTheirPartitionAcrossACrash(t *testing.T) {
	const n = 300
	port := testkit.FreePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	dataDir := t.TempDir()
	holdDir := filepath.Join(dataDir, "buffer", "s", "held", "_hold")

	down, stop := holdSink(t, addr, dataDir)
	enqueue(t, down, 0, n)
	if st := down.Stats(); len(st) != 1 || st[0].Partition != -1 || st[0].Records != n {
		t.Fatalf("with Kafka down the records should be held: %+v", st)
	}
	stop()
	snapshot := filepath.Join(t.TempDir(), "hold")
	copyDir(t, holdDir, snapshot)

	testkit.NewKafka(t, port, kfake.SeedTopics(3, "held"))
	up, stop := holdSink(t, addr, dataDir)
	testkit.WaitFor(t, 30*time.Second, "delivery", func() bool { return up.Counters.Success.Load() == n })
	first := map[string]int32{}
	for _, r := range testkit.Consume(t, addr, "held", n, 30*time.Second) {
		first[string(r.Value)] = r.Partition
	}
	stop()

	crash := func(keepMark bool) (*Sink, func()) {
		if err := os.RemoveAll(holdDir); err != nil {
			t.Fatal(err)
		}
		copyDir(t, snapshot, holdDir)
		if !keepMark {
			if err := os.Remove(filepath.Join(filepath.Dir(holdDir), moveMarkName)); err != nil {
				t.Fatal(err)
			}
		}
		s, stop := holdSink(t, addr, dataDir)
		testkit.WaitFor(t, 30*time.Second, "the holding queue emptied", func() bool { return s.Queued().Records == 0 })
		return s, stop
	}

	again, stop := crash(true)
	if sent := again.Counters.Success.Load(); sent != 0 {
		t.Fatalf("restart sent %d held records again that the move mark says were moved", sent)
	}
	stop()

	lost, _ := crash(false)
	if sent := lost.Counters.Success.Load(); sent != n {
		t.Fatalf("without the move mark the restart sent %d held records again, want %d", sent, n)
	}
	recs := testkit.Consume(t, addr, "held", 2*n, 30*time.Second)
	if len(recs) != 2*n {
		t.Fatalf("Kafka holds %d records, want %d", len(recs), 2*n)
	}
	for _, r := range recs {
		if p, ok := first[string(r.Value)]; !ok || p != r.Partition {
			t.Fatalf("record %s in partition %d, first moved to %d", r.Value, r.Partition, p)
		}
	}
}

// TestPartitionsKnownFromDisk: the partition queues a previous run left tell
// a restart the partition count, so records go straight to their partitions
// even while Kafka is down.
func TestPartitionsKnownFromDisk(t *testing.T) {
	port := testkit.FreePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	dataDir := t.TempDir()
	kc, _ := testkit.NewKafka(t, port, kfake.SeedTopics(3, "held"))
	up, stop := holdSink(t, addr, dataDir)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if !up.WaitPartitions(ctx) {
		t.Fatal("partitions not learned from Kafka")
	}
	enqueue(t, up, 0, 10)
	testkit.WaitFor(t, 30*time.Second, "delivery", func() bool { return up.Counters.Success.Load() == 10 })
	stop()
	kc.Close()

	down, _ := holdSink(t, addr, dataDir)
	if !down.WaitPartitions(ctx) {
		t.Fatal("partitions not learned from disk with Kafka down")
	}
	enqueue(t, down, 10, 30)
	var partitioned int64
	for _, st := range down.Stats() {
		if st.Partition == -1 && st.Records != 0 {
			t.Fatalf("%d records held although the partitions are on disk", st.Records)
		}
		partitioned += st.Records
	}
	if partitioned != 30 {
		t.Fatalf("%d records in partition queues, want 30", partitioned)
	}
}

// TestFewerPartitionsInKafkaThanOnDisk: a topic recreated with fewer
// partitions than a previous run left queues for gets new records only on
// the partitions Kafka has, once Kafka told the count.
func TestFewerPartitionsInKafkaThanOnDisk(t *testing.T) {
	dataDir := t.TempDir()
	port := testkit.FreePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	kc, _ := testkit.NewKafka(t, port, kfake.SeedTopics(3, "held"))
	first, stop := holdSink(t, addr, dataDir)
	enqueue(t, first, 0, 9)
	testkit.WaitFor(t, 30*time.Second, "delivery", func() bool { return first.Counters.Success.Load() == 9 })
	stop()
	kc.Close()

	_, addr = testkit.NewKafka(t, 0, kfake.SeedTopics(2, "held"))
	s, _ := holdSink(t, addr, dataDir)
	v, _ := s.topics.Load("held")
	tp := v.(*topic)
	testkit.WaitFor(t, 10*time.Second, "Kafka's partition count", func() bool { return tp.kafkaParts.Load() == 2 })
	enqueue(t, s, 9, 30)
	testkit.WaitFor(t, 30*time.Second, "delivery", func() bool { return s.Counters.Success.Load() == 30 })
	for _, r := range testkit.Consume(t, addr, "held", 30, 30*time.Second) {
		if r.Partition > 1 {
			t.Fatalf("record %s in partition %d of a 2-partition topic", r.Value, r.Partition)
		}
	}
	if d := s.Counters.DroppedTotal(); d != 0 {
		t.Fatalf("dropped %v", s.Counters.Dropped())
	}
}
