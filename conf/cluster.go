package conf

import (
	"strings"
	"time"
)

// Cluster joins this node to the nodes that name the same cluster and
// connector: they act as one MQTT broker, with Kafka carrying their shared
// state and the publishes that cross nodes. Absent, the node stands alone.
type Cluster struct {
	// Name is the cluster's name; its internal topics are mqkafka.<name>.*.
	Name string `toml:"name,required"`
	// Connector is the Kafka connector that carries the cluster; its TLS,
	// SASL and [connectors.properties] apply.
	Connector string `toml:"connector,required"`
	// ReplicationFactor and Partitions are given to the internal topics
	// mqkafka creates; -1 leaves the replication factor to Kafka.
	ReplicationFactor int `toml:"replication_factor"`
	Partitions        int `toml:"partitions"`
	// NodeTimeout is how long a node may be silent before the others show
	// it down and stop routing publishes to it.
	NodeTimeout time.Duration `toml:"node_timeout"`
	// HeartbeatInterval is how often a node announces itself.
	HeartbeatInterval time.Duration `toml:"heartbeat_interval"`
	// MaxQueueBytes bounds the cross-node publishes held in memory while
	// Kafka does not take them; more are dropped and counted.
	MaxQueueBytes ByteSize `toml:"max_queue_bytes"`
	// MaxRoutes bounds the distinct filters a node announces; every node
	// keeps every node's in memory. 0 means no limit.
	MaxRoutes int `toml:"max_routes"`
}

// SetDefaults fills a [cluster] table's defaults.
func (c *Cluster) SetDefaults() {
	c.ReplicationFactor = 3
	c.Partitions = 12
	c.NodeTimeout = 15 * time.Second
	c.HeartbeatInterval = 5 * time.Second
	c.MaxQueueBytes = 64 * MB
	c.MaxRoutes = 100_000
}

// TopicPrefix is the prefix of the cluster's internal topics.
func (c *Cluster) TopicPrefix() string { return "mqkafka." + c.Name + "." }

func (c *Config) validateCluster(bad func(path, format string, args ...any)) {
	cl := c.Cluster
	if cl == nil {
		return
	}
	if c.Broker.Node == "" {
		bad("broker.node", "must be set, and differ on every node, when [cluster] is")
	}
	if strings.ContainsAny(c.Broker.Node, "\x00") {
		bad("broker.node", "must not contain NUL")
	}
	if err := ValidTopicName(cl.TopicPrefix() + "retained"); err != nil || cl.Name == "" {
		bad("cluster.name", "%q: only letters, digits, '.', '_' and '-', at most 230 characters (it names Kafka topics)", cl.Name)
	}
	found := false
	for _, cn := range c.Connectors {
		found = found || cn.Name == cl.Connector
	}
	if !found {
		bad("cluster.connector", "no connector named %q", cl.Connector)
	}
	if cl.ReplicationFactor != -1 && (cl.ReplicationFactor < 1 || cl.ReplicationFactor > 32767) {
		bad("cluster.replication_factor", "must be between 1 and 32767, or -1 (Kafka's default)")
	}
	if cl.Partitions < 1 || cl.Partitions > 10000 {
		bad("cluster.partitions", "must be between 1 and 10000")
	}
	if cl.HeartbeatInterval < 100*time.Millisecond {
		bad("cluster.heartbeat_interval", "must be at least 100ms")
	}
	if cl.NodeTimeout < 2*cl.HeartbeatInterval {
		bad("cluster.node_timeout", "must be at least twice heartbeat_interval (%v)", cl.HeartbeatInterval)
	}
	if cl.MaxQueueBytes < MB {
		bad("cluster.max_queue_bytes", "must be at least 1MB")
	}
	if cl.MaxRoutes < 0 {
		bad("cluster.max_routes", "must not be negative (0: no limit)")
	}
}
