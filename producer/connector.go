package producer

import (
	"strconv"
	"strings"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/mqkafka/mqkafka/conf"
)

// ConnectorConfig is what a connector sets for each of its clients. The zero
// value leaves librdkafka's defaults: plaintext, no SASL.
type ConnectorConfig struct {
	ClientIDPrefix string
	// ConnectTimeout bounds a connection's setup: TCP, TLS and SASL (0: librdkafka's 30s).
	ConnectTimeout time.Duration
	// MinMetadataRefresh is the least time between metadata refreshes
	// forced by errors (0: librdkafka's default).
	MinMetadataRefresh time.Duration
	TLS                TLSConfig
	SASL               SASLConfig
	// SendBuffer and ReceiveBuffer size the sockets' buffers (0: the OS default).
	SendBuffer, ReceiveBuffer int
	// Nagle keeps Nagle's algorithm on (nodelay = false).
	Nagle bool
	// Keepalive turns SO_KEEPALIVE on; the timings are the OS's.
	Keepalive bool
}

// TLSConfig is TLS to the brokers.
type TLSConfig struct {
	Enable                        bool
	CAFile, CertFile, KeyFile     string
	SkipVerify, SkipHostnameCheck bool
}

// SASLConfig is SASL authentication; an empty Mechanism means none.
type SASLConfig struct {
	Mechanism string // PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512
	Username  string
	Password  conf.Secret
}

// ConnectorSettings turns a connector's config into what its clients need.
func ConnectorSettings(cn conf.Connector) ConnectorConfig {
	cc := ConnectorConfig{
		ClientIDPrefix:     cn.ClientIDPrefix,
		ConnectTimeout:     cn.ConnectTimeout,
		MinMetadataRefresh: cn.MinMetadataRefreshInterval,
		SendBuffer:         int(cn.SocketOpts.Sndbuf),
		ReceiveBuffer:      int(cn.SocketOpts.Recbuf),
		Nagle:              !cn.SocketOpts.Nodelay,
		Keepalive:          cn.SocketOpts.KeepaliveEnabled(),
	}
	if s := cn.SSL; s.Enable {
		cc.TLS = TLSConfig{
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
		cc.SASL = SASLConfig{
			Mechanism: map[string]string{"plain": "PLAIN", "scram_sha_256": "SCRAM-SHA-256", "scram_sha_512": "SCRAM-SHA-512"}[a.Mechanism],
			Username:  a.Username,
			Password:  a.Password,
		}
	}
	return cc
}

// clientID follows EMQX and RMQTT:
// "<prefix>:<connector>:egress:<node>:<sink index>:<client no>", without the
// leading ":" when there is no prefix.
func (c ClientConfig) clientID() string {
	id := c.Connector + ":egress:" + c.Node + ":" + strconv.Itoa(c.SinkIndex) + ":" + strconv.Itoa(c.ClientNo)
	if c.Conn.ClientIDPrefix != "" {
		id = c.Conn.ClientIDPrefix + ":" + id
	}
	return id
}

// librdkafka's default retry.backoff.max.ms.
const defaultRetryBackoffMax = 1000

// connectorProperties maps the connector's settings to librdkafka's
// properties; the user's [connectors.properties] are merged over them.
func (c ClientConfig) connectorProperties() kafka.ConfigMap {
	cn := c.Conn
	cm := kafka.ConfigMap{
		"client.id":            c.clientID(),
		"socket.nagle.disable": !cn.Nagle,
	}
	if cn.ConnectTimeout > 0 {
		cm["socket.connection.setup.timeout.ms"] = int(cn.ConnectTimeout / time.Millisecond)
	}
	if cn.MinMetadataRefresh > 0 {
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
		ms := int(cn.MinMetadataRefresh / time.Millisecond)
		limit := defaultRetryBackoffMax
		if v, err := strconv.Atoi(strings.TrimSpace(c.Properties["retry.backoff.max.ms"])); err == nil && v > 0 {
			limit = v
		}
		cm["topic.metadata.refresh.fast.interval.ms"] = max(1, min(ms, limit))
	}
	if cn.SendBuffer > 0 {
		cm["socket.send.buffer.bytes"] = cn.SendBuffer
	}
	if cn.ReceiveBuffer > 0 {
		cm["socket.receive.buffer.bytes"] = cn.ReceiveBuffer
	}
	if cn.Keepalive {
		cm["socket.keepalive.enable"] = true
	}
	protocol := "plaintext"
	if cn.TLS.Enable {
		protocol = "ssl"
		if cn.TLS.CAFile != "" {
			cm["ssl.ca.location"] = cn.TLS.CAFile
		}
		if cn.TLS.CertFile != "" {
			cm["ssl.certificate.location"] = cn.TLS.CertFile
		}
		if cn.TLS.KeyFile != "" {
			cm["ssl.key.location"] = cn.TLS.KeyFile
		}
		cm["enable.ssl.certificate.verification"] = !cn.TLS.SkipVerify
		if cn.TLS.SkipVerify || cn.TLS.SkipHostnameCheck {
			cm["ssl.endpoint.identification.algorithm"] = "none"
		} else {
			cm["ssl.endpoint.identification.algorithm"] = "https"
		}
	}
	if cn.SASL.Mechanism != "" {
		protocol = "sasl_" + protocol
		cm["sasl.mechanisms"] = cn.SASL.Mechanism
		cm["sasl.username"] = cn.SASL.Username
		cm["sasl.password"] = string(cn.SASL.Password)
	}
	cm["security.protocol"] = protocol
	return cm
}

// ConnectorProperties is the librdkafka mapping of a connector's settings
// (TLS, SASL, socket options, timeouts) for any client of it, the Kafka
// sources' consumers included; [connectors.properties] still go on top.
func ConnectorProperties(cn conf.Connector, clientID string) kafka.ConfigMap {
	c := ClientConfig{Connector: cn.Name, Conn: ConnectorSettings(cn), Properties: cn.Properties}
	cm := c.connectorProperties()
	cm["client.id"] = clientID
	return cm
}
