package cluster_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"

	"github.com/mqkafka/mqkafka/ack"
	"github.com/mqkafka/mqkafka/broker"
	"github.com/mqkafka/mqkafka/cluster"
	"github.com/mqkafka/mqkafka/conf"
	"github.com/mqkafka/mqkafka/internal/testkit"
	"github.com/mqkafka/mqkafka/rule"
)

// rules is a broker's rule engine with one rule on every topic that
// counts what it is handed.
type rules struct{ n atomic.Int64 }

func (*rules) Matches(string) bool { return true }
func (r *rules) Publish(context.Context, ack.Wait, *rule.Event) error {
	r.n.Add(1)
	return nil
}

// member is one node: a broker and its membership, on one kfake.
type member struct {
	b     *broker.Broker
	n     *cluster.Node
	addr  string
	logs  *testkit.SyncBuffer
	once  sync.Once
	rules rules
}

// nodeConfig is node's config in cluster "t"; connectorTables are added to
// its connector.
func nodeConfig(t testing.TB, kafkaAddr, node, connectorTables string) *conf.Config {
	t.Helper()
	cfg, err := conf.Parse("test.toml", fmt.Appendf(nil, `
[broker]
node = %q
listeners = [{ address = "127.0.0.1:0" }]
data_dir = %q
[broker.auth]
allow_anonymous = true
[cluster]
name = "t"
connector = "k"
replication_factor = 1
partitions = 3
heartbeat_interval = "200ms"
node_timeout = "1s"
[[connectors]]
name = "k"
bootstrap_hosts = %q
%s
`, node, t.TempDir(), kafkaAddr, connectorTables))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// join starts a broker in the cluster, stopped when the test ends.
func join(t testing.TB, kafkaAddr, node string) *member {
	t.Helper()
	return joinWith(t, kafkaAddr, node, "")
}

// joinWith is join with tables added to the node's config.
func joinWith(t testing.TB, kafkaAddr, node, tables string) *member {
	t.Helper()
	return joinConfig(t, node, nodeConfig(t, kafkaAddr, node, tables))
}

// joinConfig is join with the node's config.
func joinConfig(t testing.TB, node string, cfg *conf.Config) *member {
	t.Helper()
	return joinSessions(t, node, cfg, nil)
}

// joinSessions is joinConfig that, with share, keeps the node's sessions in
// the cluster's, through what share makes of the node.
func joinSessions(t testing.TB, node string, cfg *conf.Config, share func(*cluster.Node) broker.Sessions) *member {
	t.Helper()
	m := &member{logs: &testkit.SyncBuffer{}}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s log:\n%s", node, m.logs.String())
		}
	})
	log := slog.New(slog.NewTextHandler(m.logs, nil)).With("node", node)
	var err error
	if m.b, err = broker.New(cfg.Broker, node, &m.rules, log); err != nil {
		t.Fatal(err)
	}
	if m.n, err = cluster.New(cluster.Config{Cluster: *cfg.Cluster, Node: node, Connector: cfg.Connectors[0], Version: "test"}, log); err != nil {
		t.Fatal(err)
	}
	if err := m.b.JoinCluster(m.n); err != nil {
		t.Fatal(err)
	}
	if share != nil {
		if err := m.b.ShareSessions(share(m.n)); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := m.n.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m.b.Start(); err != nil {
		t.Fatal(err)
	}
	if err := m.n.Start(m.b); err != nil {
		t.Fatal(err)
	}
	m.addr = m.b.Addrs()[0]
	t.Cleanup(m.stop)
	return m
}

// shareNode keeps a node's sessions in the cluster's as they are.
func shareNode(n *cluster.Node) broker.Sessions { return n }

// stop stops the node; it may be called again.
func (m *member) stop() {
	m.once.Do(func() {
		m.n.StopReceiving()
		_ = m.b.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		m.n.Close(ctx)
	})
}

// publish publishes at QoS 1 and waits for the PUBACK.
func publish(t testing.TB, c *paho.Client, topic, payload string) {
	t.Helper()
	if r := testkit.Publish(t, c, topic, 1, []byte(payload)); r.ReasonCode != 0 {
		t.Fatalf("PUBACK %d", r.ReasonCode)
	}
}

// routed waits until m routes to want filters of other nodes.
func routed(t testing.TB, m *member, want int64) {
	t.Helper()
	testkit.WaitFor(t, 10*time.Second, fmt.Sprintf("%d remote routes", want), func() bool { return m.n.Status().Routes == want })
}

// crossing is two nodes on kafka: a subscriber to t/# on n2, whose
// messages go to in, and a publisher on n1, which has n2's route.
type crossing struct {
	n1, n2   *member
	in       *testkit.Inbox
	sub, pub *paho.Client
}

func newCrossing(t testing.TB, kafka string) crossing {
	t.Helper()
	c := crossing{n1: join(t, kafka, "n1"), n2: join(t, kafka, "n2"), in: &testkit.Inbox{}}
	c.sub = testkit.Subscriber(t, c.n2.addr, "sub", 0, c.in, 1, "t/#")
	routed(t, c.n1, 1)
	c.pub = testkit.MQTTClient(t, c.n1.addr, "pub", nil)
	return c
}

func TestCrossNodePublishInOrder(t *testing.T) {
	_, kafka := testkit.NewKafka(t, 0)
	c := newCrossing(t, kafka)
	n1, n2, in, sub, pub := c.n1, c.n2, c.in, c.sub, c.pub
	publish(t, pub, "other/topic", "not routed")
	const n = 300
	var want []string
	for i := range n {
		want = append(want, fmt.Sprint(i))
		publish(t, pub, "t/a", want[i])
	}
	testkit.WaitFor(t, 20*time.Second, "every publish on n2", func() bool { return len(in.Payloads()) >= n })
	if got := in.Payloads(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("n2's subscriber got %d messages, out of order or other ones: %v", len(got), got)
	}
	if s := n1.n.Status(); s.MessagesOut != n || s.MessagesDropped != 0 {
		t.Fatalf("n1 sent %d (dropped %d), want %d: a publish no other node subscribes to crossed", s.MessagesOut, s.MessagesDropped, n)
	}
	if s := n2.n.Status(); s.MessagesIn != n {
		t.Fatalf("n2 delivered %d, want %d", s.MessagesIn, n)
	}
	// Sinks stay per node: the rules ran where the publishes came in.
	if got1, got2 := n1.rules.n.Load(), n2.rules.n.Load(); got1 != n+1 || got2 != 0 {
		t.Fatalf("the rules ran %d times on n1 and %d on n2, want %d and 0", got1, got2, n+1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := sub.Unsubscribe(ctx, &paho.Unsubscribe{Topics: []string{"t/#"}}); err != nil {
		t.Fatal(err)
	}
	routed(t, n1, 0)
}

func TestRetainedClusterWide(t *testing.T) {
	_, kafka := testkit.NewKafka(t, 0)
	n1, n2 := join(t, kafka, "n1"), join(t, kafka, "n2")
	testkit.PublishRetained(t, testkit.MQTTClient(t, n1.addr, "setter", nil), "r/1", "kept")
	testkit.WaitFor(t, 10*time.Second, "the retained message on n2", func() bool {
		return strings.Join(testkit.Retained(t, n2.addr, "r/#"), ",") == "kept"
	})
	testkit.PublishRetained(t, testkit.MQTTClient(t, n2.addr, "clearer", nil), "r/1", "")
	testkit.WaitFor(t, 10*time.Second, "the retained message cleared on n1", func() bool {
		return len(testkit.Retained(t, n1.addr, "r/#")) == 0
	})

	// A node that starts later reads the retained messages from Kafka.
	testkit.PublishRetained(t, testkit.MQTTClient(t, n1.addr, "setter2", nil), "r/2", "again")
	testkit.WaitFor(t, 10*time.Second, "the second retained message on n2", func() bool {
		return len(testkit.Retained(t, n2.addr, "r/#")) == 1
	})
	n3 := join(t, kafka, "n3")
	if got := testkit.Retained(t, n3.addr, "r/#"); strings.Join(got, ",") != "again" {
		t.Fatalf("n3 started with retained messages %q, want \"again\"", got)
	}
}

func TestSharedSubscriptionAcrossNodes(t *testing.T) {
	_, kafka := testkit.NewKafka(t, 0)
	n1, n2 := join(t, kafka, "n1"), join(t, kafka, "n2")
	a, b := &testkit.Inbox{}, &testkit.Inbox{}
	testkit.Subscriber(t, n1.addr, "a", 0, a, 1, "$share/g/s/#")
	testkit.Subscriber(t, n2.addr, "b", 0, b, 1, "$share/g/s/#")
	routed(t, n1, 1)
	routed(t, n2, 1)
	pub := testkit.MQTTClient(t, n1.addr, "pub", nil)
	const n = 200
	for i := range n {
		publish(t, pub, "s/x", fmt.Sprint(i))
	}
	testkit.WaitFor(t, 20*time.Second, "every publish once", func() bool { return len(a.Payloads())+len(b.Payloads()) >= n })
	seen := map[string]int{}
	for _, p := range append(a.Payloads(), b.Payloads()...) {
		seen[p]++
	}
	if len(seen) != n || len(a.Payloads())+len(b.Payloads()) != n {
		t.Fatalf("%d distinct of %d received (%d + %d)", len(seen), n, len(a.Payloads()), len(b.Payloads()))
	}
	if len(a.Payloads()) == 0 || len(b.Payloads()) == 0 {
		t.Fatalf("the group's load was not split: %d on n1, %d on n2", len(a.Payloads()), len(b.Payloads()))
	}
}

func TestNodeDownDropsItsRoutes(t *testing.T) {
	_, kafka := testkit.NewKafka(t, 0)
	n1, n2 := join(t, kafka, "n1"), join(t, kafka, "n2")
	testkit.Subscriber(t, n2.addr, "sub", 0, &testkit.Inbox{}, 1, "t/#")
	routed(t, n1, 1)
	testkit.WaitFor(t, 10*time.Second, "two nodes up", func() bool {
		s := n1.n.Status()
		return len(s.Nodes) == 2 && s.Nodes[0].Status == "up" && s.Nodes[1].Status == "up"
	})
	n2.stop()
	routed(t, n1, 0)
	s := n1.n.Status()
	if s.Nodes[1].ID != "n2" || s.Nodes[1].Status != "down" {
		t.Fatalf("after n2 stopped: %+v", s.Nodes)
	}
}

// loadError is what a node of cfg's cluster says when it loads the
// cluster's state.
func loadError(t testing.TB, cfg *conf.Config) error {
	t.Helper()
	n, err := cluster.New(cluster.Config{Cluster: *cfg.Cluster, Node: cfg.Broker.Node, Connector: cfg.Connectors[0]}, testkit.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	defer n.Close(ctx)
	return n.Load(ctx)
}

func TestTopicWithWrongCleanupPolicyRefused(t *testing.T) {
	kc, kafka := testkit.NewKafka(t, 0)
	if err := kc.CreateTopic("mqkafka.t.routes", 1, map[string]string{"cleanup.policy": "delete"}); err != nil {
		t.Fatal(err)
	}
	err := loadError(t, nodeConfig(t, kafka, "n1", ""))
	if err == nil || !strings.Contains(err.Error(), "mqkafka.t.routes has cleanup.policy=delete, mqkafka needs compact") {
		t.Fatalf("Load = %v, want the routes topic's policy refused", err)
	}
}

// TestKafkaUnreachable: while Kafka is down, local delivery goes on and
// publishes for other nodes wait; once it is back they arrive, in order,
// and no node was shown down meanwhile.
func TestKafkaUnreachable(t *testing.T) {
	startKafka := testkit.PersistentKafka(t)
	kc := startKafka()
	kafka := kc.ListenAddrs()[0]
	n1, n2 := join(t, kafka, "n1"), join(t, kafka, "n2")
	local, remote := &testkit.Inbox{}, &testkit.Inbox{}
	testkit.Subscriber(t, n1.addr, "local", 0, local, 1, "t/#")
	testkit.Subscriber(t, n2.addr, "remote", 0, remote, 1, "t/#")
	routed(t, n1, 1)
	pub := testkit.MQTTClient(t, n1.addr, "pub", nil)

	kc.Close()
	testkit.WaitFor(t, 20*time.Second, "n1 to see Kafka down", func() bool { return n1.n.Status().Kafka == "disconnected" })
	const n = 50
	var want []string
	for i := range n {
		want = append(want, fmt.Sprint(i))
		publish(t, pub, "t/x", want[i])
	}
	testkit.WaitFor(t, 5*time.Second, "local delivery while Kafka is down", func() bool { return len(local.Payloads()) == n })
	if got := remote.Payloads(); len(got) != 0 {
		t.Fatalf("n2 received %d with Kafka down", len(got))
	}
	if s := n1.n.Status(); s.Routes != 1 || s.Nodes[1].Status != "up" {
		t.Fatalf("with Kafka down n1 shows %+v", s)
	}

	kc = startKafka()
	defer func() {
		n1.stop()
		n2.stop()
		kc.Close()
	}()
	testkit.WaitFor(t, 60*time.Second, "the queued publishes on n2", func() bool { return len(remote.Payloads()) >= n })
	if got := remote.Payloads(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("n2 received %v", got)
	}
	// The status follows librdkafka's broker state events, which may come
	// after the first records got through.
	testkit.WaitFor(t, 20*time.Second, "n1 to show Kafka connected", func() bool { return n1.n.Status().Kafka == "connected" })
	if s := n1.n.Status(); s.MessagesDropped != 0 {
		t.Fatalf("after Kafka came back n1 shows %+v", s)
	}
}

func TestNoPermissionToCreateTopicsRefused(t *testing.T) {
	// "dev" may connect, and do nothing else.
	kafka := testkit.NewSASLKafka(t, "PLAIN", "admin", "admin", []kgo.Opt{kgo.SASL(plain.Auth{User: "admin", Pass: "admin"}.AsMechanism())},
		kfake.EnableACLs(), kfake.User("PLAIN", "dev", "pw"))
	err := loadError(t, nodeConfig(t, kafka, "n1", "[connectors.authentication]\nmechanism = \"plain\"\nusername = \"dev\"\npassword = \"pw\"\n"))
	if err == nil || !strings.Contains(err.Error(), "cluster: not allowed to create topic mqkafka.t.") || !strings.Contains(err.Error(), "grant this connector's user CREATE") {
		t.Fatalf("Load = %v, want creating the topics refused for want of permission", err)
	}
}
