package conf

import (
	"bytes"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// Connector is one Kafka cluster; names and defaults follow EMQX's Kafka connector.
type Connector struct {
	Name           string `toml:"name,required"`
	BootstrapHosts string `toml:"bootstrap_hosts,required"`
	// ConnectTimeout bounds setting up one broker connection: TCP, TLS and SASL.
	ConnectTimeout time.Duration `toml:"connect_timeout"`
	// MetadataRequestTimeout bounds one metadata request.
	MetadataRequestTimeout time.Duration `toml:"metadata_request_timeout"`
	// MinMetadataRefreshInterval is the least time between metadata refreshes forced by errors.
	MinMetadataRefreshInterval time.Duration `toml:"min_metadata_refresh_interval"`
	// ClientIDPrefix starts the Kafka client id: "<prefix>:<connector>:egress:<node>:<sink index>:<client no>".
	ClientIDPrefix string `toml:"client_id_prefix"`
	// ConcurrentClients is how many Kafka clients each sink of this connector runs (1..16).
	ConcurrentClients int `toml:"concurrent_clients"`
	// HealthCheckInterval is how often a metadata request checks the
	// connection; a status change never restarts a producer or drops a buffer.
	HealthCheckInterval time.Duration `toml:"health_check_interval"`
	// SSL configures TLS to the brokers.
	SSL ConnectorSSL `toml:"ssl"`
	// Authentication is SASL; absent means none.
	Authentication *ConnectorAuth `toml:"authentication"`
	// SocketOpts tune the TCP connections to the brokers.
	SocketOpts SocketOpts `toml:"socket_opts"`
	// Properties are passed to librdkafka as they are, overriding everything above.
	Properties map[string]string `toml:"properties"`

	// Filled in by validation: the broker's node name and each sink's index.
	node      string
	sinkIndex map[string]int
}

// ConnectorSSL is a connector's [connectors.ssl] table.
type ConnectorSSL struct {
	// Enable turns TLS on (security.protocol SSL, or SASL_SSL with authentication).
	Enable bool `toml:"enable"`
	// CACertFile holds the PEM CA certificates that verify the brokers; empty: the system's.
	CACertFile string `toml:"cacertfile"`
	// CertFile is the client's PEM certificate, for brokers that ask for one (with keyfile).
	CertFile string `toml:"certfile"`
	// KeyFile is the client's PEM private key (unencrypted), with certfile.
	KeyFile string `toml:"keyfile"`
	// Verify is "verify_peer" (check the broker's certificate) or "verify_none".
	Verify string `toml:"verify"`
	// ServerNameIndication is "auto" (the broker's host name), "disable" (no host name check) or a host name.
	ServerNameIndication string `toml:"server_name_indication"`
}

// ConnectorAuth is a connector's [connectors.authentication] table (SASL).
type ConnectorAuth struct {
	// Mechanism is "plain", "scram_sha_256" or "scram_sha_512".
	Mechanism string `toml:"mechanism,required"`
	// Username is the SASL user name.
	Username string `toml:"username,required"`
	// Password is the SASL password, or "file://<path>": the first line of that file, read at load.
	Password Secret `toml:"password,required"`
}

// SocketOpts is a connector's [connectors.socket_opts] table.
type SocketOpts struct {
	// Sndbuf is the socket send buffer, e.g. "1MB"; 0: the system's default.
	Sndbuf ByteSize `toml:"sndbuf"`
	// Recbuf is the socket receive buffer, e.g. "1MB"; 0: the system's default.
	Recbuf ByteSize `toml:"recbuf"`
	// Nodelay disables Nagle's algorithm (TCP_NODELAY).
	Nodelay bool `toml:"nodelay"`
	// TCPKeepalive is "none" or "Idle,Interval,Probes" (e.g. "240,30,5"); any of the latter turns on SO_KEEPALIVE.
	TCPKeepalive string `toml:"tcp_keepalive"`
}

// SetDefaults fills a connector's defaults, as EMQX's Kafka connector has them.
func (cn *Connector) SetDefaults() {
	cn.ConnectTimeout = 5 * time.Second
	cn.MetadataRequestTimeout = 5 * time.Second
	cn.MinMetadataRefreshInterval = 3 * time.Second
	cn.ConcurrentClients = 1
	cn.HealthCheckInterval = 15 * time.Second
	cn.SSL = ConnectorSSL{Verify: "verify_peer", ServerNameIndication: "auto"}
	cn.SocketOpts = SocketOpts{Nodelay: true, TCPKeepalive: "none"}
}

// Node is the broker's node name (broker.node, default "mqkafka@<hostname>"),
// part of the Kafka client id.
func (cn *Connector) Node() string {
	if cn.node == "" {
		return DefaultNode()
	}
	return cn.node
}

// SinkIndex is the position of the named sink in [[sinks]], part of the
// Kafka client id; 0 for a sink validation did not see.
func (cn *Connector) SinkIndex(sink string) int { return cn.sinkIndex[sink] }

// SameSettings reports whether two connectors configure Kafka alike; what
// validation derives (node name, sink indexes) does not count, so adding a
// sink does not count as a change of the others' connector.
func (cn Connector) SameSettings(o Connector) bool {
	cn.node, cn.sinkIndex = "", nil
	o.node, o.sinkIndex = "", nil
	return reflect.DeepEqual(cn, o)
}

// DefaultNode is the node name when broker.node is not set.
func DefaultNode() string {
	h, err := os.Hostname()
	if err != nil {
		h = "localhost"
	}
	return "mqkafka@" + h
}

// KeepaliveEnabled reports whether tcp_keepalive asks for TCP keep-alives.
func (s SocketOpts) KeepaliveEnabled() bool { return s.TCPKeepalive != "none" && s.TCPKeepalive != "" }

// Secret is a string that never shows in logs or messages: formatting it
// prints "******". Convert it to string to use it.
type Secret string

const redacted = "******"

func (Secret) String() string { return redacted }

// GoString implements fmt.GoStringer.
func (Secret) GoString() string { return strconv.Quote(redacted) }

// MarshalText implements encoding.TextMarshaler (JSON, TOML, slog). An
// unset secret stays empty, so that a written-out entry reads back unset.
func (s Secret) MarshalText() ([]byte, error) {
	if s == "" {
		return nil, nil
	}
	return []byte(redacted), nil
}

// filePrefix marks a password read from a file, as EMQX writes it.
const filePrefix = "file://"

func (c *Config) validateConnectors(bad func(path, format string, args ...any), enum func(path, v string, allowed ...string)) {
	node := c.Broker.Node
	if node == "" {
		node = DefaultNode()
	}
	sinkIndex := map[string]int{}
	for i, s := range c.Sinks {
		if _, ok := sinkIndex[s.Name]; !ok {
			sinkIndex[s.Name] = i
		}
	}
	names := map[string]bool{}
	for i := range c.Connectors {
		cn := &c.Connectors[i]
		cn.node, cn.sinkIndex = node, sinkIndex
		p := fmt.Sprintf("connectors[%d]", i)
		if names[cn.Name] {
			bad(p+".name", "duplicate connector name %q", cn.Name)
		}
		names[cn.Name] = true
		hosts, err := bootstrapHosts(cn.BootstrapHosts)
		if err != nil {
			bad(p+".bootstrap_hosts", "%v", err)
		}
		// librdkafka's limits: socket.connection.setup.timeout.ms is 1000..2147483647,
		// topic.metadata.refresh.fast.interval.ms 1..60000.
		if cn.ConnectTimeout < time.Second || cn.ConnectTimeout > (1<<31-1)*time.Millisecond {
			bad(p+".connect_timeout", "must be between 1s and 596h (librdkafka's limits)")
		}
		if cn.MetadataRequestTimeout < time.Millisecond {
			bad(p+".metadata_request_timeout", "must be at least 1ms")
		}
		if cn.MinMetadataRefreshInterval < time.Millisecond || cn.MinMetadataRefreshInterval > time.Minute {
			bad(p+".min_metadata_refresh_interval", "must be between 1ms and 1m (librdkafka's limits)")
		}
		if cn.HealthCheckInterval < time.Second {
			bad(p+".health_check_interval", "must be at least 1s")
		}
		if cn.ConcurrentClients < 1 || cn.ConcurrentClients > 16 {
			bad(p+".concurrent_clients", "must be between 1 and 16")
		}
		if strings.ContainsFunc(cn.ClientIDPrefix, func(r rune) bool { return r < ' ' || r == 0x7f }) {
			bad(p+".client_id_prefix", "must not contain control characters")
		}
		validateSSL(p+".ssl", &cn.SSL, hosts, bad, enum)
		if cn.Authentication != nil {
			validateAuth(p+".authentication", cn.Authentication, bad, enum)
		}
		validateSocketOpts(p+".socket_opts", &cn.SocketOpts, bad)
		if _, err := MessageMaxBytes(cn.Properties); err != nil {
			bad(p+".properties", "%v", err)
		}
		for _, k := range managedProperties {
			if _, ok := cn.Properties[k]; ok {
				bad(p+".properties", "%s is set by mqkafka: a sink's records stay in librdkafka until Kafka takes them or the sink's max_batch_age passes, so that a record given up on cannot land after the records behind it; set max_batch_age instead", k)
			}
		}
	}
}

// managedProperties are the librdkafka properties that decide when a
// producer gives up on a record. Each sink sets them from max_batch_age: a
// record librdkafka gave up on for any other reason would be sent again
// from the buffer after the records behind it, which librdkafka may
// already have delivered.
var managedProperties = []string{"message.timeout.ms", "delivery.timeout.ms", "retries", "message.send.max.retries"}

// DefaultMessageMaxBytes is librdkafka's default message.max.bytes.
const DefaultMessageMaxBytes = 1_000_000

// RecordOverhead is librdkafka's bound on one record's framing
// (RD_KAFKAP_MESSAGE_V2_MAX_OVERHEAD): its length, attributes, timestamp
// delta, offset delta, key length, value length and header count, each
// varint counted at its widest. A record's key, value and headers plus
// this are what librdkafka measures against message.max.bytes.
const RecordOverhead = 5 + 1 + 10 + 5 + 5 + 5 + 5

// BatchOverhead is a Kafka record batch's header, which a broker counts
// with the batch's records against a topic's max.message.bytes.
const BatchOverhead = 61

// MessageMaxBytes is the message.max.bytes of a connector's properties: the
// largest record, with librdkafka's framing, its producers take. The value
// must be a plain decimal number in librdkafka's range, so that mqkafka's
// reading of it is librdkafka's.
func MessageMaxBytes(props map[string]string) (int, error) {
	v, ok := props["message.max.bytes"]
	if !ok {
		return DefaultMessageMaxBytes, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1000 || n > 1_000_000_000 {
		return 0, fmt.Errorf("message.max.bytes %q: must be a whole number of bytes from 1000 to 1000000000", v)
	}
	return n, nil
}

// bootstrapHosts returns the host names of "host1:9092,host2:9092".
func bootstrapHosts(s string) ([]string, error) {
	var hosts []string
	for _, hp := range strings.Split(s, ",") {
		hp = strings.TrimSpace(hp)
		if hp == "" {
			continue
		}
		// librdkafka also accepts "proto://host:port" here.
		if _, rest, ok := strings.Cut(hp, "://"); ok {
			hp = rest
		}
		host, _, err := net.SplitHostPort(hp)
		if err != nil {
			host = strings.Trim(hp, "[]")
		}
		hosts = append(hosts, host)
	}
	if len(hosts) == 0 {
		return nil, errors.New("must not be empty")
	}
	return hosts, nil
}

func validateSSL(p string, s *ConnectorSSL, hosts []string, bad func(path, format string, args ...any), enum func(path, v string, allowed ...string)) {
	enum(p+".verify", s.Verify, "verify_peer", "verify_none")
	if !s.Enable {
		return
	}
	switch sni := s.ServerNameIndication; sni {
	case "auto", "disable":
	case "":
		bad(p+".server_name_indication", `must not be empty (write "auto", "disable" or a host name)`)
	default:
		// librdkafka sends the host name it connects to (from
		// bootstrap_hosts, then the brokers' advertised listeners) as SNI
		// and checks the certificate against it; it has no setting for
		// another name. Only a name that changes nothing is accepted.
		for _, h := range hosts {
			if !strings.EqualFold(h, sni) {
				bad(p+".server_name_indication", "%q: librdkafka cannot send a chosen SNI host name; it always sends the host name it connects to (%q here) and verifies the certificate against it. Write \"auto\" and list the brokers by that name in bootstrap_hosts (they must advertise it too)", sni, h)
				break
			}
		}
	}
	if s.CACertFile != "" {
		checkPEMFile(p+".cacertfile", s.CACertFile, "CERTIFICATE", true, bad)
	}
	if s.CertFile != "" {
		checkPEMFile(p+".certfile", s.CertFile, "CERTIFICATE", false, bad)
	}
	if s.KeyFile != "" {
		checkPEMFile(p+".keyfile", s.KeyFile, "PRIVATE KEY", false, bad)
	}
	switch {
	case s.CertFile != "" && s.KeyFile == "":
		bad(p+".certfile", "needs keyfile too")
	case s.KeyFile != "" && s.CertFile == "":
		bad(p+".keyfile", "needs certfile too")
	}
}

// checkPEMFile reports a file that cannot be read or holds no PEM block
// whose type ends with want. A CA location may also be a directory.
func checkPEMFile(path, name, want string, dirOK bool, bad func(path, format string, args ...any)) {
	if st, err := os.Stat(name); err == nil && st.IsDir() {
		if !dirOK {
			bad(path, "%q is a directory, not a file", name)
		}
		return
	}
	data, err := os.ReadFile(name)
	if err != nil {
		bad(path, "%s", fileError(name, err))
		return
	}
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			bad(path, "%q holds no PEM %s", name, want)
			return
		}
		if strings.HasSuffix(b.Type, want) {
			return
		}
	}
}

func fileError(name string, err error) string {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Sprintf("file %q does not exist", name)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Sprintf("file %q cannot be read: permission denied", name)
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Sprintf("file %q cannot be read: %v", name, pe.Err)
	}
	return fmt.Sprintf("file %q cannot be read: %v", name, err)
}

func validateAuth(p string, a *ConnectorAuth, bad func(path, format string, args ...any), enum func(path, v string, allowed ...string)) {
	enum(p+".mechanism", a.Mechanism, "plain", "scram_sha_256", "scram_sha_512")
	if a.Username == "" {
		bad(p+".username", "must not be empty")
	}
	if name, ok := strings.CutPrefix(string(a.Password), filePrefix); ok {
		data, err := os.ReadFile(name)
		if err != nil {
			bad(p+".password", "%s", fileError(name, err))
			return
		}
		line, _, _ := bytes.Cut(data, []byte("\n"))
		a.Password = Secret(bytes.TrimSuffix(line, []byte("\r")))
		if a.Password == "" {
			bad(p+".password", "the first line of %q is empty", name)
			return
		}
	}
	// Neither message shows the password.
	switch {
	case a.Password == "":
		bad(p+".password", "must not be empty")
	case strings.ContainsRune(string(a.Password), 0):
		bad(p+".password", "must not contain a NUL character")
	}
}

func validateSocketOpts(p string, s *SocketOpts, bad func(path, format string, args ...any)) {
	// librdkafka's socket.{send,receive}.buffer.bytes are 0..100000000.
	const maxBuf = 100_000_000
	if s.Sndbuf > maxBuf {
		bad(p+".sndbuf", "must be at most 100000000 bytes (librdkafka's limit)")
	}
	if s.Recbuf > maxBuf {
		bad(p+".recbuf", "must be at most 100000000 bytes (librdkafka's limit)")
	}
	if err := checkKeepalive(s.TCPKeepalive); err != nil {
		bad(p+".tcp_keepalive", "%v", err)
	}
}

// checkKeepalive accepts "none" or "Idle,Interval,Probes" as EMQX writes it,
// within Linux's limits for TCP_KEEPIDLE, TCP_KEEPINTVL and TCP_KEEPCNT.
func checkKeepalive(s string) error {
	if s == "none" {
		return nil
	}
	parts := strings.Split(s, ",")
	if len(parts) != 3 {
		return fmt.Errorf("%q: write \"none\" or \"Idle,Interval,Probes\", e.g. \"240,30,5\"", s)
	}
	for i, lim := range []struct {
		name string
		max  int
	}{{"Idle", 32767}, {"Interval", 32767}, {"Probes", 127}} {
		n, err := strconv.Atoi(strings.TrimSpace(parts[i]))
		if err != nil || n < 1 || n > lim.max {
			return fmt.Errorf("%q: %s must be an integer between 1 and %d (write \"none\" or \"Idle,Interval,Probes\", e.g. \"240,30,5\")", s, lim.name, lim.max)
		}
	}
	return nil
}
