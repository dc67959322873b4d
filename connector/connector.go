// Package connector is the librdkafka configuration of a conf.Connector:
// what every Kafka client of it shares (bootstrap hosts, TLS, SASL, socket
// options, timeouts, [connectors.properties]), its client ids, and the
// connection states its clients report.
package connector

import (
	"strconv"
	"strings"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/mqkafka/mqkafka/conf"
)

// Config is what a connector sets for each of its clients. The zero value
// leaves librdkafka's defaults: plaintext, no SASL.
type Config struct {
	BootstrapHosts string
	ClientIDPrefix string
	// ConnectTimeout bounds a connection's setup: TCP, TLS and SASL (0: librdkafka's 30s).
	ConnectTimeout time.Duration
	// MinMetadataRefresh is the least time between metadata refreshes
	// forced by errors (0: librdkafka's default).
	MinMetadataRefresh time.Duration
	TLS                TLS
	SASL               SASL
	// SendBuffer and ReceiveBuffer size the sockets' buffers (0: the OS default).
	SendBuffer, ReceiveBuffer int
	// Nagle keeps Nagle's algorithm on (nodelay = false).
	Nagle bool
	// Keepalive turns SO_KEEPALIVE on; the timings are the OS's.
	Keepalive bool
	// Properties are [connectors.properties], passed to librdkafka as they
	// are, over everything else.
	Properties map[string]string
}

// TLS is TLS to the brokers.
type TLS struct {
	Enable                        bool
	CAFile, CertFile, KeyFile     string
	SkipVerify, SkipHostnameCheck bool
}

// SASL is SASL authentication; an empty Mechanism means none.
type SASL struct {
	Mechanism string // PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512
	Username  string
	Password  conf.Secret
}

// Settings turns a connector's config into what its clients need.
func Settings(cn conf.Connector) Config {
	c := Config{
		BootstrapHosts:     cn.BootstrapHosts,
		ClientIDPrefix:     cn.ClientIDPrefix,
		ConnectTimeout:     cn.ConnectTimeout,
		MinMetadataRefresh: cn.MinMetadataRefreshInterval,
		SendBuffer:         int(cn.SocketOpts.Sndbuf),
		ReceiveBuffer:      int(cn.SocketOpts.Recbuf),
		Nagle:              !cn.SocketOpts.Nodelay,
		Keepalive:          cn.SocketOpts.KeepaliveEnabled(),
		Properties:         cn.Properties,
	}
	if s := cn.SSL; s.Enable {
		c.TLS = TLS{
			Enable:     true,
			CAFile:     s.CACertFile,
			CertFile:   s.CertFile,
			KeyFile:    s.KeyFile,
			SkipVerify: s.Verify == "verify_none",
			// librdkafka cannot choose or turn off SNI; "disable" (and
			// verify_none) can only turn off the host name check.
			SkipHostnameCheck: s.Verify == "verify_none" || s.ServerNameIndication == "disable",
		}
	}
	if a := cn.Authentication; a != nil {
		c.SASL = SASL{
			Mechanism: map[string]string{"plain": "PLAIN", "scram_sha_256": "SCRAM-SHA-256", "scram_sha_512": "SCRAM-SHA-512"}[a.Mechanism],
			Username:  a.Username,
			Password:  a.Password,
		}
	}
	return c
}

// EgressID is the client id of a sink's producer, as EMQX and RMQTT name it:
// "<prefix>:<connector>:egress:<node>:<sink index>:<client no>".
func (c Config) EgressID(connector, node string, sink, client int) string {
	return c.clientID(connector + ":egress:" + node + ":" + strconv.Itoa(sink) + ":" + strconv.Itoa(client))
}

// IngressID is the client id of a source's consumer:
// "<prefix>:<connector>:ingress:<node>:<source>".
func (c Config) IngressID(connector, node, source string) string {
	return c.clientID(connector + ":ingress:" + node + ":" + source)
}

// ClusterID is the client id of a cluster node's client of a role:
// "<prefix>:<connector>:cluster:<node>:<role>".
func (c Config) ClusterID(connector, node, role string) string {
	return c.clientID(connector + ":cluster:" + node + ":" + role)
}

// clientID puts the prefix before id, without the leading ":" when there is
// no prefix.
func (c Config) clientID(id string) string {
	if c.ClientIDPrefix != "" {
		return c.ClientIDPrefix + ":" + id
	}
	return id
}

// librdkafka's default retry.backoff.max.ms.
const defaultRetryBackoffMax = 1000

// ConfigMap is the librdkafka configuration of a client named clientID: the
// client's own settings, the connector's over them, and the connector's
// Properties over everything.
func (c Config) ConfigMap(clientID string, own kafka.ConfigMap) kafka.ConfigMap {
	cm := kafka.ConfigMap{}
	for k, v := range own {
		cm[k] = v
	}
	for k, v := range c.connection() {
		cm[k] = v
	}
	cm["client.id"] = clientID
	for k, v := range c.Properties {
		cm[k] = v
	}
	return cm
}

// connection maps the connector's settings to librdkafka's properties.
func (c Config) connection() kafka.ConfigMap {
	cm := kafka.ConfigMap{
		"bootstrap.servers":    c.BootstrapHosts,
		"socket.nagle.disable": !c.Nagle,
	}
	if c.ConnectTimeout > 0 {
		cm["socket.connection.setup.timeout.ms"] = int(c.ConnectTimeout / time.Millisecond)
	}
	if c.MinMetadataRefresh > 0 {
		// EMQX's min_metadata_refresh_interval spaces the metadata
		// refreshes that errors (a lost leader) force. librdkafka's
		// topic.metadata.refresh.fast.interval.ms is that: the first
		// interval of those refreshes, growing up to retry.backoff.max.ms.
		// topic.metadata.refresh.interval.ms is not: it is the periodic
		// refresh (5 min), a maximum age rather than a minimum spacing.
		// librdkafka caps the fast interval at retry.backoff.max.ms (1s
		// unless set in properties; above it warns and uses that), and
		// raising that would also slow produce retries, so it is capped
		// here too.
		ms := int(c.MinMetadataRefresh / time.Millisecond)
		limit := defaultRetryBackoffMax
		if v, err := strconv.Atoi(strings.TrimSpace(c.Properties["retry.backoff.max.ms"])); err == nil && v > 0 {
			limit = v
		}
		cm["topic.metadata.refresh.fast.interval.ms"] = max(1, min(ms, limit))
	}
	if c.SendBuffer > 0 {
		cm["socket.send.buffer.bytes"] = c.SendBuffer
	}
	if c.ReceiveBuffer > 0 {
		cm["socket.receive.buffer.bytes"] = c.ReceiveBuffer
	}
	if c.Keepalive {
		cm["socket.keepalive.enable"] = true
	}
	protocol := "plaintext"
	if c.TLS.Enable {
		protocol = "ssl"
		if c.TLS.CAFile != "" {
			cm["ssl.ca.location"] = c.TLS.CAFile
		}
		if c.TLS.CertFile != "" {
			cm["ssl.certificate.location"] = c.TLS.CertFile
		}
		if c.TLS.KeyFile != "" {
			cm["ssl.key.location"] = c.TLS.KeyFile
		}
		cm["enable.ssl.certificate.verification"] = !c.TLS.SkipVerify
		if c.TLS.SkipVerify || c.TLS.SkipHostnameCheck {
			cm["ssl.endpoint.identification.algorithm"] = "none"
		} else {
			cm["ssl.endpoint.identification.algorithm"] = "https"
		}
	}
	if c.SASL.Mechanism != "" {
		protocol = "sasl_" + protocol
		cm["sasl.mechanisms"] = c.SASL.Mechanism
		cm["sasl.username"] = c.SASL.Username
		cm["sasl.password"] = string(c.SASL.Password)
	}
	cm["security.protocol"] = protocol
	return cm
}

// Status is a client's connection state, as EMQX reports it; the numbers
// are what /metrics exports.
type Status int32

// Connection states.
const (
	Disconnected Status = 0
	Connecting   Status = 1
	Connected    Status = 2
)

func (s Status) String() string {
	switch s {
	case Connected:
		return "connected"
	case Connecting:
		return "connecting"
	}
	return "disconnected"
}
