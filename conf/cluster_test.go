package conf

import (
	"testing"
	"time"
)

const clusterConnector = `
[[connectors]]
name = "k"
bootstrap_hosts = "127.0.0.1:9092"
`

func TestClusterDefaults(t *testing.T) {
	cfg, ps := parseBroker(t, `[broker]
node = "n1"
[cluster]
name = "prod"
connector = "k"
`+clusterConnector)
	if len(ps) > 0 {
		t.Fatal(fmtProblems(ps))
	}
	want := Cluster{Name: "prod", Connector: "k", ReplicationFactor: 3, Partitions: 12,
		NodeTimeout: 15 * time.Second, HeartbeatInterval: 5 * time.Second, MaxQueueBytes: 64 * MB, MaxRoutes: 100_000}
	if cfg.Cluster == nil || *cfg.Cluster != want {
		t.Fatalf("cluster = %+v, want %+v", cfg.Cluster, want)
	}
	if p := cfg.Cluster.TopicPrefix(); p != "mqkafka.prod." {
		t.Fatalf("prefix %q", p)
	}
	if cfg, _ := parseBroker(t, clusterConnector); cfg.Cluster != nil {
		t.Fatal("a config without [cluster] is in a cluster")
	}
}

func TestClusterProblemsHaveLines(t *testing.T) {
	head := "[broker]\nnode = \"n1\"\n[cluster]\nname = \"prod\"\nconnector = \"k\"\n"
	for _, c := range []struct {
		text   string
		line   int
		prefix string
	}{
		{"[cluster]\nname = \"prod\"\nconnector = \"k\"\n" + clusterConnector, 0, "broker.node: must be set"},
		{"[broker]\nnode = \"n1\"\n[cluster]\nname = \"a b\"\nconnector = \"k\"\n" + clusterConnector, 4, "cluster.name:"},
		{"[broker]\nnode = \"n1\"\n[cluster]\nname = \"prod\"\nconnector = \"nope\"\n" + clusterConnector, 5, `cluster.connector: no connector named "nope"`},
		{head + "replication_factor = 0\n" + clusterConnector, 6, "cluster.replication_factor:"},
		{head + "partitions = 0\n" + clusterConnector, 6, "cluster.partitions:"},
		{head + "node_timeout = \"5s\"\n" + clusterConnector, 6, "cluster.node_timeout: must be at least twice"},
		{head + "heartbeat_interval = \"1ms\"\n" + clusterConnector, 6, "cluster.heartbeat_interval:"},
		{head + "max_queue_bytes = \"1KB\"\n" + clusterConnector, 6, "cluster.max_queue_bytes:"},
		{head + "max_routes = -1\n" + clusterConnector, 6, "cluster.max_routes:"},
		{"[broker]\nnode = \"n1\"\n[cluster]\nconnector = \"k\"\n" + clusterConnector, 3, `missing required key "name" in [cluster]`},
	} {
		wantBrokerProblem(t, c.text, c.line, c.prefix)
	}
	if _, ps := parseBroker(t, head+"replication_factor = -1\n"+clusterConnector); len(ps) > 0 {
		t.Fatalf("replication_factor -1 refused: %s", fmtProblems(ps))
	}
}
