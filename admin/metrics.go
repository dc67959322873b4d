package admin

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// collector exports a snapshot at scrape time: the counters live where the
// work happens, and nothing is counted twice or on the message path.
type collector struct {
	snap func() Snapshot
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("mqkafka_"+name, help, labels, nil)
}

var (
	dSinkMatched      = desc("sink_matched_total", "Records rules handed to the sink.", "sink")
	dSinkSuccess      = desc("sink_success_total", "Records Kafka acknowledged.", "sink")
	dSinkFailed       = desc("sink_failed_total", "Records that did not enter the buffer.", "sink")
	dSinkRetried      = desc("sink_retried_total", "Records sent again after a failure.", "sink")
	dSinkDropped      = desc("sink_dropped_total", "Records dropped, by reason.", "sink", "reason")
	dSinkQueuing      = desc("sink_queuing", "Records buffered, in flight included.", "sink", "topic", "partition")
	dSinkQueuingBytes = desc("sink_queuing_bytes", "Bytes buffered.", "sink", "topic", "partition")
	dSinkInflight     = desc("sink_inflight", "Records handed to librdkafka, not yet acknowledged.", "sink", "topic", "partition")
	dSinkInflightB    = desc("sink_inflight_bytes", "Bytes handed to librdkafka and not yet acknowledged, as max_inflight_bytes counts them.", "sink")
	dSrcReceived      = desc("source_received_total", "Kafka messages received.", "source")
	dSrcSuccess       = desc("source_success_total", "Messages handed to the broker.", "source")
	dSrcFailed        = desc("source_failed_total", "Messages that failed.", "source")
	dSrcDropped       = desc("source_dropped_total", "Messages dropped, by reason.", "source", "reason")
	dSrcLag           = desc("source_lag", "Consumer lag.", "source", "topic", "partition")
	dConnStatus       = desc("connector_status", "0 disconnected, 1 connecting, 2 connected.", "connector")
	dRuleMatched      = desc("rule_matched_total", "Publishes the rule's FROM matched.", "rule")
	dRulePassed       = desc("rule_passed_total", "Records the rule passed to its actions.", "rule")
	dRuleFailed       = desc("rule_failed_total", "Publishes the rule failed on.", "rule")
	dRuleNoResult     = desc("rule_no_result_total", "Publishes the rule's WHERE rejected.", "rule")
	dConnections      = desc("broker_connections", "Connected MQTT clients.")
	dSessions         = desc("broker_sessions", "Sessions held on this node, connected or offline: what max_sessions bounds.")
	dConnPending      = desc("broker_connections_pending", "Connections accepted that have not sent CONNECT yet.")
	dAcceptErrors     = desc("broker_accept_errors_total", "Failed accepts on the MQTT listeners (retried), e.g. out of file descriptors.")
	dMsgReceived      = desc("broker_messages_received_total", "MQTT publishes received.")
	dMsgSent          = desc("broker_messages_sent_total", "MQTT publishes sent.")
	dMsgDropped       = desc("broker_messages_dropped_total", "MQTT publishes dropped to slow subscribers.")
	dBytesReceived    = desc("broker_bytes_received_total", "Bytes received from MQTT clients.")
	dBytesSent        = desc("broker_bytes_sent_total", "Bytes sent to MQTT clients.")
	dRetained         = desc("broker_retained", "Retained messages.")
	dSubscriptions    = desc("broker_subscriptions", "Subscriptions.")
	dBrokerDropped    = desc("broker_dropped_total", "MQTT publishes the broker did not deliver, by reason.", "reason")
	dBrokerRefused    = desc("broker_refused_total", "Connections, packets and sessions refused for exceeding a limit, by reason.", "reason")
	dClusterIn        = desc("cluster_messages_in_total", "Publishes from other nodes delivered here.")
	dClusterOut       = desc("cluster_messages_out_total", "Publishes sent to other nodes that Kafka took.")
	dClusterDropped   = desc("cluster_messages_dropped_total", "Publishes for or from other nodes dropped (queue full, refused, undeliverable).")
	dClusterQueued    = desc("cluster_queued", "Cluster records waiting for Kafka.")
	dClusterRoutes    = desc("cluster_routes", "Filters of other nodes that publishes are routed by.")
	dClusterSessions  = desc("cluster_sessions", "Sessions of the cluster, connected or persistent and offline.")
	dClusterOffline   = desc("cluster_sessions_offline", "Persistent sessions whose messages are queued in Kafka.")
	dClusterSessDrop  = desc("cluster_session_messages_dropped_total", "Messages for offline sessions not queued, or not resumed, on this node.")
	dClusterHandLost  = desc("cluster_sessions_not_handed_over_total", "Sessions resumed here without their holder's hand-over (it was down or did not answer): what was in flight to them there is lost.")
	dClusterWills     = desc("cluster_wills_published_total", "Wills kept in session records that this node published.")
	dClusterRelWaited = desc("cluster_session_releases_waited_total", "Disconnects that found the releases waiting for Kafka full and waited for room.")
	dClusterUp        = desc("cluster_node_up", "1 while a node of the cluster is up.", "node")
	dClusterBeatAge   = desc("cluster_heartbeat_age_seconds", "Seconds since a node's last heartbeat.", "node")
)

// Describe implements prometheus.Collector.
func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{dSinkMatched, dSinkSuccess, dSinkFailed, dSinkRetried, dSinkDropped,
		dSinkQueuing, dSinkQueuingBytes, dSinkInflight, dSinkInflightB, dSrcReceived, dSrcSuccess, dSrcFailed, dSrcDropped, dSrcLag,
		dConnStatus, dRuleMatched, dRulePassed, dRuleFailed, dRuleNoResult, dConnections, dMsgReceived, dMsgSent,
		dMsgDropped, dBytesReceived, dBytesSent, dRetained, dSubscriptions, dBrokerDropped, dBrokerRefused,
		dSessions, dConnPending, dAcceptErrors, dClusterIn, dClusterOut, dClusterDropped, dClusterQueued, dClusterRoutes,
		dClusterSessions, dClusterOffline, dClusterSessDrop, dClusterHandLost, dClusterWills, dClusterRelWaited,
		dClusterUp, dClusterBeatAge} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c collector) Collect(ch chan<- prometheus.Metric) {
	s := c.snap()
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), labels...)
	}
	for _, k := range s.Sinks {
		counter(dSinkMatched, k.Counters.Matched, k.Name)
		counter(dSinkSuccess, k.Counters.Success, k.Name)
		counter(dSinkFailed, k.Counters.Failed, k.Name)
		counter(dSinkRetried, k.Counters.Retried, k.Name)
		gauge(dSinkInflightB, k.Counters.InflightBytes, k.Name)
		for reason, n := range k.Counters.Dropped {
			counter(dSinkDropped, n, k.Name, reason)
		}
		for _, p := range k.Partitions {
			part := strconv.Itoa(int(p.Partition))
			gauge(dSinkQueuing, p.Queuing, k.Name, p.Topic, part)
			gauge(dSinkQueuingBytes, p.QueuingBytes, k.Name, p.Topic, part)
			gauge(dSinkInflight, p.Inflight, k.Name, p.Topic, part)
		}
	}
	for _, src := range s.Sources {
		counter(dSrcReceived, src.Received, src.Name)
		counter(dSrcSuccess, src.Success, src.Name)
		counter(dSrcFailed, src.Failed, src.Name)
		for reason, n := range src.Dropped {
			counter(dSrcDropped, n, src.Name, reason)
		}
		for _, l := range src.Lag {
			gauge(dSrcLag, l.Lag, src.Name, l.Topic, strconv.Itoa(int(l.Partition)))
		}
	}
	for _, cn := range s.Connectors {
		gauge(dConnStatus, int64(cn.Code), cn.Name)
	}
	for _, r := range s.Rules {
		counter(dRuleMatched, r.Matched, r.ID)
		counter(dRulePassed, r.Passed, r.ID)
		counter(dRuleFailed, r.Failed, r.ID)
		counter(dRuleNoResult, r.NoResult, r.ID)
	}
	b := s.Broker
	gauge(dConnections, b.Connections)
	gauge(dSessions, b.Sessions)
	gauge(dConnPending, b.ConnectionsPending)
	counter(dAcceptErrors, b.AcceptErrors)
	counter(dMsgReceived, b.MessagesReceived)
	counter(dMsgSent, b.MessagesSent)
	counter(dMsgDropped, b.MessagesDropped)
	counter(dBytesReceived, b.BytesReceived)
	counter(dBytesSent, b.BytesSent)
	gauge(dRetained, b.Retained)
	gauge(dSubscriptions, b.Subscriptions)
	for reason, n := range b.Dropped {
		counter(dBrokerDropped, n, reason)
	}
	for reason, n := range b.Refused {
		counter(dBrokerRefused, n, reason)
	}
	if c := s.Cluster; c != nil {
		counter(dClusterIn, c.MessagesIn)
		counter(dClusterOut, c.MessagesOut)
		counter(dClusterDropped, c.MessagesDropped)
		gauge(dClusterQueued, int64(c.Queued))
		gauge(dClusterRoutes, c.Routes)
		gauge(dClusterSessions, int64(c.Sessions))
		gauge(dClusterOffline, c.SessionsOffline)
		counter(dClusterSessDrop, c.SessionMessagesDropped)
		counter(dClusterHandLost, c.SessionsNotHandedOver)
		counter(dClusterWills, c.WillsPublished)
		counter(dClusterRelWaited, c.SessionReleasesWaited)
		for _, n := range c.Nodes {
			up := int64(0)
			if n.Status == "up" {
				up = 1
			}
			gauge(dClusterUp, up, n.ID)
			ch <- prometheus.MustNewConstMetric(dClusterBeatAge, prometheus.GaugeValue, s.Time.Sub(n.LastHeartbeat).Seconds(), n.ID)
		}
	}
}
