// Package admin is the operator's side of mqkafka: the REST API, Prometheus
// /metrics, health endpoints and the token that guards them. It reads the
// running process through a Runtime, so it never reaches into the stages.
package admin

import (
	"context"
	"time"

	"github.com/mqkafka/mqkafka/cluster"
	"github.com/mqkafka/mqkafka/conf"
)

// Snapshot is the state of the whole process at one moment.
type Snapshot struct {
	Time       time.Time         `json:"time"`
	Version    string            `json:"version"`
	Started    time.Time         `json:"started"`
	Broker     BrokerStats       `json:"broker"`
	Listeners  []string          `json:"listeners"`
	Connectors []ConnectorStatus `json:"connectors"`
	Sinks      []SinkStatus      `json:"sinks"`
	Sources    []SourceStatus    `json:"sources"`
	// Cluster is nil on a node that stands alone.
	Cluster *cluster.Status `json:"cluster,omitempty"`
	Rules   []RuleStatus    `json:"rules"`
}

// BrokerStats are the MQTT broker's figures.
type BrokerStats struct {
	Connections int64 `json:"connections"`
	// Sessions are the sessions held here, connected or offline: what
	// max_sessions bounds.
	Sessions int64 `json:"sessions"`
	// ConnectionsPending are connections accepted that have not sent
	// CONNECT yet; idle_timeout closes them.
	ConnectionsPending int64 `json:"connections_pending"`
	// AcceptErrors counts failed accepts (e.g. out of file descriptors),
	// which the listeners retry.
	AcceptErrors     int64 `json:"accept_errors"`
	MessagesReceived int64 `json:"messages_received"`
	MessagesSent     int64 `json:"messages_sent"`
	MessagesDropped  int64 `json:"messages_dropped"`
	BytesReceived    int64 `json:"bytes_received"`
	BytesSent        int64 `json:"bytes_sent"`
	Retained         int64 `json:"retained"`
	Subscriptions    int64 `json:"subscriptions"`
	Inflight         int64 `json:"inflight"`
	// Dropped counts publishes the broker did not deliver, by reason:
	// not_authorized, not_authorized_delivery, max_inflight,
	// max_mqueue_len, max_mqueue_bytes, max_client_writes_pending.
	Dropped map[string]int64 `json:"dropped"`
	// Refused counts what clients were refused for exceeding a limit, by
	// reason (the limit's config key or the cause).
	Refused map[string]int64 `json:"refused"`
	// Rates are of messages_received and messages_sent.
	Rates Rates `json:"rates"`
}

// ConnectorStatus is one Kafka cluster's connection state.
type ConnectorStatus struct {
	Name   string `json:"name"`
	Status string `json:"status"` // connected | connecting | disconnected
	// Code is the /metrics value: 0 disconnected, 1 connecting, 2 connected.
	Code int `json:"status_code"`
}

// SinkStatus is one sink's configuration, counters and queues.
type SinkStatus struct {
	Name      string `json:"name"`
	Connector string `json:"connector"`
	Status    string `json:"status"`
	// BufferError says why the sink's buffer refuses records (a disk
	// write failed), empty while it takes them.
	BufferError string            `json:"buffer_error,omitempty"`
	Config      conf.Sink         `json:"config"`
	Counters    SinkCounters      `json:"counters"`
	Partitions  []PartitionStatus `json:"partitions"`
	// Rates are of counters.matched and counters.success.
	Rates Rates `json:"rates"`
}

// SinkCounters are a sink's totals since start, named as EMQX's action metrics.
type SinkCounters struct {
	Matched  int64            `json:"matched"`
	Success  int64            `json:"success"`
	Failed   int64            `json:"failed"`
	Retried  int64            `json:"retried"`
	Dropped  map[string]int64 `json:"dropped"`
	Queuing  int64            `json:"queuing"`
	Inflight int64            `json:"inflight"`
	// InflightBytes is what max_inflight_bytes bounds.
	InflightBytes int64 `json:"inflight_bytes"`
}

// PartitionStatus is one partition queue's gauges; Partition -1 is the
// holding queue of records waiting for the topic's metadata.
type PartitionStatus struct {
	Topic        string `json:"topic"`
	Partition    int32  `json:"partition"`
	Queuing      int64  `json:"queuing"`
	QueuingBytes int64  `json:"queuing_bytes"`
	Inflight     int64  `json:"inflight"`
}

// SourceStatus is one Kafka source's counters.
type SourceStatus struct {
	Name     string           `json:"name"`
	Status   string           `json:"status"`
	Received int64            `json:"received"`
	Success  int64            `json:"success"`
	Failed   int64            `json:"failed"`
	Dropped  map[string]int64 `json:"dropped"`
	Lag      []PartitionLag   `json:"lag"`
	// Rates are of received and success.
	Rates  Rates `json:"rates"`
	Config any   `json:"config"`
}

// PartitionLag is a source's consumer lag on one partition.
type PartitionLag struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Lag       int64  `json:"lag"`
}

// RuleStatus is one rule's metrics, as EMQX's rule metrics.
type RuleStatus struct {
	ID       string   `json:"id"`
	SQL      string   `json:"sql"`
	Actions  []string `json:"actions"`
	Matched  int64    `json:"matched"`
	Passed   int64    `json:"passed"`
	Failed   int64    `json:"failed"`
	NoResult int64    `json:"no_result"`
	// Rates are of matched and passed.
	Rates Rates `json:"rates"`
	// From are the MQTT topic filters the rule reads; Sources the Kafka
	// sources it reads ("$bridges/kafka_consumer:<name>").
	From    []string `json:"from"`
	Sources []string `json:"sources"`
}

// Rate is a counter's increase per second over the last 5 seconds and the
// last minute.
type Rate struct {
	Last5s float64 `json:"last_5s"`
	Last1m float64 `json:"last_1m"`
}

// Rates are an entry's rates, by the name of the counter each is of.
type Rates map[string]Rate

// Runtime is the running process as the admin API sees it.
type Runtime interface {
	// Snapshot returns the current state; rates are filled in by the server.
	Snapshot() Snapshot
	// Config is the effective configuration.
	Config() *conf.Config
	// Ready reports whether the listeners are open and every connector is
	// connected, with the reason when not.
	Ready() (bool, string)
	// Change creates, replaces or deletes one entry of the configuration at
	// run time, validated exactly as `check` validates the file (a
	// *conf.Error lists the problems), keeping buffered records and MQTT
	// connections, and records it in runtime.toml.
	Change(ctx context.Context, ch conf.Change) error
	// TestConnector checks that a connector's Kafka answers.
	TestConnector(ctx context.Context, cn conf.Connector) error
	// Entry is one entry of kind as written in the file or through the API
	// (file keys, secrets included, defaults left out); conf.ErrNotFound
	// when there is none. The server redacts its secrets.
	Entry(kind, name string) (map[string]any, error)
}
