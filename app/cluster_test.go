package app

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mqkafka/mqkafka/internal/testkit"
)

// TestReadyzFollowsTheClusterKafka: a node whose cluster's Kafka goes away
// stays up and says why it is not ready (/readyz 503), lists itself in
// /api/v1/cluster, and is ready again once Kafka is back.
func TestReadyzFollowsTheClusterKafka(t *testing.T) {
	startKafka := testkit.PersistentKafka(t)
	kc := startKafka()
	cfg := strings.Replace(testkit.ConfigHead(t, kc.ListenAddrs()[0], "1s", ""), "[broker]\n", "[broker]\nnode = \"n1\"\n", 1) + `
[cluster]
name = "t"
connector = "k"
replication_factor = 1
partitions = 1
heartbeat_interval = "200ms"
node_timeout = "1s"
`
	a := startApp(t, cfg)
	ready := func() (int, string) { return call(t, a, "GET", "/readyz", "", "") }
	testkit.WaitFor(t, 10*time.Second, "ready", func() bool { code, _ := ready(); return code == http.StatusOK })
	if code, body := call(t, a, "GET", "/api/v1/cluster", "", ""); code != 200 || !strings.Contains(body, `"id": "n1"`) || !strings.Contains(body, `"status": "up"`) {
		t.Fatalf("GET /api/v1/cluster: %d %s", code, body)
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
