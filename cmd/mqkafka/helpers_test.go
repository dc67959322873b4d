package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// freePort returns a loopback port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// newKafka starts a kfake cluster of one broker on port (0: any free port).
func newKafka(t testing.TB, port int, opts ...kfake.Opt) (*kfake.Cluster, string) {
	t.Helper()
	if port == 0 {
		port = freePort(t)
	}
	opts = append([]kfake.Opt{kfake.NumBrokers(1), kfake.Ports(port)}, opts...)
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatalf("kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return c, c.ListenAddrs()[0]
}

// testLogger writes to the test log only when the test fails or -v is set.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// startApp validates cfgText exactly as serve does and starts it in-process.
func startApp(t testing.TB, cfgText string) *app {
	t.Helper()
	path := filepath.Join(t.TempDir(), "mqkafka.toml")
	if err := os.WriteFile(path, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig(path)
	if err != nil {
		t.Fatalf("config: %v\n%s", err, cfgText)
	}
	a, err := start(cfg, testLogger(t))
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() { _ = a.stop() })
	return a
}

// baseConfig is a broker on a free port with one connector, one rule and one sink.
func baseConfig(t testing.TB, kafkaAddr, topic string) string {
	return fmt.Sprintf(`
shutdown_timeout = "5s"
[broker]
listeners = [{ address = "127.0.0.1:0" }]
data_dir = %q
[broker.auth]
allow_anonymous = true

[[connectors]]
name = "k"
bootstrap_hosts = %q
[connectors.properties]
"message.timeout.ms" = "10000"
"reconnect.backoff.max.ms" = "200"

[[rules]]
id = "r1"
sql = 'SELECT * FROM "t/#"'
actions = ["kafka_producer:s1"]

[[sinks]]
name = "s1"
connector = "k"
topic = %q
`, t.TempDir(), kafkaAddr, topic)
}

// connectMQTT opens an MQTT 5 connection; received publishes go to onMsg.
func connectMQTT(t testing.TB, addr, clientID string, onMsg func(*paho.Publish)) *paho.Client {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial mqtt: %v", err)
	}
	cc := paho.ClientConfig{ClientID: clientID, Conn: conn}
	if onMsg != nil {
		cc.OnPublishReceived = []func(paho.PublishReceived) (bool, error){
			func(pr paho.PublishReceived) (bool, error) { onMsg(pr.Packet); return true, nil },
		}
	}
	c := paho.NewClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ca, err := c.Connect(ctx, &paho.Connect{ClientID: clientID, CleanStart: true, KeepAlive: 30})
	if err != nil {
		t.Fatalf("mqtt connect: %v", err)
	}
	if ca.ReasonCode != 0 {
		t.Fatalf("mqtt connect refused: reason %d", ca.ReasonCode)
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	return c
}

func publish(t testing.TB, c *paho.Client, topic string, qos byte, payload []byte) *paho.PublishResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	resp, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: qos, Payload: payload})
	if err != nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
	return resp
}

// consume reads topic from the beginning with a real Kafka client until want
// records arrived or timeout passed, and returns what it read.
func consume(t testing.TB, kafkaAddr, topic string, want int, timeout time.Duration) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(kafkaAddr),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
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

// waitFor polls cond every 20ms until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
