package admin

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mqkafka/mqkafka/cluster"
	"github.com/mqkafka/mqkafka/internal/testkit"
)

// TestClusterEndpointAndMetrics: /api/v1/cluster lists the nodes (404 on a
// node in no cluster), and /metrics exports the cluster's figures.
func TestClusterEndpointAndMetrics(t *testing.T) {
	rt := &fakeRuntime{}
	url := startServer(t, rt)
	if resp, body := testkit.Do(t, "GET", url+"/api/v1/cluster", "tok", ""); resp.StatusCode != http.StatusNotFound || !strings.Contains(body, "no cluster") {
		t.Fatalf("without a cluster: %d %s", resp.StatusCode, body)
	}
	beat := time.Now().Add(-3 * time.Second)
	rt.mu.Lock()
	rt.snap.Cluster = &cluster.Status{Name: "prod", Self: "n1", Routes: 4, MessagesIn: 7, MessagesOut: 9, MessagesDropped: 1, Kafka: "connected",
		Nodes: []cluster.NodeStatus{{ID: "n1", Address: "10.0.0.1:1883", Status: "up", LastHeartbeat: beat},
			{ID: "n2", Address: "10.0.0.2:1883", Status: "down", LastHeartbeat: beat}}}
	rt.mu.Unlock()
	resp, body := testkit.Do(t, "GET", url+"/api/v1/cluster", "tok", "")
	for _, want := range []string{`"name": "prod"`, `"id": "n2"`, `"address": "10.0.0.2:1883"`, `"status": "down"`, `"last_heartbeat"`, `"connections"`, `"version"`} {
		if resp.StatusCode != 200 || !strings.Contains(body, want) {
			t.Fatalf("GET /api/v1/cluster: %d, no %s in\n%s", resp.StatusCode, want, body)
		}
	}
	_, metrics := testkit.Do(t, "GET", url+"/metrics", "tok", "")
	for _, want := range []string{"mqkafka_cluster_messages_in_total 7", "mqkafka_cluster_messages_out_total 9",
		"mqkafka_cluster_messages_dropped_total 1", "mqkafka_cluster_routes 4", `mqkafka_cluster_node_up{node="n2"} 0`,
		`mqkafka_cluster_heartbeat_age_seconds{node="n1"} 3`} {
		if !strings.Contains(metrics, want) {
			t.Fatalf("/metrics has no %q:\n%s", want, metrics)
		}
	}
}
