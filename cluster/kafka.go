package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/mqkafka/mqkafka/conf"
	"github.com/mqkafka/mqkafka/connector"
)

// The internal topics, after the cluster's prefix mqkafka.<name>.
const (
	topicNodes    = "nodes"    // compacted: a heartbeat per node
	topicRoutes   = "routes"   // compacted: node + filter, tombstoned when its last subscriber goes
	topicRetained = "retained" // compacted: MQTT topic → retained message, tombstone clears
	topicMessages = "messages" // deleted by age: publishes, partitioned by destination node
	topicSessions = "sessions" // compacted: client id → its session, tombstoned when it ends
	topicQueues   = "queues"   // deleted by age: messages for offline sessions, partitioned by client id
)

// stateTopics are read from their start by every node.
var stateTopics = []string{topicNodes, topicRoutes, topicRetained, topicSessions}

// logTopics are deleted by age, not compacted.
var logTopics = []string{topicMessages, topicQueues}

// clientConfig is a librdkafka client of the cluster's connector: its TLS,
// SASL and socket settings as the sinks get them, role's own settings,
// then [connectors.properties] over everything.
func (n *Node) clientConfig(role string, own kafka.ConfigMap) kafka.ConfigMap {
	cc := connector.Settings(n.cfg.Connector)
	cm := kafka.ConfigMap{"enable.metrics.push": false, "go.logs.channel.enable": true}
	for k, v := range own {
		cm[k] = v
	}
	return cc.ConfigMap(cc.ClusterID(n.cfg.Connector.Name, n.cfg.Node, role), cm)
}

// producerConfig is an idempotent producer, so that what one node sends to
// one partition stays in order through retries; a record waits for Kafka
// as long as it takes (message.timeout.ms 0), within queueBytes.
func (n *Node) producerConfig(role string, queueBytes int64) kafka.ConfigMap {
	return n.clientConfig(role, kafka.ConfigMap{
		"acks":                         "all",
		"enable.idempotence":           true,
		"linger.ms":                    1,
		"message.timeout.ms":           0,
		"queue.buffering.max.messages": 10_000_000,
		"queue.buffering.max.kbytes":   int(max(queueBytes/1024, 1)),
		"go.delivery.report.fields":    "none",
		"go.produce.channel.size":      1,
	})
}

// consumerConfig reads assigned partitions only: no group membership.
// Offsets are committed for the messages topic alone.
func (n *Node) consumerConfig(role string) kafka.ConfigMap {
	return n.clientConfig(role, kafka.ConfigMap{
		"group.id":                 n.topic("") + n.cfg.Node,
		"enable.auto.commit":       role == topicMessages,
		"enable.auto.offset.store": false,
		"auto.commit.interval.ms":  1000,
		"enable.partition.eof":     role != topicMessages,
		"auto.offset.reset":        "earliest",
		"fetch.wait.max.ms":        100,
	})
}

// topicSpec is how mqkafka creates an internal topic.
func (n *Node) topicSpec(name string) kafka.TopicSpecification {
	s := kafka.TopicSpecification{Topic: n.topic(name), NumPartitions: n.cfg.Partitions,
		ReplicationFactor: n.cfg.ReplicationFactor,
		Config:            map[string]string{"cleanup.policy": "compact", "max.message.bytes": strconv.Itoa(n.minTopicBytes())}}
	switch name {
	case topicNodes:
		s.NumPartitions = 1
	case topicMessages, topicQueues:
		s.Config["cleanup.policy"] = "delete"
	}
	return s
}

// ensureTopics creates the internal topics that are missing and checks
// those present: a state topic that is not compacted would lose state as it
// ages, a compacted messages topic would lose publishes.
func (n *Node) ensureTopics(ctx context.Context) error {
	// An admin client has no log channel; it logs to stderr.
	cm := n.clientConfig("admin", nil)
	delete(cm, "go.logs.channel.enable")
	admin, err := kafka.NewAdminClient(&cm)
	if err != nil {
		return fmt.Errorf("cluster: kafka admin client: %w", err)
	}
	defer admin.Close()
	md, err := admin.GetMetadata(nil, true, waitMillis(ctx))
	if err != nil {
		return fmt.Errorf("cluster: reading Kafka's topics through connector %s: %w", n.cfg.Connector.Name, err)
	}
	var missing []kafka.TopicSpecification
	var present []kafka.ConfigResource
	for _, name := range append(append([]string(nil), stateTopics...), logTopics...) {
		spec := n.topicSpec(name)
		if _, ok := md.Topics[spec.Topic]; ok {
			present = append(present, kafka.ConfigResource{Type: kafka.ResourceTopic, Name: spec.Topic})
			continue
		}
		missing = append(missing, spec)
	}
	if len(missing) > 0 {
		res, err := admin.CreateTopics(ctx, missing)
		if err != nil {
			return fmt.Errorf("cluster: creating topics: %w", err)
		}
		for i, r := range res {
			switch r.Error.Code() {
			case kafka.ErrNoError:
				n.log.Info("cluster topic created", "topic", r.Topic, "partitions", missing[i].NumPartitions,
					"replication_factor", missing[i].ReplicationFactor, "cleanup.policy", missing[i].Config["cleanup.policy"])
			case kafka.ErrTopicAlreadyExists:
				present = append(present, kafka.ConfigResource{Type: kafka.ResourceTopic, Name: r.Topic})
			case kafka.ErrTopicAuthorizationFailed, kafka.ErrClusterAuthorizationFailed:
				return fmt.Errorf("cluster: not allowed to create topic %s (%v): grant this connector's user CREATE on it, or create it with partitions=%d and cleanup.policy=%s",
					r.Topic, r.Error, missing[i].NumPartitions, missing[i].Config["cleanup.policy"])
			default:
				return fmt.Errorf("cluster: creating topic %s: %w", r.Topic, r.Error)
			}
		}
	}
	if len(present) == 0 {
		return nil
	}
	res, err := admin.DescribeConfigs(ctx, present)
	if err != nil {
		return fmt.Errorf("cluster: reading the internal topics' configs: %w", err)
	}
	var errs []error
	for _, r := range res {
		if r.Error.Code() != kafka.ErrNoError {
			errs = append(errs, fmt.Errorf("cluster: reading topic %s's config (needs DESCRIBE_CONFIGS): %w", r.Name, r.Error))
			continue
		}
		want := "compact"
		if r.Name == n.topic(topicMessages) || r.Name == n.topic(topicQueues) {
			want = "delete"
		}
		if got := r.Config["cleanup.policy"].Value; !strings.Contains(got, want) {
			errs = append(errs, fmt.Errorf("cluster: topic %s has cleanup.policy=%s, mqkafka needs %s (kafka-configs --alter --entity-type topics --entity-name %s --add-config cleanup.policy=%s)",
				r.Name, got, want, r.Name, want))
		}
		// A batch over it is refused whole, records that fit included.
		if got, err := strconv.Atoi(r.Config["max.message.bytes"].Value); err == nil && got < n.minTopicBytes() {
			errs = append(errs, fmt.Errorf("cluster: topic %s has max.message.bytes=%d, less than a batch of the connector's message.max.bytes (%d) takes; raise it (kafka-configs --alter --entity-type topics --entity-name %s --add-config max.message.bytes=%d) or lower message.max.bytes in [connectors.properties]",
				r.Name, got, n.maxRecord, r.Name, n.minTopicBytes()))
		}
	}
	return errors.Join(errs...)
}

// minTopicBytes is the max.message.bytes an internal topic needs for the
// largest batch librdkafka sends it.
func (n *Node) minTopicBytes() int { return n.maxRecord + conf.BatchOverhead }

// partitionCount asks Kafka how many partitions topic has.
func partitionCount(c *kafka.Consumer, topic string, ctx context.Context) (int32, error) {
	md, err := c.GetMetadata(&topic, false, waitMillis(ctx))
	if err != nil {
		return 0, fmt.Errorf("cluster: metadata of %s: %w", topic, err)
	}
	tm := md.Topics[topic]
	if tm.Error.Code() != kafka.ErrNoError {
		return 0, fmt.Errorf("cluster: metadata of %s: %w", topic, tm.Error)
	}
	if len(tm.Partitions) == 0 {
		return 0, fmt.Errorf("cluster: topic %s has no partitions", topic)
	}
	return int32(len(tm.Partitions)), nil
}

// waitMillis is what is left of ctx in milliseconds, for librdkafka's
// calls that take a timeout instead of a context.
func waitMillis(ctx context.Context) int {
	d, ok := ctx.Deadline()
	if !ok {
		return 10_000
	}
	return int(max(time.Until(d), time.Millisecond) / time.Millisecond)
}

// forwardLogs logs librdkafka's lines until the client closes its channel.
func forwardLogs(ch chan kafka.LogEvent, log *slog.Logger) {
	for ev := range ch {
		switch {
		case ev.Level <= 3:
			log.Warn("librdkafka", "tag", ev.Tag, "msg", ev.Message)
		case ev.Level <= 5:
			log.Info("librdkafka", "tag", ev.Tag, "msg", ev.Message)
		}
	}
}
