package app

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/mqkafka/mqkafka/buffer"
	"github.com/mqkafka/mqkafka/internal/testkit"
)

// withBuffer appends a [sinks.buffer] table to a one-sink config.
func withBuffer(cfg, table string) string {
	return cfg + "\n[sinks.buffer]\n" + table + "\n"
}

// payloads decodes the MQTT payloads of Kafka records valued with ${.}.
func payloads(t testing.TB, kafkaAddr, topic string, want int, timeout time.Duration) map[int32][]string {
	t.Helper()
	out := map[int32][]string{}
	for _, r := range testkit.Consume(t, kafkaAddr, topic, want, timeout) {
		var pr testkit.PublishedRecord
		if err := json.Unmarshal(r.Value, &pr); err != nil {
			t.Fatal(err)
		}
		out[r.Partition] = append(out[r.Partition], pr.Payload)
	}
	return out
}

// rawValues returns the values of a topic's records, in offset order.
func rawValues(t testing.TB, kafkaAddr, topic string, want int, timeout time.Duration) []string {
	t.Helper()
	var out []string
	for _, r := range testkit.Consume(t, kafkaAddr, topic, want, timeout) {
		out = append(out, string(r.Value))
	}
	return out
}

// TestKafkaOutageMidStream: Kafka (kfake with a data dir) stops for a few
// seconds while a device keeps publishing, then comes back on the same port:
// nothing is lost and each partition keeps the publisher's order.
func TestKafkaOutageMidStream(t *testing.T) {
	for _, mode := range []string{"memory", "disk", "hybrid"} {
		t.Run(mode, func(t *testing.T) {
			port := testkit.FreePort(t)
			dataDir := t.TempDir()
			opts := []kfake.Opt{kfake.NumBrokers(1), kfake.Ports(port), kfake.DataDir(dataDir), kfake.SeedTopics(2, "outage")}
			kc, err := kfake.NewCluster(opts...)
			if err != nil {
				t.Fatal(err)
			}
			kafkaAddr := kc.ListenAddrs()[0]
			a := startApp(t, withBuffer(testkit.BaseConfig(t, kafkaAddr, "outage"), fmt.Sprintf(`mode = %q
memory_limit = "4KB"`, mode)))
			c := testkit.MQTTClient(t, a.broker.Addrs()[0], "dev-o", nil)
			const n = 1500
			var sent atomic.Int64
			done := make(chan error, 1)
			go func() {
				ctx := context.Background()
				for i := range n {
					pctx, cancel := context.WithTimeout(ctx, 20*time.Second)
					resp, err := c.Publish(pctx, &paho.Publish{Topic: "t/o", QoS: 1, Payload: fmt.Appendf(nil, "m%06d", i)})
					cancel()
					if err != nil || resp.ReasonCode != 0 {
						done <- fmt.Errorf("publish %d: %v %v", i, err, resp)
						return
					}
					sent.Add(1)
					if i%100 == 0 {
						time.Sleep(10 * time.Millisecond)
					}
				}
				done <- nil
			}()
			testkit.WaitFor(t, 20*time.Second, "a third published", func() bool { return sent.Load() >= n/3 })
			kc.Close()
			t.Logf("kafka stopped at %d published", sent.Load())
			time.Sleep(3 * time.Second)
			kc, err = kfake.NewCluster(opts...)
			if err != nil {
				t.Fatalf("restarting kfake: %v", err)
			}
			t.Cleanup(kc.Close)
			t.Logf("kafka back at %d published", sent.Load())
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			s := a.sinks[0].sink
			testkit.WaitFor(t, 60*time.Second, "buffer drained", func() bool { return s.Queued().Records == 0 })
			parts := payloads(t, kafkaAddr, "outage", n, 30*time.Second)
			seen, dups := testkit.Ordered(t, parts)
			if len(seen) != n {
				t.Fatalf("%d distinct records in Kafka, want %d", len(seen), n)
			}
			t.Logf("%s: %d duplicates, retried %d", mode, dups, s.Counters.Retried.Load())
		})
	}
}

// overflowApp starts with Kafka down (nothing listening on kafkaPort) and a
// tiny partition limit.
func overflowApp(t *testing.T, kafkaPort int, table string) *App {
	cfg := testkit.BaseConfig(t, fmt.Sprintf("127.0.0.1:%d", kafkaPort), "ovf")
	cfg = strings.Replace(cfg, `topic = "ovf"`, "topic = \"ovf\"\nvalue = \"${payload}\"\nkey = \"\"", 1)
	return startApp(t, withBuffer(cfg, `per_partition_limit = "1KB"
`+table))
}

// Each record is charged 32 bytes of bookkeeping plus key and value: 10-byte
// payloads make 42 bytes, so 24 fit in 1KB.
const fitInKB = 1024 / 42

// fillQueue connects clientID to a's broker and publishes the fitInKB
// records that fill overflowApp's queue.
func fillQueue(t *testing.T, a *App, clientID string) *paho.Client {
	t.Helper()
	c := testkit.MQTTClient(t, a.broker.Addrs()[0], clientID, nil)
	for i := range fitInKB {
		testkit.Publish(t, c, "t/ovf", 1, fmt.Appendf(nil, "m%09d", i))
	}
	return c
}

func TestOverflowDropNew(t *testing.T) {
	port := testkit.FreePort(t)
	a := overflowApp(t, port, `overflow = "drop_new"`)
	c := testkit.MQTTClient(t, a.broker.Addrs()[0], "dev-dn", nil)
	const n = 60
	accepted := 0
	var refused []int
	for i := range n {
		resp := testkit.Publish(t, c, "t/ovf", 1, fmt.Appendf(nil, "m%09d", i))
		switch resp.ReasonCode {
		case 0:
			accepted++
		case 0x97:
			refused = append(refused, i)
		default:
			t.Fatalf("publish %d: reason %#x", i, resp.ReasonCode)
		}
	}
	if accepted != fitInKB || len(refused) != n-fitInKB || refused[0] != fitInKB {
		t.Fatalf("accepted %d, refused %d from %v; want %d accepted", accepted, len(refused), refused[:1], fitInKB)
	}
	testkit.NewKafka(t, port, kfake.SeedTopics(1, "ovf"))
	s := a.sinks[0].sink
	testkit.WaitFor(t, 30*time.Second, "delivery", func() bool { return s.Counters.Success.Load() == int64(accepted) })
	if d := s.Counters.Dropped()[buffer.ReasonQueueFull]; s.Counters.Success.Load()+d != n || d != int64(len(refused)) {
		t.Fatalf("delivered %d + dropped %d != %d", s.Counters.Success.Load(), d, n)
	}
	got := rawValues(t, fmt.Sprintf("127.0.0.1:%d", port), "ovf", accepted, 10*time.Second)
	if len(got) != accepted || got[0] != "m000000000" || got[len(got)-1] != fmt.Sprintf("m%09d", accepted-1) {
		t.Fatalf("Kafka holds %d records %v…, want the first %d", len(got), got[:min(3, len(got))], accepted)
	}
}

func TestOverflowDropOldest(t *testing.T) {
	port := testkit.FreePort(t)
	a := overflowApp(t, port, `overflow = "drop_oldest"`)
	c := testkit.MQTTClient(t, a.broker.Addrs()[0], "dev-do", nil)
	const n = 60
	for i := range n {
		if resp := testkit.Publish(t, c, "t/ovf", 1, fmt.Appendf(nil, "m%09d", i)); resp.ReasonCode != 0 {
			t.Fatalf("publish %d: reason %#x", i, resp.ReasonCode)
		}
	}
	testkit.NewKafka(t, port, kfake.SeedTopics(1, "ovf"))
	s := a.sinks[0].sink
	testkit.WaitFor(t, 30*time.Second, "delivery", func() bool { return s.Queued().Records == 0 && s.Counters.Success.Load() > 0 })
	success, dropped := s.Counters.Success.Load(), s.Counters.Dropped()[buffer.ReasonQueueFull]
	if success+dropped != n || success != fitInKB {
		t.Fatalf("delivered %d + dropped %d, want %d delivered of %d", success, dropped, fitInKB, n)
	}
	got := rawValues(t, fmt.Sprintf("127.0.0.1:%d", port), "ovf", int(success), 10*time.Second)
	if got[len(got)-1] != fmt.Sprintf("m%09d", n-1) || got[0] != fmt.Sprintf("m%09d", n-fitInKB) {
		t.Fatalf("Kafka holds %v … %v, want the newest %d", got[0], got[len(got)-1], fitInKB)
	}
}

// TestOverflowBlock: a full queue withholds the PUBACK until Kafka drains
// it; with a short block_timeout the publisher is refused instead.
func TestOverflowBlock(t *testing.T) {
	port := testkit.FreePort(t)
	a := overflowApp(t, port, "overflow = \"block\"\nblock_timeout = \"60s\"")
	c := fillQueue(t, a, "dev-b")
	acked := make(chan byte, 1)
	go func() {
		resp, err := c.Publish(context.Background(), &paho.Publish{Topic: "t/ovf", QoS: 1, Payload: []byte("m_blocked_")})
		if err != nil {
			acked <- 0xff
			return
		}
		acked <- resp.ReasonCode
	}()
	// Kafka is not there, so nothing can free room: the PUBACK must not come.
	select {
	case rc := <-acked:
		t.Fatalf("PUBACK (reason %#x) arrived while the queue was full", rc)
	case <-time.After(500 * time.Millisecond):
	}
	testkit.NewKafka(t, port, kfake.SeedTopics(1, "ovf"))
	select {
	case rc := <-acked:
		if rc != 0 {
			t.Fatalf("blocked publish finished with reason %#x", rc)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("PUBACK still withheld after Kafka drained the queue")
	}
	s := a.sinks[0].sink
	testkit.WaitFor(t, 30*time.Second, "delivery", func() bool { return s.Counters.Success.Load() == fitInKB+1 })
	if d := s.Counters.DroppedTotal(); d != 0 {
		t.Fatalf("dropped %v under block", s.Counters.Dropped())
	}
}

func TestOverflowBlockTimeout(t *testing.T) {
	port := testkit.FreePort(t)
	a := overflowApp(t, port, "overflow = \"block\"\nblock_timeout = \"200ms\"")
	c := fillQueue(t, a, "dev-bt")
	if resp := testkit.Publish(t, c, "t/ovf", 1, []byte("m_timeout_")); resp.ReasonCode != 0x97 {
		t.Fatalf("reason %#x after block_timeout, want 0x97 quota exceeded", resp.ReasonCode)
	}
	if d := a.sinks[0].sink.Counters.Dropped()[buffer.ReasonQueueFull]; d != 1 {
		t.Fatalf("dropped %d, want 1", d)
	}
}

// restartConfig is a config whose Kafka is down (nothing on kafkaPort), with
// a fixed data dir so that a second start finds the first one's buffers.
func restartConfig(t *testing.T, kafkaPort int, dataDir, table string) string {
	cfg := testkit.BaseConfig(t, fmt.Sprintf("127.0.0.1:%d", kafkaPort), "rs")
	cfg = strings.Replace(cfg, "data_dir = ", fmt.Sprintf("data_dir = %q\n#", dataDir), 1)
	cfg = strings.Replace(cfg, `shutdown_timeout = "1s"`, `shutdown_timeout = "200ms"`, 1)
	return withBuffer(cfg, table)
}

// publishN publishes m0..m(n-1) on t/rs and requires every PUBACK.
func publishN(t *testing.T, a *App, n int) {
	c := testkit.MQTTClient(t, a.broker.Addrs()[0], fmt.Sprintf("dev-%d", time.Now().UnixNano()), nil)
	for i := range n {
		if resp := testkit.Publish(t, c, "t/rs", 1, fmt.Appendf(nil, "m%06d", i)); resp.ReasonCode != 0 {
			t.Fatalf("publish %d: reason %#x", i, resp.ReasonCode)
		}
	}
}

// TestGracefulRestartWithKafkaDown: hybrid (and disk) keep everything over a
// graceful restart; memory loses it, as documented, and counts the loss.
func TestGracefulRestartWithKafkaDown(t *testing.T) {
	for _, tc := range []struct {
		mode  string
		table string
		kept  bool
	}{
		{"hybrid", "mode = \"hybrid\"\nmemory_limit = \"8KB\"", true},
		{"disk", `mode = "disk"`, true},
		{"memory", `mode = "memory"`, false},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			const n = 300
			port := testkit.FreePort(t)
			dataDir := t.TempDir()
			a := startApp(t, restartConfig(t, port, dataDir, tc.table))
			publishN(t, a, n)
			_ = a.Stop()
			lost := a.sinks[0].sink.Counters.Dropped()[buffer.ReasonShutdown]
			if tc.kept && lost != 0 || !tc.kept && lost != n {
				t.Fatalf("%s: %d records counted lost at shutdown", tc.mode, lost)
			}
			testkit.NewKafka(t, port, kfake.SeedTopics(2, "rs"))
			b := startApp(t, restartConfig(t, port, dataDir, tc.table))
			if !tc.kept {
				// Nothing to wait for: prove the restarted memory buffer is empty.
				if q := b.sinks[0].sink.Queued(); q.Records != 0 {
					t.Fatalf("memory buffer holds %d records after restart", q.Records)
				}
				return
			}
			got := payloads(t, fmt.Sprintf("127.0.0.1:%d", port), "rs", n, 30*time.Second)
			seen := map[string]bool{}
			for _, vals := range got {
				for _, v := range vals {
					seen[v] = true
				}
			}
			if len(seen) != n {
				t.Fatalf("%s: %d of %d records delivered after a graceful restart", tc.mode, len(seen), n)
			}
		})
	}
}

// lastSegment returns the newest WAL segment file under dir.
func lastSegment(t *testing.T, dir string) string {
	t.Helper()
	var segs []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if name, ok := strings.CutSuffix(d.Name(), ".seg"); ok && !d.IsDir() && len(name) == 20 && strings.Trim(name, "0123456789") == "" {
			segs = append(segs, p)
		}
		return nil
	})
	if err != nil || len(segs) == 0 {
		t.Fatalf("no segment file under %s: %v", dir, err)
	}
	sort.Strings(segs)
	return segs[len(segs)-1]
}

// TestTornTail: a torn write or a flipped byte at the end of the WAL costs
// the damaged record only; the process starts, reports it and delivers the rest.
func TestTornTail(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, seg string)
	}{
		{"truncated", func(t *testing.T, seg string) {
			fi, err := os.Stat(seg)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(seg, fi.Size()-3); err != nil {
				t.Fatal(err)
			}
		}},
		{"flipped", func(t *testing.T, seg string) {
			data, err := os.ReadFile(seg)
			if err != nil {
				t.Fatal(err)
			}
			data[len(data)-4] ^= 0x5a
			if err := os.WriteFile(seg, data, 0o600); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const n = 50
			port := testkit.FreePort(t)
			dataDir := t.TempDir()
			a := startApp(t, restartConfig(t, port, dataDir, `mode = "disk"`))
			publishN(t, a, n)
			_ = a.Stop()
			tc.damage(t, lastSegment(t, filepath.Join(dataDir, "buffer")))

			testkit.NewKafka(t, port, kfake.SeedTopics(1, "rs"))
			_, logs := startAppLogged(t, restartConfig(t, port, dataDir, `mode = "disk"`))
			got := payloads(t, fmt.Sprintf("127.0.0.1:%d", port), "rs", n-1, 30*time.Second)[0]
			if len(got) != n-1 || got[len(got)-1] != fmt.Sprintf("m%06d", n-2) {
				t.Fatalf("delivered %d records ending %v, want the %d before the damage", len(got), got[len(got)-1:], n-1)
			}
			if !strings.Contains(logs.String(), "corrupt") {
				t.Fatalf("the loss was not reported:\n%s", logs.String())
			}
		})
	}
}
