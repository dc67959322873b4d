package conf

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"math"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Broker configures the MQTT side. The limits are mochi-mqtt's capabilities,
// with its defaults written out (max_packet_size excepted, see DefaultBroker).
type Broker struct {
	Listeners []Listener `toml:"listeners"`
	DataDir   string     `toml:"data_dir"`
	// Node names this process in records (`${node}`), as EMQX's node name.
	Node string     `toml:"node"`
	Auth BrokerAuth `toml:"auth"`
	// ACL is checked in order; the first rule that matches decides. With
	// any rule present, what no rule matches is denied.
	ACL []ACLRule `toml:"acl"`
	// Persistence keeps sessions, subscriptions, queued and in-flight QoS 1/2
	// messages and retained messages in <data_dir>/mqtt/ across restarts.
	Persistence bool `toml:"persistence"`
	// SessionOwnerCheck refuses a CONNECT that would resume, take over or
	// discard a session another user name made.
	SessionOwnerCheck bool `toml:"session_owner_check"`

	// MaxPacketSize is the largest MQTT packet a client may send.
	MaxPacketSize ByteSize `toml:"max_packet_size"`
	// MaxInflight is how many QoS 1/2 messages a subscriber may have
	// unacknowledged or queued (while offline); more are dropped and counted.
	MaxInflight int `toml:"max_inflight"`
	// MaxMqueueLen is how many QoS 1/2 messages may wait for a session that
	// is offline or has no send quota left; more are dropped and counted;
	// 0 means no limit but max_inflight (EMQX's name).
	MaxMqueueLen int `toml:"max_mqueue_len"`
	// MaxMqueueBytes bounds the payload bytes of the QoS 1/2 messages held
	// for such a session, in flight ones included: max_mqueue_len messages
	// of max_packet_size are 1GB. 0 means no limit (EMQX has none).
	MaxMqueueBytes ByteSize `toml:"max_mqueue_bytes"`
	// MaxClientWritesPending is how many messages may wait to be written to
	// one connected client; more are dropped and counted.
	MaxClientWritesPending int `toml:"max_client_writes_pending"`
	// ReceiveMaximum is how many QoS 1/2 publishes a client may have in
	// flight towards the broker (MQTT 5 Receive Maximum).
	ReceiveMaximum int `toml:"receive_maximum"`
	// MaxClients bounds connected clients; 0 means no limit.
	MaxClients int `toml:"max_clients"`
	// MaxSessions bounds the sessions this node holds, connected clients
	// and offline persistent sessions; a CONNECT that would make one more
	// is refused. 0 means no limit.
	MaxSessions int `toml:"max_sessions"`
	// IdleTimeout is how long a connection may stay open without sending
	// CONNECT, TLS handshake and WebSocket upgrade included (EMQX's name).
	IdleTimeout time.Duration `toml:"idle_timeout"`
	// MinKeepalive and MaxKeepalive bound the keepalive clients ask for; 0 means no bound.
	MinKeepalive time.Duration `toml:"min_keepalive"`
	MaxKeepalive time.Duration `toml:"max_keepalive"`
	// RetainAvailable turns retained messages on.
	RetainAvailable bool `toml:"retain_available"`
	// MaxMessageExpiry is the longest a message is kept for a subscriber or
	// as retained message; 0 means until the publisher's own expiry, if any.
	MaxMessageExpiry time.Duration `toml:"max_message_expiry"`
	// MaxSessionExpiry is the longest a disconnected persistent session is
	// kept (MQTT 3 sessions are kept this long); 0 means no limit. The
	// default, 2h, is EMQX's session_expiry_interval: without a bound a
	// client could make sessions that hold memory for good.
	MaxSessionExpiry time.Duration `toml:"max_session_expiry"`
	// MaxTopicLevels bounds the levels of a topic name or filter a client
	// sends; matching costs grow with the square of the depth.
	MaxTopicLevels int `toml:"max_topic_levels"`
	// MaxTopicLength bounds a topic name or filter's length in bytes.
	MaxTopicLength int `toml:"max_topic_length"`
	// MaxClientIDLen bounds a client id's length in bytes.
	MaxClientIDLen int `toml:"max_clientid_len"`
	// MaxConnRate is how many connections each listener accepts a second
	// (with a second's worth at once); 0 means no limit (EMQX's name).
	MaxConnRate Rate `toml:"max_conn_rate"`
	// MessagesRate is how many PUBLISH, SUBSCRIBE and UNSUBSCRIBE packets a
	// client may send a second; 0 means no limit (EMQX's name).
	MessagesRate Rate `toml:"messages_rate"`
	// BytesRate is how many bytes a client may send a second; 0 means no
	// limit (EMQX's name).
	BytesRate Rate `toml:"bytes_rate"`
	// MaxTopicAlias is the Topic Alias Maximum MQTT 5 clients are told: the
	// topics each connection may have the broker remember; 0 turns aliases off.
	MaxTopicAlias int `toml:"max_topic_alias"`
	// MaxSubscriptions bounds the topic filters one session holds (about
	// 1.2KB of memory each); 0 means no limit (EMQX's name).
	MaxSubscriptions int `toml:"max_subscriptions"`
	// MaxRetainedMessages bounds how many topics hold a retained message
	// (each up to max_packet_size); 0 means no limit (EMQX's name).
	MaxRetainedMessages int `toml:"max_retained_messages"`
}

// DefaultBroker is the [broker] table's defaults: mochi-mqtt's, except
// max_packet_size, which mochi leaves unlimited although it allocates a
// packet's announced length before reading it; 1MB is EMQX's default.
func DefaultBroker() Broker {
	return Broker{
		Listeners:              []Listener{{Type: "tcp", Address: ":1883", Verify: "verify_none"}},
		DataDir:                "data",
		Persistence:            true,
		SessionOwnerCheck:      true,
		MaxPacketSize:          1 * MB,
		MaxInflight:            8192,
		MaxClientWritesPending: 8192,
		MaxMqueueLen:           1000,
		MaxMqueueBytes:         64 * MB,
		ReceiveMaximum:         1024,
		RetainAvailable:        true,
		MaxMessageExpiry:       24 * time.Hour,
		MaxSessionExpiry:       2 * time.Hour,
		MaxTopicLevels:         128,
		MaxTopicLength:         4096,
		MaxClientIDLen:         65535,
		MaxTopicAlias:          64,
		MaxSubscriptions:       1000,
		MaxRetainedMessages:    10000,
		MaxSessions:            100000,
		IdleTimeout:            15 * time.Second,
		MaxConnRate:            1000,
	}
}

// Listener is one MQTT listener.
type Listener struct {
	// Type is "tcp", "tls", "ws" or "wss".
	Type    string `toml:"type"`
	Address string `toml:"address,required"`
	// Path is the WebSocket endpoint ("ws", "wss"); default "/mqtt".
	Path string `toml:"path"`
	// CertFile and KeyFile are the server's PEM certificate chain and key ("tls", "wss").
	CertFile string `toml:"certfile"`
	KeyFile  string `toml:"keyfile"`
	// CACertFile holds the PEM CA certificates that client certificates must chain to.
	CACertFile string `toml:"cacertfile"`
	// Verify is "verify_none" or "verify_peer" (check client certificates against cacertfile).
	Verify string `toml:"verify"`
	// FailIfNoPeerCert refuses clients without a certificate (with verify_peer).
	FailIfNoPeerCert bool `toml:"fail_if_no_peer_cert"`
}

// SetDefaults fills a listener's defaults.
func (l *Listener) SetDefaults() {
	l.Type = "tcp"
	l.Verify = "verify_none"
}

// TLS reports whether the listener speaks TLS.
func (l *Listener) TLS() bool { return l.Type == "tls" || l.Type == "wss" }

// WebSocket reports whether the listener speaks MQTT over WebSocket.
func (l *Listener) WebSocket() bool { return l.Type == "ws" || l.Type == "wss" }

// BrokerAuth configures client authentication.
type BrokerAuth struct {
	// AllowAnonymous lets clients without a user name in; with it false and
	// no users, every client is refused.
	AllowAnonymous bool `toml:"allow_anonymous"`
	// Users are accounts with bcrypt password hashes (`mqkafka passwd`).
	Users []User `toml:"users"`
	// UsersFile holds more accounts, one "username:bcrypt-hash" a line.
	UsersFile string `toml:"users_file"`

	// fileUsers are users_file's accounts, read by validation.
	fileUsers []User
}

// Accounts returns the users of the config and of users_file.
func (a BrokerAuth) Accounts() []User {
	return append(append([]User(nil), a.Users...), a.fileUsers...)
}

// User is one account.
type User struct {
	Username string `toml:"username,required"`
	// PasswordHash is a bcrypt hash ("$2a$…", "$2b$…" or "$2y$…").
	PasswordHash Secret `toml:"password_hash,required"`
}

// ACLRule allows or denies publishing and/or subscribing to topics.
type ACLRule struct {
	// Permission is "allow" or "deny".
	Permission string `toml:"permission,required"`
	// Username and ClientID select whom the rule is for; absent: everyone,
	// both: clients matching both.
	Username string `toml:"username"`
	ClientID string `toml:"clientid"`
	// Action is "publish", "subscribe" or "all".
	Action string `toml:"action"`
	// Topics are topic filters; ${username} and ${clientid} are replaced by
	// the client's, and "eq <filter>" matches that filter literally.
	Topics []string `toml:"topics,required"`
}

// SetDefaults fills an ACL rule's defaults.
func (r *ACLRule) SetDefaults() { r.Action = "all" }

// Keepalive limits are whole seconds in MQTT's 16-bit field.
const maxKeepalive = 65535 * time.Second

// validateBroker checks the [broker] table, reads users_file and fills in
// what depends on other keys (ws paths).
func (c *Config) validateBroker(bad func(path, format string, args ...any), enum func(path, v string, allowed ...string)) {
	b := &c.Broker
	if b.DataDir == "" {
		bad("broker.data_dir", "must not be empty")
	}
	c.validateListeners(bad, enum)
	c.validateUsers(bad)
	for i := range b.ACL {
		validateACLRule(fmt.Sprintf("broker.acl[%d]", i), &b.ACL[i], bad, enum)
	}

	// within reports path unless lo <= v <= hi.
	within := func(path string, v, lo, hi int64, msg string) {
		if v < lo || v > hi {
			bad(path, msg)
		}
	}
	// MQTT's Remaining Length field ends at 268435455, plus at most 5 header bytes.
	within("broker.max_packet_size", int64(b.MaxPacketSize), 16, 268435460, "must be between 16 bytes and 256MB (MQTT's limit)")
	within("broker.max_inflight", int64(b.MaxInflight), 1, 65535, "must be between 1 and 65535")
	within("broker.max_mqueue_len", int64(b.MaxMqueueLen), 0, math.MaxInt64, "must not be negative (0: no limit but max_inflight)")
	within("broker.max_mqueue_bytes", int64(b.MaxMqueueBytes), 0, math.MaxInt64, "must not be negative (0: no limit)")
	// Each connected client gets a channel of this capacity up front.
	within("broker.max_client_writes_pending", int64(b.MaxClientWritesPending), 1, 1<<20, "must be between 1 and 1048576")
	within("broker.receive_maximum", int64(b.ReceiveMaximum), 1, 65535, "must be between 1 and 65535 (MQTT's limit)")
	within("broker.max_clients", int64(b.MaxClients), 0, math.MaxInt64, "must not be negative (0 means no limit)")
	within("broker.max_sessions", int64(b.MaxSessions), 0, math.MaxInt64, "must not be negative (0: no limit)")
	if b.IdleTimeout <= 0 {
		bad("broker.idle_timeout", "must be above 0, e.g. \"15s\" (a socket without CONNECT must not stay open for good)")
	}
	seconds := func(path string, d, limit time.Duration) {
		switch {
		case d < 0 || d > limit:
			bad(path, "must be between 0s and %v", limit)
		case d%time.Second != 0:
			bad(path, "must be a whole number of seconds, e.g. \"60s\" (a plain number is milliseconds)")
		}
	}
	seconds("broker.min_keepalive", b.MinKeepalive, maxKeepalive)
	seconds("broker.max_keepalive", b.MaxKeepalive, maxKeepalive)
	if b.MinKeepalive > 0 && b.MaxKeepalive > 0 && b.MinKeepalive > b.MaxKeepalive {
		bad("broker.min_keepalive", "must not be above max_keepalive")
	}
	// Message Expiry Interval is a 32-bit number of seconds.
	seconds("broker.max_message_expiry", b.MaxMessageExpiry, (1<<32-1)*time.Second)
	seconds("broker.max_session_expiry", b.MaxSessionExpiry, (1<<32-1)*time.Second)
	// MQTT strings are at most 65535 bytes.
	within("broker.max_topic_levels", int64(b.MaxTopicLevels), 1, 65535, "must be between 1 and 65535")
	within("broker.max_topic_length", int64(b.MaxTopicLength), 1, 65535, "must be between 1 and 65535 bytes (MQTT's limit)")
	within("broker.max_topic_alias", int64(b.MaxTopicAlias), 0, 65535, "must be between 0 and 65535")
	within("broker.max_subscriptions", int64(b.MaxSubscriptions), 0, math.MaxInt64, "must not be negative (0: no limit)")
	within("broker.max_retained_messages", int64(b.MaxRetainedMessages), 0, math.MaxInt64, "must not be negative (0: no limit)")
	// A server must accept client ids of 1 to 23 bytes [MQTT-3.1.3-5].
	within("broker.max_clientid_len", int64(b.MaxClientIDLen), 23, 65535, "must be between 23 (MQTT's minimum) and 65535 bytes (MQTT's limit)")
	// A packet is read at bytes_rate; one that takes longer than the
	// keepalive to arrive would be cut off by mochi's read deadline.
	if b.BytesRate > 0 && float64(b.BytesRate) < float64(b.MaxPacketSize) {
		bad("broker.bytes_rate", "must be at least max_packet_size (%d bytes) a second, so that the largest packet arrives within a second", int64(b.MaxPacketSize))
	}
}

func (c *Config) validateListeners(bad func(path, format string, args ...any), enum func(path, v string, allowed ...string)) {
	ls := c.Broker.Listeners
	if len(ls) == 0 {
		bad("broker.listeners", "at least one listener is needed")
	}
	type bound struct {
		host string
		i    int
	}
	ports := map[string][]bound{}
	for i := range ls {
		l := &ls[i]
		p := fmt.Sprintf("broker.listeners[%d]", i)
		enum(p+".type", l.Type, "tcp", "tls", "ws", "wss")
		enum(p+".verify", l.Verify, "verify_none", "verify_peer")
		host, port, err := net.SplitHostPort(l.Address)
		if err == nil {
			_, err = strconv.ParseUint(port, 10, 16)
		}
		if err != nil {
			bad(p+".address", "%q is not host:port (write e.g. \":1883\" or \"127.0.0.1:1883\")", l.Address)
		} else if port != "0" {
			for _, o := range ports[port] {
				if o.host == host || isWildcard(o.host) || isWildcard(host) {
					bad(p+".address", "%q is also the address of broker.listeners[%d]", l.Address, o.i)
					break
				}
			}
			ports[port] = append(ports[port], bound{host, i})
		}
		if l.WebSocket() {
			if l.Path == "" {
				l.Path = "/mqtt"
			}
			if !strings.HasPrefix(l.Path, "/") || strings.ContainsAny(l.Path, "?# \t") {
				bad(p+".path", "%q must be a URL path starting with \"/\"", l.Path)
			}
		} else if l.Path != "" {
			bad(p+".path", "only a ws or wss listener has a path")
		}
		if !l.TLS() {
			for _, k := range []struct{ key, v string }{{"certfile", l.CertFile}, {"keyfile", l.KeyFile}, {"cacertfile", l.CACertFile}} {
				if k.v != "" {
					bad(p+"."+k.key, "only a tls or wss listener uses %s (this one is %q)", k.key, l.Type)
				}
			}
			if l.Verify == "verify_peer" {
				bad(p+".verify", "only a tls or wss listener verifies peers (this one is %q)", l.Type)
			}
			continue
		}
		validateListenerTLS(p, l, bad)
	}
}

func isWildcard(host string) bool { return host == "" || host == "0.0.0.0" || host == "::" }

func validateListenerTLS(p string, l *Listener, bad func(path, format string, args ...any)) {
	switch {
	case l.CertFile == "":
		bad(p+".certfile", "a %s listener needs certfile and keyfile", l.Type)
	case l.KeyFile == "":
		bad(p+".keyfile", "a %s listener needs certfile and keyfile", l.Type)
	default:
		readable := true
		for _, f := range []struct{ key, name string }{{"certfile", l.CertFile}, {"keyfile", l.KeyFile}} {
			if _, err := os.Stat(f.name); err != nil {
				bad(p+"."+f.key, "%s", fileError(f.name, err))
				readable = false
			}
		}
		if readable {
			if _, err := tls.LoadX509KeyPair(l.CertFile, l.KeyFile); err != nil {
				bad(p+".certfile", "%q with %q: %v", l.CertFile, l.KeyFile, err)
			}
		}
	}
	if l.CACertFile != "" {
		if _, err := LoadCertPool(l.CACertFile); err != nil {
			bad(p+".cacertfile", "%v", err)
		}
	}
	if l.Verify == "verify_peer" && l.CACertFile == "" {
		bad(p+".verify", "verify_peer needs cacertfile: the CA certificates client certificates must chain to")
	}
	if l.FailIfNoPeerCert && l.Verify != "verify_peer" {
		bad(p+".fail_if_no_peer_cert", "needs verify = \"verify_peer\"")
	}
}

// LoadCertPool reads PEM CA certificates.
func LoadCertPool(name string) (*x509.CertPool, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("%s", fileError(name, err))
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("%q holds no PEM certificate", name)
	}
	return pool, nil
}

func (c *Config) validateUsers(bad func(path, format string, args ...any)) {
	a := &c.Broker.Auth
	seen := map[string]string{}
	for i, u := range a.Users {
		p := fmt.Sprintf("broker.auth.users[%d]", i)
		if u.Username == "" {
			bad(p+".username", "must not be empty")
		} else if where, dup := seen[u.Username]; dup {
			bad(p+".username", "user %q is already defined in %s", u.Username, where)
		}
		seen[u.Username] = p
		if err := checkHash(string(u.PasswordHash)); err != nil {
			bad(p+".password_hash", "%v", err)
		}
	}
	a.fileUsers = nil
	if a.UsersFile == "" {
		return
	}
	users, errs := readUsersFile(a.UsersFile)
	for _, err := range errs {
		bad("broker.auth.users_file", "%v", err)
	}
	for _, u := range users {
		if where, dup := seen[u.user.Username]; dup {
			bad("broker.auth.users_file", "%s:%d: user %q is already defined in %s", a.UsersFile, u.line, u.user.Username, where)
			continue
		}
		seen[u.user.Username] = fmt.Sprintf("%s:%d", a.UsersFile, u.line)
		a.fileUsers = append(a.fileUsers, u.user)
	}
}

type fileUser struct {
	user User
	line int
}

// readUsersFile reads "username:bcrypt-hash" lines; blank lines and lines
// starting with "#" are skipped. Errors name the file's line, never a hash.
func readUsersFile(name string) ([]fileUser, []error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, []error{fmt.Errorf("%s", fileError(name, err))}
	}
	var users []fileUser
	var errs []error
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		// A user name may hold ':'; a bcrypt hash never does.
		i := strings.LastIndexByte(line, ':')
		if i <= 0 {
			errs = append(errs, fmt.Errorf("%s:%d: write \"username:bcrypt-hash\"", name, n))
			continue
		}
		u := User{Username: line[:i], PasswordHash: Secret(line[i+1:])}
		if err := checkHash(string(u.PasswordHash)); err != nil {
			errs = append(errs, fmt.Errorf("%s:%d: user %q: %v", name, n, u.Username, err))
			continue
		}
		users = append(users, fileUser{u, n})
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", name, err))
	}
	return users, errs
}

// checkHash accepts bcrypt hashes only, so that a plain password pasted
// into password_hash is refused instead of never matching.
func checkHash(h string) error {
	if !strings.HasPrefix(h, "$2a$") && !strings.HasPrefix(h, "$2b$") && !strings.HasPrefix(h, "$2y$") {
		return fmt.Errorf("not a bcrypt hash (it starts with \"$2a$\", \"$2b$\" or \"$2y$\"; make one with `mqkafka passwd`)")
	}
	if _, err := bcrypt.Cost([]byte(h)); err != nil || len(h) != 60 {
		return fmt.Errorf("not a valid bcrypt hash (60 characters; make one with `mqkafka passwd`)")
	}
	return nil
}

func validateACLRule(p string, r *ACLRule, bad func(path, format string, args ...any), enum func(path, v string, allowed ...string)) {
	enum(p+".permission", r.Permission, "allow", "deny")
	enum(p+".action", r.Action, "publish", "subscribe", "all")
	if len(r.Topics) == 0 {
		bad(p+".topics", "at least one topic filter is needed")
	}
	for j, t := range r.Topics {
		if err := CheckACLTopic(t); err != nil {
			bad(fmt.Sprintf("%s.topics[%d]", p, j), "%v", err)
		}
	}
}

// CheckACLTopic checks one ACL topic: a topic filter, possibly with
// ${username} / ${clientid}, or "eq " and a filter to match literally.
func CheckACLTopic(t string) error {
	f, eq := strings.CutPrefix(t, "eq ")
	if !eq {
		rest := strings.NewReplacer("${username}", "x", "${clientid}", "x").Replace(f)
		if strings.Contains(rest, "${") {
			return fmt.Errorf("%q: only ${username} and ${clientid} can be used in an ACL topic", t)
		}
		f = rest
	}
	if f == "" {
		return fmt.Errorf("%q: empty topic filter", t)
	}
	levels := strings.Split(f, "/")
	for i, l := range levels {
		switch {
		case l == "#" && i != len(levels)-1:
			return fmt.Errorf("%q: '#' must be the last level", t)
		case l != "#" && l != "+" && strings.ContainsAny(l, "#+"):
			return fmt.Errorf("%q: '+' and '#' must fill a whole level", t)
		}
	}
	return nil
}
