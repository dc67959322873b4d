package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mqkafka/mqkafka/internal/testkit"
)

// device is an MQTT client that behaves like a device on a flaky network:
// it publishes QoS 1 messages from several goroutines, and when the
// connection breaks it reconnects and sends again whatever was not
// acknowledged.
type device struct {
	t    testing.TB
	addr string
	id   string

	mu   sync.Mutex
	conn *paho.Client
	gen  int

	acked      []atomic.Bool
	reconnects atomic.Int64
}

func newDevice(t testing.TB, addr, id string, n int) *device {
	return &device{t: t, addr: addr, id: id, acked: make([]atomic.Bool, n)}
}

// client returns a live connection, reconnecting (bounded) if needed.
func (d *device) client(ctx context.Context, brokenGen int) (*paho.Client, int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.conn != nil && d.gen != brokenGen {
		return d.conn, d.gen, nil
	}
	if d.conn != nil {
		_ = d.conn.Disconnect(&paho.Disconnect{})
		d.conn = nil
	}
	for ctx.Err() == nil {
		c, err := d.dial(ctx)
		if err == nil {
			d.conn = c
			d.gen++
			if d.gen > 1 {
				d.reconnects.Add(1)
			}
			return c, d.gen, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil, 0, ctx.Err()
}

func (d *device) dial(ctx context.Context) (*paho.Client, error) {
	conn, err := net.DialTimeout("tcp", d.addr, time.Second)
	if err != nil {
		return nil, err
	}
	c := paho.NewClient(paho.ClientConfig{ClientID: d.id, Conn: conn})
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	ca, err := c.Connect(cctx, &paho.Connect{ClientID: d.id, CleanStart: true, KeepAlive: 30})
	if err != nil {
		conn.Close()
		return nil, err
	}
	if ca.ReasonCode != 0 {
		conn.Close()
		return nil, fmt.Errorf("connack %d", ca.ReasonCode)
	}
	return c, nil
}

// send publishes message i until it is acknowledged or ctx ends.
func (d *device) send(ctx context.Context, topic string, i int) error {
	payload := fmt.Appendf(nil, `{"dev":%q,"seq":%d}`, d.id, i)
	broken := -1
	for ctx.Err() == nil {
		c, gen, err := d.client(ctx, broken)
		if err != nil {
			return err
		}
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		resp, err := c.Publish(pctx, &paho.Publish{Topic: topic, QoS: 1, Payload: payload})
		cancel()
		if err == nil && resp.ReasonCode == 0 {
			d.acked[i].Store(true)
			return nil
		}
		broken = gen
	}
	return ctx.Err()
}

// run publishes messages 0..n-1 with `parallel` goroutines, in order per goroutine.
func (d *device) run(ctx context.Context, topic string, parallel int) error {
	var wg sync.WaitGroup
	errs := make(chan error, parallel)
	n := len(d.acked)
	for w := range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += parallel {
				if err := d.send(ctx, topic, i); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

func (d *device) ackedCount() int {
	n := 0
	for i := range d.acked {
		if d.acked[i].Load() {
			n++
		}
	}
	return n
}

func (d *device) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.conn != nil {
		_ = d.conn.Disconnect(&paho.Disconnect{})
	}
}

type seqRecord struct {
	Payload string `json:"payload"`
}

type devSeq struct {
	Dev string `json:"dev"`
	Seq int    `json:"seq"`
}

// tally reads every record of topic and counts each (device, seq) once;
// it also checks order: per partition and device, first occurrences of
// sequence numbers that one goroutine sent in order must not go backwards.
type tally struct {
	seen  map[devSeq]int
	dups  int
	total int
}

func readTally(t testing.TB, recs []*kgo.Record) *tally {
	t.Helper()
	tl := &tally{seen: map[devSeq]int{}}
	for _, r := range recs {
		var sr seqRecord
		if err := json.Unmarshal(r.Value, &sr); err != nil {
			t.Fatalf("record value is not the publish event: %v: %s", err, r.Value)
		}
		var ds devSeq
		if err := json.Unmarshal([]byte(sr.Payload), &ds); err != nil {
			t.Fatalf("payload %q: %v", sr.Payload, err)
		}
		tl.total++
		if tl.seen[ds] > 0 {
			tl.dups++
		}
		tl.seen[ds]++
	}
	return tl
}

// consumeAll reads a topic until it has no new records for a quiet period.
func consumeAll(t testing.TB, kafkaAddr, topic string, atLeast int, timeout time.Duration) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(kafkaAddr), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var recs []*kgo.Record
	quietSince := time.Now()
	for ctx.Err() == nil {
		pctx, pcancel := context.WithTimeout(ctx, 500*time.Millisecond)
		fs := cl.PollFetches(pctx)
		pcancel()
		before := len(recs)
		fs.EachRecord(func(r *kgo.Record) { recs = append(recs, r) })
		if len(recs) > before {
			quietSince = time.Now()
		}
		if len(recs) >= atLeast && time.Since(quietSince) > time.Second {
			break
		}
	}
	return recs
}

// TestSIGKILLLosesNothingAcknowledged is the durability proof: a real
// mqkafka in disk mode with fsync = "batch" is SIGKILLed five times at random
// moments while devices publish 50,000 QoS 1 messages and resend what was not
// acknowledged. Every acknowledged message must be in Kafka.
func TestSIGKILLLosesNothingAcknowledged(t *testing.T) {
	const (
		topics   = 5
		perTopic = 10_000
		kills    = 5
	)
	_, kafkaAddr := testkit.NewKafka(t, 0, kfake.SeedTopics(3, "durable"))
	port := testkit.FreePort(t)
	cfg := fixedListener(baseConfig(t, kafkaAddr, "durable"), port) + `
[sinks.buffer]
mode = "disk"
fsync = "batch"
`
	cfgPath := writeFile(t, cfg)
	p := startProc(t, cfgPath)
	addr := "127.0.0.1:" + strconv.Itoa(port)

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	devs := make([]*device, topics)
	var wg sync.WaitGroup
	runErrs := make([]error, topics)
	for i := range devs {
		devs[i] = newDevice(t, addr, fmt.Sprintf("dev-%d", i), perTopic)
		wg.Add(1)
		go func() {
			defer wg.Done()
			runErrs[i] = devs[i].run(ctx, fmt.Sprintf("t/%d", i), 8)
		}()
	}
	acked := func() int {
		n := 0
		for _, d := range devs {
			n += d.ackedCount()
		}
		return n
	}
	total := topics * perTopic
	// Kill at random points spread over the run.
	for k := range kills {
		target := total * (k + 1) / (kills + 2)
		target += rand.IntN(total/(kills+2)) - total/(2*(kills+2))
		testkit.WaitFor(t, 2*time.Minute, fmt.Sprintf("%d acknowledged publishes", target), func() bool { return acked() >= target })
		time.Sleep(time.Duration(rand.IntN(50)) * time.Millisecond)
		p.kill()
		t.Logf("SIGKILL %d at %d acknowledged", k+1, acked())
		time.Sleep(time.Duration(rand.IntN(300)) * time.Millisecond)
		p = startProc(t, cfgPath)
	}
	wg.Wait()
	for i, err := range runErrs {
		if err != nil {
			t.Fatalf("device %d: %v", i, err)
		}
	}
	for _, d := range devs {
		d.close()
	}
	if got := acked(); got != total {
		t.Fatalf("only %d of %d publishes acknowledged", got, total)
	}
	recs := consumeAll(t, kafkaAddr, "durable", total, 2*time.Minute)
	tl := readTally(t, recs)
	var missing []string
	for i := range topics {
		for s := range perTopic {
			if devs[i].acked[s].Load() && tl.seen[devSeq{Dev: devs[i].id, Seq: s}] == 0 {
				missing = append(missing, fmt.Sprintf("%s/%d", devs[i].id, s))
			}
		}
	}
	var reconnects int64
	for _, d := range devs {
		reconnects += d.reconnects.Load()
	}
	t.Logf("kafka holds %d records: %d distinct, %d duplicates (%.2f%%); %d device reconnects",
		tl.total, len(tl.seen), tl.dups, 100*float64(tl.dups)/float64(total), reconnects)
	if len(missing) > 0 {
		t.Fatalf("%d acknowledged messages missing from Kafka, e.g. %s", len(missing), strings.Join(missing[:min(10, len(missing))], ", "))
	}
	// Duplicates come from what was in flight at each kill (resent from the
	// buffer, or resent by a device whose PUBACK was lost); far more would
	// mean acknowledged records are being sent again.
	if tl.dups > total/4 {
		t.Fatalf("%d duplicates for %d kills: more than what can have been in flight", tl.dups, kills)
	}
	if code := p.stop(t, 30*time.Second); code != 0 {
		t.Fatalf("final graceful stop exited %d", code)
	}
}
