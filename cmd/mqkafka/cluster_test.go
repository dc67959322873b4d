package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/mqkafka/mqkafka/cluster"
	"github.com/mqkafka/mqkafka/internal/testkit"
)

// clusterNode is one `mqkafka serve` of a test cluster; its ports and data
// directory stay across restarts.
type clusterNode struct {
	name       string
	cfg        string // path of its config file
	mqtt, http string
	dataDir    string
	p          *proc
}

// clusterNodeConfig is a node of cluster "t" on kafkaAddr, with a source of
// topic "src" whose records are published to src/<key>, and by a rule's
// republish to rep/<key>.
func clusterNodeConfig(t testing.TB, kafkaAddr, name string) *clusterNode {
	t.Helper()
	n := &clusterNode{name: name, mqtt: fmt.Sprintf("127.0.0.1:%d", testkit.FreePort(t)),
		http: fmt.Sprintf("127.0.0.1:%d", testkit.FreePort(t))}
	text := testkit.SourceConfig(t, kafkaAddr, `
[cluster]
name = "t"
connector = "k"
replication_factor = 1
partitions = 3
heartbeat_interval = "300ms"
node_timeout = "5s"

[[sources]]
name = "src"
connector = "k"
topic = "src"
offset_reset_policy = "earliest"
[[sources.topic_mapping]]
kafka_topic = "src"
mqtt_topic = "src/${.key}"
qos = 1
payload_template = "${.value}"

[[rules]]
id = "rep"
sql = 'SELECT key, value FROM "$bridges/kafka_consumer:src"'
[[rules.republish]]
topic = "rep/${key}"
payload = "${value}"
qos = 1
`)
	text = strings.Replace(text, "[broker]\n", fmt.Sprintf("[broker]\nnode = %q\n", name), 1)
	text = strings.Replace(text, `listeners = [{ address = "127.0.0.1:0" }]`, fmt.Sprintf("listeners = [{ address = %q }]", n.mqtt), 1)
	text = strings.Replace(text, `listen = "127.0.0.1:0"`, fmt.Sprintf("listen = %q", n.http), 1)
	_, rest, _ := strings.Cut(text, `data_dir = "`)
	n.dataDir, _, _ = strings.Cut(rest, `"`)
	n.cfg = testkit.WriteConfig(t, text)
	return n
}

func (n *clusterNode) start(t testing.TB) { n.p = startProc(t, n.cfg) }

// wipe gives the node an empty data directory: what it knows after a
// restart then comes from Kafka only.
func (n *clusterNode) wipe(t testing.TB) {
	t.Helper()
	text, err := os.ReadFile(n.cfg)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	text = []byte(strings.Replace(string(text), fmt.Sprintf("data_dir = %q", n.dataDir), fmt.Sprintf("data_dir = %q", dir), 1))
	n.dataDir = dir
	if err := os.WriteFile(n.cfg, text, 0o600); err != nil {
		t.Fatal(err)
	}
}

// status is the node's GET /api/v1/cluster.
func (n *clusterNode) status(t testing.TB) cluster.Status {
	t.Helper()
	resp, err := http.Get("http://" + n.http + "/api/v1/cluster")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var s cluster.Status
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /api/v1/cluster on %s: %d %v", n.name, resp.StatusCode, err)
	}
	return s
}

// sees reports whether n shows exactly the nodes in want up (and no other).
func (n *clusterNode) sees(t testing.TB, want ...string) bool {
	var up []string
	for _, m := range n.status(t).Nodes {
		if m.Status == "up" {
			up = append(up, m.ID)
		}
	}
	return strings.Join(up, ",") == strings.Join(want, ",")
}

// routes waits until n routes by want filters of other nodes.
func (n *clusterNode) routes(t testing.TB, want int64) {
	t.Helper()
	testkit.WaitFor(t, 20*time.Second, fmt.Sprintf("%d routes on %s", want, n.name), func() bool { return n.status(t).Routes == want })
}

// groupStable waits until the consumer group has members members and is stable.
func groupStable(t testing.TB, kafkaAddr, group string, members int) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(kafkaAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	testkit.WaitFor(t, 30*time.Second, fmt.Sprintf("group %s stable with %d members", group, members), func() bool {
		req := kmsg.NewPtrDescribeGroupsRequest()
		req.Groups = []string{group}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		resp, err := req.RequestWith(ctx, cl)
		return err == nil && len(resp.Groups) == 1 && resp.Groups[0].State == "Stable" && len(resp.Groups[0].Members) == members
	})
}

// TestClusterOfThreeProcesses runs #16's scenarios on three `mqkafka serve`
// processes sharing one kfake: cross-node order, retained messages, a
// shared subscription, a source's records, and a node killed and back.
func TestClusterOfThreeProcesses(t *testing.T) {
	_, kafka := testkit.NewKafka(t, 0, kfake.SeedTopics(3, "src"))
	nodes := []*clusterNode{clusterNodeConfig(t, kafka, "n1"), clusterNodeConfig(t, kafka, "n2"), clusterNodeConfig(t, kafka, "n3")}
	for _, n := range nodes {
		n.start(t)
	}
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	// Processes started in a subtest live on: it is top's cleanup that kills them.
	top := t
	for _, n := range nodes {
		testkit.WaitFor(t, 20*time.Second, n.name+" to see the three nodes up", func() bool { return n.sees(t, "n1", "n2", "n3") })
	}

	t.Run("QoS1CrossNodeInOrder", func(t *testing.T) {
		box := &testkit.Inbox{}
		testkit.Subscriber(t, n3.mqtt, "order-sub", 0, box, 1, "order/#")
		n1.routes(t, 1)
		pub := testkit.MQTTClient(t, n1.mqtt, "order-pub", nil)
		const n = 1000
		want := make([]string, n)
		for i := range want {
			want[i] = fmt.Sprint(i)
			if r := testkit.Publish(t, pub, "order/a", 1, []byte(want[i])); r.ReasonCode != 0 {
				t.Fatalf("PUBACK %d", r.ReasonCode)
			}
		}
		testkit.WaitFor(t, 30*time.Second, "1,000 publishes on n3", func() bool { return box.Len() >= n })
		testkit.Settle(t, n1.mqtt, "order/a", box)
		if got := box.Payloads(); strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("n3 got %d publishes, not the 1,000 in order", len(got))
		}
		for _, p := range box.All() {
			if p.QoS != 1 {
				t.Fatalf("delivered at QoS %d", p.QoS)
			}
		}
	})

	t.Run("RetainedSetOnN2ClearedFromN3", func(t *testing.T) {
		testkit.PublishRetained(t, testkit.MQTTClient(t, n2.mqtt, "ret-pub", nil), "ret/1", "kept")
		testkit.WaitFor(t, 10*time.Second, "the retained message on n1", func() bool {
			return strings.Join(testkit.Retained(t, n1.mqtt, "ret/#"), ",") == "kept"
		})
		testkit.PublishRetained(t, testkit.MQTTClient(t, n3.mqtt, "ret-clr", nil), "ret/1", "")
		for _, n := range nodes {
			testkit.WaitFor(t, 10*time.Second, "the retained message cleared on "+n.name, func() bool {
				return len(testkit.Retained(t, n.mqtt, "ret/#")) == 0
			})
		}
	})

	t.Run("SharedSubscriptionOneMemberPerNode", func(t *testing.T) {
		boxes := make([]*testkit.Inbox, len(nodes))
		for i, n := range nodes {
			boxes[i] = &testkit.Inbox{}
			testkit.Subscriber(t, n.mqtt, "member-"+n.name, 0, boxes[i], 1, "$share/g/work/#")
		}
		for _, n := range nodes {
			n.routes(t, int64(len(nodes)-1)) // the group's filter on each other node
		}
		pub := testkit.MQTTClient(t, n1.mqtt, "work-pub", nil)
		const n = 600
		for i := range n {
			testkit.Publish(t, pub, "work/x", 1, fmt.Append(nil, i))
		}
		total := func() int { return boxes[0].Len() + boxes[1].Len() + boxes[2].Len() }
		testkit.WaitFor(t, 30*time.Second, "every job delivered", func() bool { return total() >= n })
		seen := map[string]int{}
		for i, b := range boxes {
			if b.Len() == 0 {
				t.Fatalf("the member on %s got nothing: %d, %d, %d", nodes[i].name, boxes[0].Len(), boxes[1].Len(), boxes[2].Len())
			}
			for _, p := range b.Payloads() {
				seen[p]++
			}
		}
		if len(seen) != n || total() != n {
			t.Fatalf("%d distinct jobs of %d, %d deliveries", len(seen), n, total())
		}
		t.Logf("jobs per member: n1 %d, n2 %d, n3 %d", boxes[0].Len(), boxes[1].Len(), boxes[2].Len())
	})

	t.Run("SourceRecordsAndRepublishReachEveryNodeOnce", func(t *testing.T) {
		boxes := make([]*testkit.Inbox, len(nodes))
		for i, n := range nodes {
			boxes[i] = &testkit.Inbox{}
			testkit.Subscriber(t, n.mqtt, "src-"+n.name, 0, boxes[i], 1, "src/#", "rep/#", "settle/"+n.name)
		}
		groupStable(t, kafka, "mqkafka-src", len(nodes))
		const n = 1000
		testkit.Produce(t, kafka, testkit.SeqRecords("src", 0, n))
		// Each record twice: by the source's mapping and by the rule's republish.
		for i, b := range boxes {
			testkit.WaitFor(t, 30*time.Second, "2,000 publishes on "+nodes[i].name, func() bool { return b.Len() >= 2*n })
		}
		for i, b := range boxes {
			testkit.Settle(t, nodes[i].mqtt, "settle/"+nodes[i].name, b)
			seen := map[string]bool{}
			for _, p := range b.All() {
				seen[p.Topic] = true
			}
			if b.Len() != 2*n || len(seen) != 2*n {
				t.Fatalf("the subscriber on %s got %d publishes, %d distinct, want the %d records once each on src/ and on rep/", nodes[i].name, b.Len(), len(seen), n)
			}
		}
	})

	t.Run("N2KilledAndBack", func(t *testing.T) {
		on1, on3 := &testkit.Inbox{}, &testkit.Inbox{}
		testkit.Subscriber(t, n1.mqtt, "kill-sub1", 0, on1, 1, "kill/#")
		testkit.Subscriber(t, n3.mqtt, "kill-sub3", 0, on3, 1, "kill/#")
		n2.p.kill()
		testkit.WaitFor(t, 20*time.Second, "n1 and n3 to show n2 down", func() bool { return n1.sees(t, "n1", "n3") && n3.sees(t, "n1", "n3") })
		p1, p3 := testkit.MQTTClient(t, n1.mqtt, "kill-pub1", nil), testkit.MQTTClient(t, n3.mqtt, "kill-pub3", nil)
		for i := range 100 {
			testkit.Publish(t, p1, "kill/from1", 1, fmt.Append(nil, "1-", i))
			testkit.Publish(t, p3, "kill/from3", 1, fmt.Append(nil, "3-", i))
		}
		testkit.WaitFor(t, 20*time.Second, "n1 and n3 delivering to each other", func() bool { return on1.Len() >= 200 && on3.Len() >= 200 })

		n2.start(top)
		for _, n := range nodes {
			testkit.WaitFor(t, 20*time.Second, n.name+" to see n2 back", func() bool { return n.sees(t, "n1", "n2", "n3") })
		}
		on2 := &testkit.Inbox{}
		testkit.Subscriber(t, n2.mqtt, "kill-sub2", 0, on2, 1, "kill/#")
		testkit.WaitFor(t, 20*time.Second, "n1 routing to n2 again", func() bool {
			for _, m := range n1.status(t).Nodes {
				if m.ID == "n2" {
					return m.Routes > 0
				}
			}
			return false
		})
		testkit.Publish(t, p1, "kill/from1", 1, []byte("after"))
		testkit.WaitFor(t, 20*time.Second, "n2 receiving from n1", func() bool { return on2.Len() >= 1 })
	})
	t.Run("RetainedSurvivesRestartOfAllNodes", func(t *testing.T) {
		testkit.PublishRetained(t, testkit.MQTTClient(t, n1.mqtt, "ret-pub2", nil), "ret/2", "lasting")
		testkit.WaitFor(t, 10*time.Second, "the retained message on n3", func() bool {
			return strings.Join(testkit.Retained(t, n3.mqtt, "ret/#"), ",") == "lasting"
		})
		for _, n := range nodes {
			if code := n.p.stop(t, 20*time.Second); code != 0 {
				t.Fatalf("%s exited %d", n.name, code)
			}
		}
		for _, n := range nodes {
			n.wipe(top)
			n.start(top)
		}
		for _, n := range nodes {
			if got := testkit.Retained(t, n.mqtt, "ret/#"); strings.Join(got, ",") != "lasting" {
				t.Fatalf("after every node restarted with an empty data_dir, %s has retained %q", n.name, got)
			}
		}
	})
}

// startHAProxy runs Debian's haproxy with examples/haproxy.cfg, its bind and
// servers pointed at nodes, and returns the address devices connect to.
func startHAProxy(t testing.TB, nodes []*clusterNode) string {
	t.Helper()
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		t.Skip("haproxy is not installed (.ci/run installs Debian's)")
	}
	text, err := os.ReadFile("../../examples/haproxy.cfg")
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", testkit.FreePort(t))
	cfg := strings.Replace(string(text), "bind :1883", "bind "+addr, 1)
	for i, n := range nodes {
		cfg = regexp.MustCompile(fmt.Sprintf(`server n%d \S+`, i+1)).ReplaceAllString(cfg, "server "+n.name+" "+n.mqtt)
	}
	cfgPath := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-db", "-f", cfgPath)
	out := &testkit.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("haproxy output:\n%s", out.String())
		}
	})
	testkit.WaitFor(t, 10*time.Second, "haproxy to listen", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return addr
}

// TestClusterThroughHAProxy: devices that know only the load balancer's
// address land on different nodes and see one broker: a publish reaches
// every subscriber in order, a shared group splits and loses nothing, and
// a retained message is there whichever node a later subscriber gets.
func TestClusterThroughHAProxy(t *testing.T) {
	_, kafka := testkit.NewKafka(t, 0, kfake.SeedTopics(3, "src"))
	nodes := []*clusterNode{clusterNodeConfig(t, kafka, "n1"), clusterNodeConfig(t, kafka, "n2"), clusterNodeConfig(t, kafka, "n3")}
	for _, n := range nodes {
		n.start(t)
	}
	for _, n := range nodes {
		testkit.WaitFor(t, 20*time.Second, n.name+" to see the three nodes up", func() bool { return n.sees(t, "n1", "n2", "n3") })
	}
	lb := startHAProxy(t, nodes)
	subs := make([]*testkit.Inbox, len(nodes))
	for i := range subs {
		subs[i] = &testkit.Inbox{}
		testkit.Subscriber(t, lb, fmt.Sprintf("lb-sub-%d", i), 0, subs[i], 1, "lb/#", "$share/g/job/#")
	}
	// leastconn gave each node one subscriber: each routes to the two others.
	for _, n := range nodes {
		n.routes(t, 4)
	}
	pub := testkit.MQTTClient(t, lb, "lb-pub", nil)
	const n = 300
	want := make([]string, n)
	for i := range want {
		want[i] = fmt.Sprint(i)
		testkit.Publish(t, pub, "lb/x", 1, []byte(want[i]))
		testkit.Publish(t, pub, "job/x", 1, []byte("job"+want[i]))
	}
	testkit.WaitFor(t, 30*time.Second, "every publish to every subscriber", func() bool {
		total := 0
		for _, b := range subs {
			total += b.Len()
		}
		return total >= 3*n+n
	})
	jobs := map[string]int{}
	for i, b := range subs {
		var lbs []string
		for _, p := range b.All() {
			if strings.HasPrefix(p.Topic, "job/") {
				jobs[string(p.Payload)]++
				continue
			}
			lbs = append(lbs, string(p.Payload))
		}
		if strings.Join(lbs, ",") != strings.Join(want, ",") {
			t.Fatalf("subscriber %d got %d of lb/x, not the %d in order", i, len(lbs), n)
		}
	}
	if len(jobs) != n {
		t.Fatalf("the shared group got %d distinct jobs of %d", len(jobs), n)
	}
	// Checked on each node: Settle's marker would cross nodes behind the balancer.
	testkit.PublishRetained(t, pub, "lb/retained", "here")
	for _, n := range nodes {
		testkit.WaitFor(t, 10*time.Second, "the retained message on "+n.name, func() bool {
			return strings.Join(testkit.Retained(t, n.mqtt, "lb/retained"), ",") == "here"
		})
	}
}
