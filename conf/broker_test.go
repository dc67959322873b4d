package conf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/mqkafka/mqkafka/internal/testkit"
)

// parseBroker parses a config made of text alone.
func parseBroker(t *testing.T, text string) (*Config, []Problem) {
	t.Helper()
	cfg, err := Parse("test.toml", []byte(text))
	if err == nil {
		return cfg, nil
	}
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("Parse: %v", err)
	}
	return nil, ce.Problems
}

// wantBrokerProblem checks that the only problem is at line with a message starting with prefix.
func wantBrokerProblem(t *testing.T, text string, line int, prefix string) {
	t.Helper()
	_, ps := parseBroker(t, text)
	if len(ps) != 1 || ps[0].Line != line || !strings.HasPrefix(ps[0].Msg, prefix) {
		t.Errorf("config:\n%s\ngot problems:\n%s\nwant one at line %d starting with %q", text, fmtProblems(ps), line, prefix)
	}
}

func hash(t *testing.T, pw string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

func TestBrokerDefaults(t *testing.T) {
	cfg, ps := parseBroker(t, "")
	if len(ps) > 0 {
		t.Fatalf("problems:\n%s", fmtProblems(ps))
	}
	want := Broker{
		Listeners: []Listener{{Type: "tcp", Address: ":1883", Verify: "verify_none"}},
		DataDir:   "data", Persistence: true, SessionOwnerCheck: true, MaxPacketSize: MB, MaxInflight: 8192, MaxClientWritesPending: 8192,
		ReceiveMaximum: 1024, RetainAvailable: true, MaxMessageExpiry: 24 * time.Hour, MaxSessionExpiry: 2 * time.Hour, IdleTimeout: 15 * time.Second,
		MaxTopicLevels: 128, MaxTopicLength: 4096, MaxClientIDLen: 65535, MaxConnRate: 1000, MaxTopicAlias: 64, MaxSubscriptions: 1000, MaxRetainedMessages: 10000, MaxMqueueLen: 1000, MaxMqueueBytes: 64 * MB,
		MaxSessions: 100000,
	}
	if !reflect.DeepEqual(cfg.Broker, want) {
		t.Fatalf("got  %+v\nwant %+v", cfg.Broker, want)
	}
	if cfg.Broker.Auth.AllowAnonymous || len(cfg.Broker.Auth.Accounts()) != 0 {
		t.Fatalf("auth = %+v", cfg.Broker.Auth)
	}
}

func TestBrokerAllKeys(t *testing.T) {
	srv := testkit.NewCA(t).Server(t, nil)
	cert, key := srv.CertFile, srv.KeyFile
	users := filepath.Join(t.TempDir(), "users")
	fileText := fmt.Sprintf("# devices\n\ndev1:%s\norg:dev2:%s\n", hash(t, "p1"), hash(t, "p2"))
	if err := os.WriteFile(users, []byte(fileText), 0o600); err != nil {
		t.Fatal(err)
	}
	adminHash := hash(t, "secret")
	text := fmt.Sprintf(`[broker]
listeners = [
  { type = "tcp", address = ":1883" },
  { type = "tls", address = ":8883", certfile = %[1]q, keyfile = %[2]q, cacertfile = %[1]q, verify = "verify_peer", fail_if_no_peer_cert = true },
  { type = "ws", address = "127.0.0.1:8083" },
  { type = "wss", address = ":8084", path = "/ws", certfile = %[1]q, keyfile = %[2]q },
]
persistence = false
max_packet_size = "256KB"
max_inflight = 100
max_client_writes_pending = 500
receive_maximum = 32
max_clients = 10000
max_sessions = 20000
min_keepalive = "10s"
max_keepalive = "5m"
retain_available = false
max_message_expiry = "0s"
max_session_expiry = "2h"
max_topic_levels = 16
max_topic_length = 1024
max_clientid_len = 256
idle_timeout = "300ms"
max_conn_rate = "500/10s"
messages_rate = 50
bytes_rate = "1MB/s"
[broker.auth]
allow_anonymous = true
users_file = %[3]q
[[broker.auth.users]]
username = "admin"
password_hash = %[4]q
[[broker.acl]]
permission = "allow"
username = "admin"
topics = ["#"]
[[broker.acl]]
permission = "deny"
clientid = "bad"
action = "publish"
topics = ["eq #", "sensors/${clientid}/+", "${username}/#"]
`, cert, key, users, adminHash)
	cfg, ps := parseBroker(t, text)
	if len(ps) > 0 {
		t.Fatalf("problems:\n%s", fmtProblems(ps))
	}
	b := cfg.Broker
	wantListeners := []Listener{
		{Type: "tcp", Address: ":1883", Verify: "verify_none"},
		{Type: "tls", Address: ":8883", CertFile: cert, KeyFile: key, CACertFile: cert, Verify: "verify_peer", FailIfNoPeerCert: true},
		{Type: "ws", Address: "127.0.0.1:8083", Path: "/mqtt", Verify: "verify_none"},
		{Type: "wss", Address: ":8084", Path: "/ws", CertFile: cert, KeyFile: key, Verify: "verify_none"},
	}
	if !reflect.DeepEqual(b.Listeners, wantListeners) {
		t.Errorf("listeners:\ngot  %+v\nwant %+v", b.Listeners, wantListeners)
	}
	if b.Persistence || b.MaxPacketSize != 256*KB || b.MaxInflight != 100 || b.MaxClientWritesPending != 500 ||
		b.ReceiveMaximum != 32 || b.MaxClients != 10000 || b.MaxSessions != 20000 || b.MinKeepalive != 10*time.Second || b.MaxKeepalive != 5*time.Minute ||
		b.RetainAvailable || b.MaxMessageExpiry != 0 || b.MaxSessionExpiry != 2*time.Hour || b.IdleTimeout != 300*time.Millisecond ||
		b.MaxTopicLevels != 16 || b.MaxTopicLength != 1024 || b.MaxClientIDLen != 256 ||
		b.MaxConnRate != 50 || b.MessagesRate != 50 || b.BytesRate != Rate(MB) {
		t.Errorf("limits: %+v", b)
	}
	wantUsers := []User{{"admin", Secret(adminHash)}, {"dev1", Secret(strings.Split(fileText, ":")[1][:60])}}
	got := b.Auth.Accounts()
	if len(got) != 3 || !reflect.DeepEqual(got[:2], wantUsers) || got[2].Username != "org:dev2" {
		t.Errorf("accounts = %+v", got)
	}
	wantACL := []ACLRule{
		{Permission: "allow", Username: "admin", Action: "all", Topics: []string{"#"}},
		{Permission: "deny", ClientID: "bad", Action: "publish", Topics: []string{"eq #", "sensors/${clientid}/+", "${username}/#"}},
	}
	if !reflect.DeepEqual(b.ACL, wantACL) {
		t.Errorf("acl:\ngot  %+v\nwant %+v", b.ACL, wantACL)
	}
	// The API shows the effective config: hashes are not shown.
	if s := fmt.Sprint(b.Auth.Users); strings.Contains(s, adminHash) {
		t.Errorf("a password hash is shown: %s", s)
	}
}

func TestBrokerBadValues(t *testing.T) {
	srv := testkit.NewCA(t).Server(t, nil)
	cert, key := srv.CertFile, srv.KeyFile
	missing := filepath.Join(t.TempDir(), "nope.pem")
	tlsKeys := fmt.Sprintf("certfile = %q, keyfile = %q", cert, key)
	for _, tc := range []struct {
		text   string
		line   int
		prefix string
	}{
		{"[broker]\nlisteners = []\n", 2, "broker.listeners: at least one listener is needed"},
		{"[broker]\nlisteners = [{ type = \"quic\", address = \":1\" }]\n", 2, `broker.listeners[0].type: "quic" is not one of tcp, tls, ws, wss`},
		{"[broker]\nlisteners = [{ address = \"1883\" }]\n", 2, `broker.listeners[0].address: "1883" is not host:port`},
		{"[broker]\nlisteners = [{ address = \":99999\" }]\n", 2, `broker.listeners[0].address: ":99999" is not host:port`},
		{"[broker]\nlisteners = [\n { address = \":1883\" },\n { type = \"ws\", address = \"127.0.0.1:1883\" },\n]\n", 4,
			`broker.listeners[1].address: "127.0.0.1:1883" is also the address of broker.listeners[0]`},
		{"[broker]\nlisteners = [{ type = \"ws\", address = \":8083\", path = \"mqtt\" }]\n", 2, `broker.listeners[0].path: "mqtt" must be a URL path`},
		{"[broker]\nlisteners = [{ address = \":1883\", path = \"/mqtt\" }]\n", 2, "broker.listeners[0].path: only a ws or wss listener has a path"},
		{fmt.Sprintf("[broker]\nlisteners = [{ address = \":1883\", certfile = %q }]\n", cert), 2, "broker.listeners[0].certfile: only a tls or wss listener uses certfile"},
		{"[broker]\nlisteners = [{ type = \"tls\", address = \":8883\" }]\n", 2, "broker.listeners[0].certfile: a tls listener needs certfile and keyfile"},
		{fmt.Sprintf("[broker]\nlisteners = [{ type = \"tls\", address = \":8883\", certfile = %q, keyfile = %q }]\n", missing, key), 2,
			fmt.Sprintf("broker.listeners[0].certfile: file %q does not exist", missing)},
		{fmt.Sprintf("[broker]\nlisteners = [{ type = \"tls\", address = \":8883\", certfile = %q, keyfile = %q }]\n", key, cert), 2,
			"broker.listeners[0].certfile: "},
		{fmt.Sprintf("[broker]\nlisteners = [{ type = \"tls\", address = \":8883\", %s, verify = \"verify_peer\" }]\n", tlsKeys), 2,
			"broker.listeners[0].verify: verify_peer needs cacertfile"},
		{fmt.Sprintf("[broker]\nlisteners = [{ type = \"tls\", address = \":8883\", %s, cacertfile = %q }]\n", tlsKeys, key), 2,
			"broker.listeners[0].cacertfile: "},
		{fmt.Sprintf("[broker]\nlisteners = [{ type = \"tls\", address = \":8883\", %s, fail_if_no_peer_cert = true }]\n", tlsKeys), 2,
			"broker.listeners[0].fail_if_no_peer_cert: needs verify"},
		{"[broker]\nmax_packet_size = \"1GB\"\n", 2, "broker.max_packet_size: must be between"},
		{"[broker]\nmax_inflight = 0\n", 2, "broker.max_inflight: must be between 1 and 65535"},
		{"[broker]\nmax_client_writes_pending = 0\n", 2, "broker.max_client_writes_pending: must be between"},
		{"[broker]\nreceive_maximum = 70000\n", 2, "broker.receive_maximum: must be between 1 and 65535"},
		{"[broker]\nmax_clients = -1\n", 2, "broker.max_clients: must not be negative"},
		{"[broker]\nmax_sessions = -1\n", 2, "broker.max_sessions: must not be negative (0: no limit)"},
		{"[broker]\nmax_keepalive = 60\n", 2, "broker.max_keepalive: must be a whole number of seconds"},
		{"[broker]\nmax_keepalive = \"19h\"\n", 2, "broker.max_keepalive: must be between 0s and"},
		{"[broker]\nmin_keepalive = \"2m\"\nmax_keepalive = \"1m\"\n", 2, "broker.min_keepalive: must not be above max_keepalive"},
		{"[broker]\nmax_message_expiry = \"1.5s\"\n", 2, "broker.max_message_expiry: must be a whole number of seconds"},
		{"[broker]\nmax_session_expiry = \"-1s\"\n", 2, "broker.max_session_expiry: must be between 0s and"},
		{"[broker]\nmax_topic_levels = 0\n", 2, "broker.max_topic_levels: must be between 1 and 65535"},
		{"[broker]\nmax_topic_alias = 65536\n", 2, "broker.max_topic_alias: must be between 0 and 65535"},
		{"[broker]\nmax_subscriptions = -1\n", 2, "broker.max_subscriptions: must not be negative (0: no limit)"},
		{"[broker]\nmax_retained_messages = -1\n", 2, "broker.max_retained_messages: must not be negative (0: no limit)"},
		{"[broker]\nmax_topic_length = 65536\n", 2, "broker.max_topic_length: must be between 1 and 65535"},
		{"[broker]\nmax_clientid_len = 22\n", 2, "broker.max_clientid_len: must be between 23"},
		{"[broker]\nmax_conn_rate = -1\n", 2, `broker.max_conn_rate: invalid value "-1": invalid rate "-1"`},
		{"[broker]\nmessages_rate = \"10/x\"\n", 2, `broker.messages_rate: invalid value "10/x": invalid rate`},
		{"[broker]\nbytes_rate = \"64KB/s\"\n", 2, "broker.bytes_rate: must be at least max_packet_size"},
		{"[broker]\nidle_timeout = \"0s\"\n", 2, "broker.idle_timeout: must be above 0"},
		{"[broker]\npersistence = \"yes\"\n", 2, "broker.persistence: expected a boolean"},
		{"[[broker.auth.users]]\nusername = \"u\"\npassword_hash = \"secret\"\n", 3, "broker.auth.users[0].password_hash: not a bcrypt hash"},
		{"[[broker.auth.users]]\nusername = \"u\"\npassword_hash = \"$2a$10$short\"\n", 3, "broker.auth.users[0].password_hash: not a valid bcrypt hash"},
		{"[[broker.auth.users]]\nusername = \"u\"\n", 1, `missing required key "password_hash"`},
		{fmt.Sprintf("[[broker.auth.users]]\nusername = \"u\"\npassword_hash = %[1]q\n[[broker.auth.users]]\nusername = \"u\"\npassword_hash = %[1]q\n", hash(t, "x")), 5,
			`broker.auth.users[1].username: user "u" is already defined in broker.auth.users[0]`},
		{fmt.Sprintf("[broker.auth]\nusers_file = %q\n", missing), 2, fmt.Sprintf("broker.auth.users_file: file %q does not exist", missing)},
		{"[[broker.acl]]\npermission = \"permit\"\ntopics = [\"#\"]\n", 2, `broker.acl[0].permission: "permit" is not one of allow, deny`},
		{"[[broker.acl]]\npermission = \"allow\"\naction = \"read\"\ntopics = [\"#\"]\n", 3, `broker.acl[0].action: "read" is not one of publish, subscribe, all`},
		{"[[broker.acl]]\npermission = \"allow\"\ntopics = []\n", 3, "broker.acl[0].topics: at least one topic filter is needed"},
		{"[[broker.acl]]\npermission = \"allow\"\ntopics = [\"a\",\n \"a/#/b\"]\n", 4, `broker.acl[0].topics[1]: "a/#/b": '#' must be the last level`},
		{"[[broker.acl]]\npermission = \"allow\"\ntopics = [\"a/b+\"]\n", 3, `broker.acl[0].topics[0]: "a/b+": '+' and '#' must fill a whole level`},
		{"[[broker.acl]]\npermission = \"allow\"\ntopics = [\"${peerhost}/#\"]\n", 3, `broker.acl[0].topics[0]: "${peerhost}/#": only ${username} and ${clientid}`},
		{"[[broker.acl]]\npermission = \"allow\"\nclient_id = \"c\"\ntopics = [\"#\"]\n", 3, `unknown key "client_id" in [[broker.acl]] (did you mean "clientid"?)`},
	} {
		wantBrokerProblem(t, tc.text, tc.line, tc.prefix)
	}
}

func TestBrokerUsersFileProblems(t *testing.T) {
	h := hash(t, "x")
	path := filepath.Join(t.TempDir(), "users")
	text := fmt.Sprintf("a:%s\nno-hash-here\nb:plaintext\n\nc:%s\na:%s\n", h, h, h)
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgText := fmt.Sprintf("[broker.auth]\nallow_anonymous = false\nusers_file = %q\n", path)
	_, ps := parseBroker(t, cfgText)
	want := []string{
		fmt.Sprintf(`broker.auth.users_file: %s:2: write "username:bcrypt-hash"`, path),
		fmt.Sprintf(`broker.auth.users_file: %s:3: user "b": not a bcrypt hash`, path),
		fmt.Sprintf(`broker.auth.users_file: %s:6: user "a" is already defined in %s:1`, path, path),
	}
	if len(ps) != len(want) {
		t.Fatalf("problems:\n%s", fmtProblems(ps))
	}
	for i, p := range ps {
		if p.Line != 3 || !strings.HasPrefix(p.Msg, want[i]) {
			t.Errorf("problem %d = %v, want line 3, %q", i, p, want[i])
		}
		if strings.Contains(p.Msg, "plaintext") || strings.Contains(p.Msg, h) {
			t.Errorf("problem %d shows a password or hash: %s", i, p.Msg)
		}
	}
}

func TestRate(t *testing.T) {
	for _, tc := range []struct {
		text string
		want Rate
	}{{"1000/s", 1000}, {"500/10s", 50}, {"60/m", 1}, {"1MB/s", Rate(MB)}, {"64KB/2s", 32 * 1024}, {"20", 20}, {"infinity", 0}} {
		var r Rate
		if err := r.UnmarshalText([]byte(tc.text)); err != nil || r != tc.want {
			t.Errorf("%q: got %v, %v; want %v", tc.text, r, err, tc.want)
		}
	}
	for _, text := range []string{"", "/s", "10/", "10/0s", "10/-1s", "ten/s", "10/d"} {
		var r Rate
		if err := r.UnmarshalText([]byte(text)); err == nil {
			t.Errorf("%q: got %v, want an error", text, r)
		}
	}
}
