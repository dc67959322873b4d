package broker

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/gorilla/websocket"
	"github.com/mqkafka/mqkafka/third_party/mochi/packets"

	"github.com/mqkafka/mqkafka/ack"
	"github.com/mqkafka/mqkafka/conf"
	"github.com/mqkafka/mqkafka/internal/testkit"
	"github.com/mqkafka/mqkafka/rule"
)

// recorder is the Publisher: it keeps the topics of the publishes it got.
type recorder struct {
	mu     sync.Mutex
	topics []string
}

func (r *recorder) Matches(string) bool { return true }

func (r *recorder) Publish(_ context.Context, _ ack.Wait, ev *rule.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.topics = append(r.topics, ev.Topic)
	return nil
}

func (r *recorder) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.topics)
}

// brokerConfig parses a [broker] table as the config file would give it.
func brokerConfig(t testing.TB, text string) conf.Broker {
	t.Helper()
	cfg, err := conf.Parse("test.toml", []byte(text))
	if err != nil {
		t.Fatalf("config: %v\n%s", err, text)
	}
	return cfg.Broker
}

func startBroker(t testing.TB, cfg conf.Broker) (*Broker, *recorder) {
	t.Helper()
	rec := &recorder{}
	return startBrokerWith(t, cfg, rec, nil), rec
}

// anonBroker starts an anonymous broker without persistence on one TCP
// listener, with keys added to its [broker] table.
func anonBroker(t testing.TB, keys string) (*Broker, *recorder) {
	t.Helper()
	return startBroker(t, brokerConfig(t, fmt.Sprintf(`[broker]
data_dir = %q
persistence = false
listeners = [{ address = "127.0.0.1:0" }]
%s
[broker.auth]
allow_anonymous = true
`, t.TempDir(), keys)))
}

// startBrokerWith starts a broker publishing to pub; setup, if set, runs
// before it serves.
func startBrokerWith(t testing.TB, cfg conf.Broker, pub Publisher, setup func(*Broker)) *Broker {
	t.Helper()
	if cfg.DataDir == conf.DefaultBroker().DataDir {
		// A relative default would write into the source tree.
		cfg.DataDir = t.TempDir()
	}
	// Not t.Log: mochi's connection goroutines may log after the test ended.
	logs := &testkit.SyncBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("broker log:\n%s", logs.String())
		}
	})
	b, err := New(cfg, "test@host", pub, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	if setup != nil {
		setup(b)
	}
	if err := b.Start(); err != nil {
		_ = b.Close()
		t.Fatal(err)
	}
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { _ = b.Close() }) })
	return b
}

func dial(t testing.TB, addr string) net.Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return conn
}

func pub(t testing.TB, c *paho.Client, topic string, qos byte, retain bool, payload string) *paho.PublishResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: qos, Retain: retain, Payload: []byte(payload)})
	if err != nil && resp == nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
	return resp
}

// inbox collects received payloads.
type inbox struct {
	mu   sync.Mutex
	msgs []string
}

func (in *inbox) add(p *paho.Publish) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.msgs = append(in.msgs, p.Topic+"="+string(p.Payload))
}

func (in *inbox) got() []string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return slices.Clone(in.msgs)
}

func wsDial(t testing.TB, url string, tc *tls.Config) (net.Conn, *http.Response, error) {
	t.Helper()
	d := websocket.Dialer{Subprotocols: []string{"mqtt"}, TLSClientConfig: tc, HandshakeTimeout: 5 * time.Second}
	c, resp, err := d.Dial(url, nil)
	if err != nil {
		return nil, resp, err
	}
	return &wsConn{Conn: c.NetConn(), c: c}, resp, nil
}

// TestListeners: one broker serves MQTT over TCP, TLS with client
// certificates, WebSocket and secure WebSocket at once.
func TestListeners(t *testing.T) {
	ca := testkit.NewCA(t)
	srv, client, pool := ca.Server(t, []net.IP{net.ParseIP("127.0.0.1")}), ca.Client(t, "device-1"), ca.Pool()
	b, rec := startBroker(t, brokerConfig(t, fmt.Sprintf(`[broker]
data_dir = %q
listeners = [
  { type = "tcp", address = "127.0.0.1:0" },
  { type = "tls", address = "127.0.0.1:0", certfile = %[2]q, keyfile = %[3]q, cacertfile = %[4]q, verify = "verify_peer", fail_if_no_peer_cert = true },
  { type = "ws", address = "127.0.0.1:0" },
  { type = "wss", address = "127.0.0.1:0", path = "/secure", certfile = %[2]q, keyfile = %[3]q },
]
[broker.auth]
allow_anonymous = true
`, t.TempDir(), srv.CertFile, srv.KeyFile, ca.CertFile)))
	addrs := b.Addrs()
	if len(addrs) != 4 || slices.ContainsFunc(addrs, func(a string) bool { return strings.HasSuffix(a, ":0") }) {
		t.Fatalf("addresses %v: want 4 bound ports", addrs)
	}
	withCert := &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{client.Certificate}}
	conns := map[string]func() (net.Conn, error){
		"tcp": func() (net.Conn, error) { return net.Dial("tcp", addrs[0]) },
		"tls": func() (net.Conn, error) { return tls.Dial("tcp", addrs[1], withCert) },
		"ws": func() (net.Conn, error) {
			c, _, err := wsDial(t, "ws://"+addrs[2]+"/mqtt", nil)
			return c, err
		},
		"wss": func() (net.Conn, error) {
			c, _, err := wsDial(t, "wss://"+addrs[3]+"/secure", &tls.Config{RootCAs: pool})
			return c, err
		},
	}
	var box inbox
	watcher := testkit.MQTTClient(t, addrs[0], "watcher", box.add)
	if rc := testkit.Subscribe(t, watcher, "via/#"); rc != 1 {
		t.Fatalf("subscribe: reason %#x", rc)
	}
	for _, kind := range []string{"tcp", "tls", "ws", "wss"} {
		conn, err := conns[kind]()
		if err != nil {
			t.Fatalf("%s: dial: %v", kind, err)
		}
		c, _, err := testkit.MQTTSession(t, conn, &paho.Connect{ClientID: "dev-" + kind, CleanStart: true}, nil)
		if err != nil {
			t.Fatalf("%s: connect: %v", kind, err)
		}
		if r := pub(t, c, "via/"+kind, 1, false, kind); r.ReasonCode != 0 {
			t.Fatalf("%s: PUBACK reason %#x", kind, r.ReasonCode)
		}
	}
	want := []string{"via/tcp", "via/tls", "via/ws", "via/wss"}
	if got := rec.got(); !slices.Equal(got, want) {
		t.Fatalf("the bridge got %v, want %v", got, want)
	}
	testkit.WaitFor(t, 5*time.Second, "deliveries", func() bool { return len(box.got()) == 4 })

	// fail_if_no_peer_cert: no client certificate, no connection.
	if conn, err := tls.Dial("tcp", addrs[1], &tls.Config{RootCAs: pool}); err == nil {
		// TLS 1.3 reports the refusal at the first read.
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := conn.Read(make([]byte, 1)); err == nil {
			t.Fatal("a TLS client without a certificate was served")
		}
		conn.Close()
	}
	// A WebSocket listener answers on its path only.
	if _, resp, err := wsDial(t, "ws://"+addrs[2]+"/other", nil); err == nil || resp == nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("ws on another path: err %v, response %v", err, resp)
	}
}

func TestAuthentication(t *testing.T) {
	h := string(mustHash(t, "s3cret"))
	for _, tc := range []struct {
		name     string
		auth     string
		user, pw string
		ok       bool
	}{
		{"anonymous refused", "allow_anonymous = false", "", "", false},
		{"anonymous allowed", "allow_anonymous = true", "", "", true},
		{"no users refuse everyone", "allow_anonymous = false", "u", "s3cret", false},
		{"right password", fmt.Sprintf("[[broker.auth.users]]\nusername = \"u\"\npassword_hash = %q", h), "u", "s3cret", true},
		{"wrong password", fmt.Sprintf("[[broker.auth.users]]\nusername = \"u\"\npassword_hash = %q", h), "u", "nope", false},
		{"unknown user", fmt.Sprintf("allow_anonymous = true\n[[broker.auth.users]]\nusername = \"u\"\npassword_hash = %q", h), "v", "s3cret", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, _ := startBroker(t, brokerConfig(t, fmt.Sprintf("[broker]\ndata_dir = %q\nlisteners = [{ address = \"127.0.0.1:0\" }]\n[broker.auth]\n%s\n", t.TempDir(), tc.auth)))
			cp := &paho.Connect{ClientID: "c", CleanStart: true, Username: tc.user, UsernameFlag: tc.user != "", Password: []byte(tc.pw), PasswordFlag: tc.pw != ""}
			_, ca, err := testkit.MQTTSession(t, dial(t, b.Addrs()[0]), cp, nil)
			if tc.ok && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !tc.ok && (err == nil || ca == nil || ca.ReasonCode != packets.ErrBadUsernameOrPassword.Code) {
				t.Fatalf("connack %+v, err %v: want reason %#x", ca, err, packets.ErrBadUsernameOrPassword.Code)
			}
		})
	}
}

// TestACL: denied publishes are answered "not authorized", never reach the
// bridge, and are counted; denied subscriptions are refused.
func TestACLDeniesPublishAndSubscribe(t *testing.T) {
	b, rec := startBroker(t, brokerConfig(t, fmt.Sprintf(`[broker]
data_dir = %q
listeners = [{ address = "127.0.0.1:0" }]
[broker.auth]
allow_anonymous = true
[[broker.acl]]
permission = "allow"
action = "publish"
topics = ["sensors/${clientid}/#"]
[[broker.acl]]
permission = "deny"
action = "subscribe"
topics = ["sensors/+/secret"]
[[broker.acl]]
permission = "allow"
action = "subscribe"
topics = ["sensors/#"]
`, t.TempDir())))
	addr := b.Addrs()[0]
	var box inbox
	s := testkit.MQTTClient(t, addr, "reader", box.add)
	for filter, want := range map[string]byte{"sensors/#": 1, "sensors/d1/secret": 0x87, "other/#": 0x87, "#": 0x87} {
		if rc := testkit.Subscribe(t, s, filter); rc != want {
			t.Errorf("subscribe %s: reason %#x, want %#x", filter, rc, want)
		}
	}
	d1 := testkit.MQTTClient(t, addr, "d1", nil)
	if r := pub(t, d1, "sensors/d1/temp", 1, false, "21"); r.ReasonCode != 0 {
		t.Fatalf("allowed publish: reason %#x", r.ReasonCode)
	}
	if r := pub(t, d1, "sensors/d2/temp", 1, false, "spoofed"); r.ReasonCode != packets.ErrNotAuthorized.Code {
		t.Fatalf("denied publish: reason %#x, want %#x", r.ReasonCode, packets.ErrNotAuthorized.Code)
	}
	pub(t, d1, "other/x", 0, false, "qos0")
	// Delivery is checked too: sensors/# is allowed, its secret subtopics are not.
	pub(t, d1, "sensors/d1/secret", 1, false, "pin")
	pub(t, d1, "sensors/d1/done", 1, false, "end")
	testkit.WaitFor(t, 5*time.Second, "deliveries", func() bool { return len(box.got()) == 2 })
	if got, want := box.got(), []string{"sensors/d1/temp=21", "sensors/d1/done=end"}; !slices.Equal(got, want) {
		t.Fatalf("delivered %v, want %v", got, want)
	}
	if got, want := rec.got(), []string{"sensors/d1/temp", "sensors/d1/secret", "sensors/d1/done"}; !slices.Equal(got, want) {
		t.Fatalf("the bridge got %v, want %v", got, want)
	}
	if n := b.Drops()["not_authorized"]; n != 2 {
		t.Fatalf("not_authorized = %d, want 2", n)
	}
}

// rawConnect sends an MQTT 3.1.1 CONNECT and returns the CONNACK return code.
func rawConnect(t *testing.T, addr string, keepalive uint16) byte {
	t.Helper()
	pk := v3connect("v3", true)
	pk.Connect.Keepalive = keepalive
	c, ack := open(t, addr, pk)
	defer c.conn.Close()
	if ack.FixedHeader.Type != packets.Connack {
		t.Fatalf("got packet type %d, want a CONNACK", ack.FixedHeader.Type)
	}
	return ack.ReasonCode
}

func TestKeepaliveBoundsAndConnackLimits(t *testing.T) {
	b, _ := startBroker(t, brokerConfig(t, fmt.Sprintf(`[broker]
data_dir = %q
listeners = [{ address = "127.0.0.1:0" }]
min_keepalive = "10s"
max_keepalive = "60s"
max_packet_size = "1KB"
retain_available = false
[broker.auth]
allow_anonymous = true
`, t.TempDir())))
	addr := b.Addrs()[0]
	for _, tc := range []struct {
		ask, want uint16 // 0 want: the client's own value stands
	}{{0, 60}, {600, 60}, {2, 10}, {30, 0}} {
		cp := &paho.Connect{ClientID: fmt.Sprintf("ka%d", tc.ask), CleanStart: true, KeepAlive: tc.ask}
		c := paho.NewClient(paho.ClientConfig{ClientID: cp.ClientID, Conn: dial(t, addr)})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		ca, err := c.Connect(ctx, cp)
		cancel()
		if err != nil {
			t.Fatalf("keepalive %d: %v", tc.ask, err)
		}
		got := ca.Properties.ServerKeepAlive
		switch {
		case tc.want == 0 && got != nil:
			t.Errorf("keepalive %d: server keepalive %d, want none", tc.ask, *got)
		case tc.want != 0 && (got == nil || *got != tc.want):
			t.Errorf("keepalive %d: server keepalive %v, want %d", tc.ask, got, tc.want)
		}
		if mps := ca.Properties.MaximumPacketSize; mps == nil || *mps != 1024 {
			t.Errorf("maximum packet size %v, want 1024", mps)
		}
		if ca.Properties.RetainAvailable {
			t.Error("retain available, want not")
		}
		_ = c.Disconnect(&paho.Disconnect{})
	}
	// MQTT 3.1.1 cannot be told: more than max_keepalive (or none) is refused.
	for ka, want := range map[uint16]byte{0: 2, 61: 2, 60: 0, 5: 0} {
		if rc := rawConnect(t, addr, ka); rc != want {
			t.Errorf("MQTT 3.1.1 keepalive %d: return code %d, want %d", ka, rc, want)
		}
	}
}

// TestSessionsSurviveRestart: subscriptions, QoS 1 messages queued for an
// offline persistent session and retained messages are back after a
// restart; clean sessions are not; max_inflight drops are counted.
func TestSessionsSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	cfg := brokerConfig(t, fmt.Sprintf(`[broker]
data_dir = %q
listeners = [{ address = "127.0.0.1:0" }]
max_inflight = 5
[broker.auth]
allow_anonymous = true
`, dir))
	expiry := uint32(3600)
	persistent := func(onMsg func(*paho.Publish)) func(addr string) (*paho.Client, *paho.Connack) {
		return func(addr string) (*paho.Client, *paho.Connack) {
			c, ca, err := testkit.MQTTSession(t, dial(t, addr), &paho.Connect{ClientID: "keeper", CleanStart: false,
				Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}}, onMsg)
			if err != nil {
				t.Fatal(err)
			}
			return c, ca
		}
	}

	b1, _ := startBroker(t, cfg)
	k, _ := persistent(nil)(b1.Addrs()[0])
	testkit.Subscribe(t, k, "q/#")
	if err := k.Disconnect(&paho.Disconnect{}); err != nil {
		t.Fatal(err)
	}
	testkit.Subscribe(t, testkit.MQTTClient(t, b1.Addrs()[0], "cleaner", nil), "clean/#")
	p := testkit.MQTTClient(t, b1.Addrs()[0], "pub", nil)
	waitOffline(t, b1, "keeper")
	for i := range 7 {
		pub(t, p, "q/x", 1, false, fmt.Sprint(i))
	}
	pub(t, p, "r/1", 1, true, "kept")
	if n := b1.Drops()["max_inflight"]; n != 2 {
		t.Fatalf("max_inflight drops = %d, want 2 (7 queued, max_inflight 5)", n)
	}
	_ = p.Disconnect(&paho.Disconnect{})
	if err := b1.Close(); err != nil {
		t.Fatal(err)
	}

	b2, _ := startBroker(t, cfg)
	in := b2.srv.Info.Clone()
	if in.Retained != 1 || in.Subscriptions != 1 || in.Inflight != 5 {
		t.Errorf("restored: retained %d, subscriptions %d, inflight %d; want 1, 1, 5", in.Retained, in.Subscriptions, in.Inflight)
	}
	var box inbox
	_, ca := persistent(box.add)(b2.Addrs()[0])
	if !ca.SessionPresent {
		t.Fatal("session not present after the restart")
	}
	testkit.WaitFor(t, 5*time.Second, "queued messages", func() bool { return len(box.got()) == 5 })
	// mochi resends a session's queue sorted by the second each message was
	// made in, so messages of one second come in any order.
	got := box.got()
	slices.Sort(got)
	if want := []string{"q/x=0", "q/x=1", "q/x=2", "q/x=3", "q/x=4"}; !slices.Equal(got, want) {
		t.Fatalf("after the restart got %v, want %v", got, want)
	}
	var retained inbox
	testkit.Subscribe(t, testkit.MQTTClient(t, b2.Addrs()[0], "late", retained.add), "r/#")
	testkit.WaitFor(t, 5*time.Second, "the retained message", func() bool { return len(retained.got()) == 1 })
	if got := retained.got()[0]; got != "r/1=kept" {
		t.Fatalf("retained %q", got)
	}
	if _, ok := b2.srv.Clients.Get("cleaner"); ok {
		t.Fatal("a clean session was restored")
	}
}
