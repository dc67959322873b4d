package app

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/twmb/franz-go/pkg/kfake"
	"golang.org/x/crypto/bcrypt"

	"github.com/mqkafka/mqkafka/internal/testkit"
)

// TestBrokerTLSUsersAndACL: over a TLS listener, only configured users get
// in, and a publish the ACL denies is refused, counted as not_authorized
// and never reaches Kafka.
func TestBrokerTLSUsersAndACL(t *testing.T) {
	_, kafkaAddr := testkit.NewKafka(t, 0, kfake.SeedTopics(1, "secure"))
	ca := testkit.NewCA(t)
	srv := ca.Server(t, []net.IP{net.ParseIP("127.0.0.1")})
	hash, err := bcrypt.GenerateFromPassword([]byte("dev1-secret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	cfg := testkit.BaseConfig(t, kafkaAddr, "secure")
	cfg = strings.Replace(cfg, `listeners = [{ address = "127.0.0.1:0" }]`,
		fmt.Sprintf(`listeners = [{ type = "tls", address = "127.0.0.1:0", certfile = %q, keyfile = %q }]`, srv.CertFile, srv.KeyFile), 1)
	cfg = strings.Replace(cfg, "allow_anonymous = true\n", fmt.Sprintf(`allow_anonymous = false
[[broker.auth.users]]
username = "dev1"
password_hash = %q
[[broker.acl]]
permission = "allow"
action = "publish"
topics = ["t/${username}/#"]
`, hash), 1)
	a := startApp(t, cfg)
	addr := a.broker.Addrs()[0]
	dialTLS := func() net.Conn {
		conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.Pool()})
		if err != nil {
			t.Fatalf("TLS dial: %v", err)
		}
		return conn
	}

	// Anonymous and wrong passwords are refused.
	for _, cp := range []*paho.Connect{
		{ClientID: "anon", CleanStart: true},
		{ClientID: "dev1", CleanStart: true, Username: "dev1", UsernameFlag: true, Password: []byte("guess"), PasswordFlag: true},
	} {
		if _, ca, err := testkit.MQTTSession(t, dialTLS(), cp, nil); err == nil || ca == nil || ca.ReasonCode != 0x86 {
			t.Fatalf("%s: connack %+v, err %v; want refused with 0x86", cp.ClientID, ca, err)
		}
	}
	c, _, err := testkit.MQTTSession(t, dialTLS(), &paho.Connect{ClientID: "dev1", CleanStart: true, Username: "dev1", UsernameFlag: true,
		Password: []byte("dev1-secret"), PasswordFlag: true}, nil)
	if err != nil {
		t.Fatalf("dev1: %v", err)
	}
	if r := testkit.Publish(t, c, "t/dev1/temp", 1, []byte("ok")); r.ReasonCode != 0 {
		t.Fatalf("allowed publish: reason %#x", r.ReasonCode)
	}
	for _, topic := range []string{"t/dev2/temp", "t/x"} {
		if r := testkit.Publish(t, c, topic, 1, []byte("denied")); r.ReasonCode != 0x87 {
			t.Fatalf("denied publish to %s: reason %#x, want 0x87", topic, r.ReasonCode)
		}
	}
	if rc := testkit.Subscribe(t, c, "t/#"); rc != 0x87 {
		t.Fatalf("subscribe without a rule: reason %#x, want 0x87", rc)
	}
	if r := testkit.Publish(t, c, "t/dev1/last", 1, []byte("ok")); r.ReasonCode != 0 {
		t.Fatalf("allowed publish: reason %#x", r.ReasonCode)
	}
	recs := testkit.Consume(t, kafkaAddr, "secure", 2, 15*time.Second)
	var topics []string
	for _, r := range recs {
		var pr testkit.PublishedRecord
		if err := json.Unmarshal(r.Value, &pr); err != nil {
			t.Fatal(err)
		}
		topics = append(topics, pr.Topic)
	}
	if want := []string{"t/dev1/temp", "t/dev1/last"}; !slices.Equal(topics, want) {
		t.Fatalf("Kafka has %v, want %v", topics, want)
	}
	if n := a.Snapshot().Broker.Dropped["not_authorized"]; n != 2 {
		t.Fatalf("not_authorized = %d, want 2", n)
	}
	_, text := call(t, a, "GET", "/metrics", "", "")
	if v, ok := metric(text, `mqkafka_broker_dropped_total{reason="not_authorized"}`); !ok || v != 2 {
		t.Fatalf("/metrics not_authorized = %v (found %v)", v, ok)
	}
}

// TestBrokerStateSurvivesRestart: a retained message, and the QoS 1
// messages queued for an offline persistent session, are there after the
// process restarts on the same data_dir; the sinks' buffers are untouched.
func TestBrokerStateSurvivesRestart(t *testing.T) {
	_, kafkaAddr := testkit.NewKafka(t, 0, kfake.SeedTopics(1, "kept"))
	cfg := testkit.SinkConfig(t, kafkaAddr, "topic = \"kept\"\n[sinks.buffer]\nmode = \"disk\"")
	expiry := uint32(600)
	keeper := func(addr string, onMsg func(*paho.Publish)) (*paho.Client, *paho.Connack) {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c, ca, err := testkit.MQTTSession(t, conn, &paho.Connect{ClientID: "keeper", CleanStart: false,
			Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}}, onMsg)
		if err != nil {
			t.Fatal(err)
		}
		return c, ca
	}

	a := startApp(t, cfg)
	k, _ := keeper(a.broker.Addrs()[0], nil)
	if rc := testkit.Subscribe(t, k, "t/queue/#"); rc != 1 {
		t.Fatalf("subscribe: %#x", rc)
	}
	if err := k.Disconnect(&paho.Disconnect{}); err != nil {
		t.Fatal(err)
	}
	p := testkit.MQTTClient(t, a.broker.Addrs()[0], "pub", nil)
	testkit.WaitFor(t, 5*time.Second, "the session to go offline", func() bool {
		return a.Snapshot().Broker.Connections == 1
	})
	const n = 20
	for i := range n {
		testkit.Publish(t, p, "t/queue/x", 1, fmt.Appendf(nil, "q%d", i))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := p.Publish(ctx, &paho.Publish{Topic: "t/retained", QoS: 1, Retain: true, Payload: []byte("kept")}); err != nil {
		t.Fatal(err)
	}
	testkit.Consume(t, kafkaAddr, "kept", n+1, 15*time.Second)
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	dataDir := a.cfg.Broker.DataDir
	for _, dir := range []string{"mqtt", "buffer"} {
		if _, err := os.Stat(filepath.Join(dataDir, dir)); err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
	}

	b := startApp(t, cfg)
	if s := b.Snapshot().Broker; s.Retained != 1 || s.Subscriptions != 1 || s.Inflight != n {
		t.Errorf("after the restart: retained %d, subscriptions %d, inflight %d; want 1, 1, %d", s.Retained, s.Subscriptions, s.Inflight, n)
	}
	var mu sync.Mutex
	var got []string
	collect := func(m *paho.Publish) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, m.Topic+"="+string(m.Payload))
	}
	_, ca := keeper(b.broker.Addrs()[0], collect)
	if !ca.SessionPresent {
		t.Fatal("the persistent session is gone after the restart")
	}
	testkit.WaitFor(t, 10*time.Second, "the queued messages", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) >= n
	})
	late := testkit.MQTTClient(t, b.broker.Addrs()[0], "late", collect)
	testkit.Subscribe(t, late, "t/retained")
	testkit.WaitFor(t, 5*time.Second, "the retained message", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return slices.Contains(got, "t/retained=kept")
	})
	mu.Lock()
	defer mu.Unlock()
	if len(got) != n+1 {
		t.Fatalf("got %d messages after the restart, want %d: %v", len(got), n+1, got)
	}
	for i := range n {
		if !slices.Contains(got, fmt.Sprintf("t/queue/x=q%d", i)) {
			t.Fatalf("q%d is missing after the restart: %v", i, got)
		}
	}
}
