package app

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/mqkafka/mqkafka/internal/testkit"
)

// clusterNodeConfig is an app of cluster "t" on kafkaAddr named node, its
// admin API guarded by the token "s3cret".
func clusterNodeConfig(t testing.TB, kafkaAddr, node string) string {
	cfg := testkit.ConfigHead(t, kafkaAddr, "1s", "")
	cfg = strings.Replace(cfg, "[broker]\n", fmt.Sprintf("[broker]\nnode = %q\n", node), 1)
	cfg = strings.Replace(cfg, "[admin]\n", "[admin]\ntoken = \"s3cret\"\n", 1)
	return cfg + `
[cluster]
name = "t"
connector = "k"
replication_factor = 1
partitions = 2
heartbeat_interval = "200ms"
node_timeout = "1s"
`
}

// TestDashboardClusterPanel: the overview lists the nodes of the cluster
// with their state, and shows one down when it stops.
func TestDashboardClusterPanel(t *testing.T) {
	b := newBrowser(t)
	_, kafka := testkit.NewKafka(t, 0)
	a := startApp(t, clusterNodeConfig(t, kafka, "n1"))
	other := startApp(t, clusterNodeConfig(t, kafka, "n2"))
	b.do(t, "open the dashboard", chromedp.Navigate("http://"+a.admin.Addr()+"/"), chromedp.WaitVisible(chromedp.CSS("#token")))
	b.do(t, "log in", chromedp.SendKeys(chromedp.CSS("#token"), "s3cret"), chromedp.Click(chromedp.CSS("#login-form button[type=submit]")))
	nodes := `[...document.querySelectorAll('#cluster-nodes tbody tr')].map((r) => r.cells[0].textContent + ' ' + r.cells[1].textContent).join(', ')`
	b.wait(t, "both nodes up", nodes+` === 'n1 up, n2 up'`)
	b.screenshot(t, "cluster")
	if err := other.Stop(); err != nil {
		t.Fatal(err)
	}
	b.wait(t, "n2 down", nodes+` === 'n1 up, n2 down'`)
}

// TestReadyzFollowsTheClusterKafka: a node whose cluster's Kafka goes away
// stays up and says why it is not ready (/readyz 503), lists itself in
// /api/v1/cluster, and is ready again once Kafka is back.
func TestReadyzFollowsTheClusterKafka(t *testing.T) {
	startKafka := testkit.PersistentKafka(t)
	kc := startKafka()
	a := startApp(t, clusterNodeConfig(t, kc.ListenAddrs()[0], "n1"))
	ready := func() (int, string) { return call(t, a, "GET", "/readyz", "s3cret", "") }
	testkit.WaitFor(t, 10*time.Second, "ready", func() bool { code, _ := ready(); return code == http.StatusOK })
	if code, body := call(t, a, "GET", "/api/v1/cluster", "s3cret", ""); code != 200 || !strings.Contains(body, `"id": "n1"`) || !strings.Contains(body, `"status": "up"`) {
		t.Fatalf("GET /api/v1/cluster: %d %s", code, body)
	}
	if code, body := call(t, a, "GET", "/api/v1/config", "s3cret", ""); code != 200 || !strings.Contains(body, `"node_timeout": "1s"`) {
		t.Fatalf("GET /api/v1/config shows no [cluster]: %d %s", code, body)
	}

	kc.Close()
	testkit.WaitFor(t, 20*time.Second, "not ready with Kafka down", func() bool {
		code, body := ready()
		return code == http.StatusServiceUnavailable && strings.Contains(body, "cluster t: Kafka is disconnected")
	})
	kc = startKafka()
	defer func() {
		_ = a.Stop()
		kc.Close()
	}()
	testkit.WaitFor(t, 30*time.Second, "ready again", func() bool { code, _ := ready(); return code == http.StatusOK })
}

// TestReadyzNodeNameRunsTwice: two processes with one node name break each
// other's routes; each says so in /readyz.
func TestReadyzNodeNameRunsTwice(t *testing.T) {
	_, kafka := testkit.NewKafka(t, 0)
	a := startApp(t, clusterNodeConfig(t, kafka, "n1"))
	b := startApp(t, clusterNodeConfig(t, kafka, "n1"))
	for _, x := range []*App{a, b} {
		testkit.WaitFor(t, 10*time.Second, "not ready: the node name runs twice", func() bool {
			code, body := call(t, x, "GET", "/readyz", "s3cret", "")
			return code == http.StatusServiceUnavailable && strings.Contains(body, "cluster t: another process runs node n1")
		})
	}
}
