// Package testkit holds what tests across packages share: a Kafka-protocol
// cluster on loopback (kfake), a real Kafka client to read back what landed,
// and bounded waits.
package testkit

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// FreePort returns a loopback port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// NewKafka starts a one-broker kfake cluster on port (0: any free port),
// closed when the test ends.
func NewKafka(t testing.TB, port int, opts ...kfake.Opt) (*kfake.Cluster, string) {
	t.Helper()
	if port == 0 {
		port = FreePort(t)
	}
	opts = append([]kfake.Opt{kfake.NumBrokers(1), kfake.Ports(port)}, opts...)
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatalf("kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return c, c.ListenAddrs()[0]
}

// PersistentKafka returns a function that starts a one-broker kfake on
// the same port and data directory at each call, so that a test can stop
// Kafka (Close) and bring it back with what it held. The caller closes it.
func PersistentKafka(t testing.TB) func() *kfake.Cluster {
	port, dir := FreePort(t), t.TempDir()
	return func() *kfake.Cluster {
		t.Helper()
		kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(port), kfake.DataDir(dir))
		if err != nil {
			t.Fatalf("kfake: %v", err)
		}
		return kc
	}
}

// Logger writes to the test log, shown when the test fails or with -v.
func Logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(LogWriter(t), &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// LogWriter writes each line to the test log (a benchmark's only with -v).
func LogWriter(t testing.TB) io.Writer { return tWriter{t} }

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	// A benchmark prints its log even when it passes, burying the figures.
	if _, bench := w.t.(*testing.B); bench && !testing.Verbose() {
		return len(p), nil
	}
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// Consume reads topic from the beginning with a real Kafka client until want
// records arrived or timeout passed, and returns what it read. opts add
// client options (SASL, TLS).
func Consume(t testing.TB, kafkaAddr, topic string, want int, timeout time.Duration, opts ...kgo.Opt) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(kafkaAddr),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var recs []*kgo.Record
	for len(recs) < want && ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		fs.EachRecord(func(r *kgo.Record) { recs = append(recs, r) })
	}
	return recs
}

// PublishedRecord is the JSON record a rule's SELECT * makes of a publish.
type PublishedRecord struct {
	ID                string            `json:"id"`
	ClientID          string            `json:"clientid"`
	Topic             string            `json:"topic"`
	Payload           string            `json:"payload"`
	QoS               int               `json:"qos"`
	Flags             map[string]bool   `json:"flags"`
	PubProps          map[string]any    `json:"pub_props"`
	PeerHost          string            `json:"peerhost"`
	Timestamp         int64             `json:"timestamp"`
	PublishReceivedAt int64             `json:"publish_received_at"`
	Node              string            `json:"node"`
	Extra             map[string]string `json:"-"`
}

// CountAccepts is a kfake option whose listener counts the connections it
// accepts: a client's connection attempts, the failed ones included.
func CountAccepts() (kfake.Opt, *atomic.Int64) {
	n := &atomic.Int64{}
	return kfake.ListenFn(func(network, address string) (net.Listener, error) {
		l, err := net.Listen(network, address)
		if err != nil {
			return nil, err
		}
		return countingListener{l, n}, nil
	}), n
}

type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// Produce writes recs with a real Kafka client; opts add client options
// (SASL, TLS).
func Produce(t testing.TB, addr string, recs []*kgo.Record, opts ...kgo.Opt) {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr), kgo.ProducerBatchMaxBytes(16 << 20)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

// SeqRecords are n records on topic with keys k<i>, JSON values and two headers.
func SeqRecords(topic string, from, n int) []*kgo.Record {
	recs := make([]*kgo.Record, n)
	for i := range recs {
		j := from + i
		recs[i] = &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "k%04d", j), Value: fmt.Appendf(nil, `{"n":%d}`, j),
			Headers: []kgo.RecordHeader{{Key: "h1", Value: fmt.Appendf(nil, "x%d", j)}, {Key: "h2", Value: []byte("y")}}}
	}
	return recs
}

// WaitFor polls cond every 20ms until it holds or timeout passes.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Ordered checks values read per partition, each in offset order, whose
// order of first arrival must follow their sort order (zero-padded
// sequence numbers from one publisher). It returns the distinct values and
// how many arrived again.
func Ordered(t testing.TB, parts map[int32][]string) (distinct map[string]bool, dups int) {
	t.Helper()
	distinct = map[string]bool{}
	for part, vals := range parts {
		last := ""
		for _, v := range vals {
			if distinct[v] {
				dups++
				continue
			}
			distinct[v] = true
			if v < last {
				t.Fatalf("partition %d: %s arrived after %s: order broken", part, v, last)
			}
			last = v
		}
	}
	return distinct, dups
}

// SyncBuffer collects output written by one goroutine and read by another.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write implements io.Writer.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
