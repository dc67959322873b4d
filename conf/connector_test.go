package conf

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

const connectorHead = `[[connectors]]
name = "k"
bootstrap_hosts = "kafka-1.example.com:9093,kafka-1.example.com:9094"
`

// parseConnector parses a config of one connector followed by extra lines,
// starting at line 4.
func parseConnector(t *testing.T, extra string) (*Config, []Problem) {
	t.Helper()
	cfg, err := Parse("test.toml", []byte(connectorHead+extra))
	if err == nil {
		return cfg, nil
	}
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("Parse: %v", err)
	}
	return nil, ce.Problems
}

func mustParseConnector(t *testing.T, extra string) Connector {
	t.Helper()
	cfg, ps := parseConnector(t, extra)
	if len(ps) > 0 {
		t.Fatalf("unexpected problems:\n%s", fmtProblems(ps))
	}
	return cfg.Connectors[0]
}

// wantProblem checks that the only problem is at line with a message starting with prefix.
func wantProblem(t *testing.T, extra string, line int, prefix string) {
	t.Helper()
	_, ps := parseConnector(t, extra)
	if len(ps) != 1 || ps[0].Line != line || !strings.HasPrefix(ps[0].Msg, prefix) {
		t.Fatalf("config:\n%s%s\ngot problems:\n%s\nwant one at line %d starting with %q", connectorHead, extra, fmtProblems(ps), line, prefix)
	}
}

func writeTemp(t *testing.T, name, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestConnectorDefaults(t *testing.T) {
	cn := mustParseConnector(t, "")
	if cn.ConnectTimeout != 5*time.Second || cn.MetadataRequestTimeout != 5*time.Second || cn.MinMetadataRefreshInterval != 3*time.Second {
		t.Errorf("timeouts = %v, %v, %v; want 5s, 5s, 3s", cn.ConnectTimeout, cn.MetadataRequestTimeout, cn.MinMetadataRefreshInterval)
	}
	if cn.ClientIDPrefix != "" || cn.ConcurrentClients != 1 {
		t.Errorf("client_id_prefix = %q, concurrent_clients = %d", cn.ClientIDPrefix, cn.ConcurrentClients)
	}
	if want := (ConnectorSSL{Verify: "verify_peer", ServerNameIndication: "auto"}); cn.SSL != want {
		t.Errorf("ssl = %+v, want %+v", cn.SSL, want)
	}
	if cn.Authentication != nil {
		t.Errorf("authentication = %+v, want none", cn.Authentication)
	}
	if want := (SocketOpts{Nodelay: true, TCPKeepalive: "none"}); cn.SocketOpts != want || cn.SocketOpts.KeepaliveEnabled() {
		t.Errorf("socket_opts = %+v, want %+v", cn.SocketOpts, want)
	}
	if cn.Node() != DefaultNode() || !strings.HasPrefix(cn.Node(), "mqkafka@") {
		t.Errorf("node = %q, want %q", cn.Node(), DefaultNode())
	}
}

func TestConnectorAllKeys(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	crt := filepath.Join(dir, "client.pem")
	key := filepath.Join(dir, "client.key")
	pemText := func(typ string) string { return fmt.Sprintf("-----BEGIN %s-----\nAAAA\n-----END %s-----\n", typ, typ) }
	for path, text := range map[string]string{ca: pemText("CERTIFICATE"), crt: pemText("CERTIFICATE"), key: pemText("EC PRIVATE KEY")} {
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	text := fmt.Sprintf(`connect_timeout = "7s"
metadata_request_timeout = 2500
min_metadata_refresh_interval = "500ms"
client_id_prefix = "site-a"
concurrent_clients = 4
[connectors.ssl]
enable = true
cacertfile = %q
certfile = %q
keyfile = %q
verify = "verify_none"
server_name_indication = "kafka-1.example.com"
[connectors.authentication]
mechanism = "scram_sha_512"
username = "bridge"
password = "s3cret"
[connectors.socket_opts]
sndbuf = "1MB"
recbuf = "64KB"
nodelay = false
tcp_keepalive = "240,30,5"

[broker]
node = "emqx@10.0.0.1"

[[sinks]]
name = "a"
connector = "k"
topic = "a"
[[sinks]]
name = "b"
connector = "k"
topic = "b"
`, ca, crt, key)
	cfg, ps := parseConnector(t, text)
	if len(ps) > 0 {
		t.Fatalf("problems:\n%s", fmtProblems(ps))
	}
	cn := cfg.Connectors[0]
	want := Connector{
		Name: "k", BootstrapHosts: "kafka-1.example.com:9093,kafka-1.example.com:9094",
		ConnectTimeout: 7 * time.Second, MetadataRequestTimeout: 2500 * time.Millisecond,
		MinMetadataRefreshInterval: 500 * time.Millisecond, ClientIDPrefix: "site-a", ConcurrentClients: 4, HealthCheckInterval: 15 * time.Second,
		SSL: ConnectorSSL{Enable: true, CACertFile: ca, CertFile: crt, KeyFile: key,
			Verify: "verify_none", ServerNameIndication: "kafka-1.example.com"},
		Authentication: &ConnectorAuth{Mechanism: "scram_sha_512", Username: "bridge", Password: "s3cret"},
		SocketOpts:     SocketOpts{Sndbuf: MB, Recbuf: 64 * KB, TCPKeepalive: "240,30,5"},
		node:           "emqx@10.0.0.1",
		sinkIndex:      map[string]int{"a": 0, "b": 1},
	}
	if !reflect.DeepEqual(cn, want) {
		t.Fatalf("got  %#v\nwant %#v", cn, want)
	}
	if cn.Node() != "emqx@10.0.0.1" || cn.SinkIndex("b") != 1 || !cn.SocketOpts.KeepaliveEnabled() {
		t.Fatalf("node %q, sink index %d, keepalive %v", cn.Node(), cn.SinkIndex("b"), cn.SocketOpts.KeepaliveEnabled())
	}
}

func TestConnectorBadValues(t *testing.T) {
	for _, tc := range []struct {
		extra  string
		line   int
		prefix string
	}{
		{"connect_timeout = \"500ms\"\n", 4, "connectors[0].connect_timeout: must be between 1s and"},
		{"metadata_request_timeout = \"0s\"\n", 4, "connectors[0].metadata_request_timeout: must be at least 1ms"},
		{"min_metadata_refresh_interval = \"2m\"\n", 4, "connectors[0].min_metadata_refresh_interval: must be between 1ms and 1m"},
		{"concurrent_clients = 0\n", 4, "connectors[0].concurrent_clients: must be between 1 and 16"},
		{"concurrent_clients = 17\n", 4, "connectors[0].concurrent_clients: must be between 1 and 16"},
		{"[connectors.ssl]\nverify = \"verify_all\"\n", 5, `connectors[0].ssl.verify: "verify_all" is not one of verify_peer, verify_none`},
		{"[connectors.ssl]\nenable = true\nserver_name_indication = \"\"\n", 6, "connectors[0].ssl.server_name_indication: must not be empty"},
		{"[connectors.ssl]\nenable = true\nserver_name_indication = \"other.example.com\"\n", 6,
			`connectors[0].ssl.server_name_indication: "other.example.com": librdkafka cannot send a chosen SNI host name`},
		{"[connectors.authentication]\nmechanism = \"gssapi\"\nusername = \"u\"\npassword = \"p\"\n", 5,
			`connectors[0].authentication.mechanism: "gssapi" is not one of plain, scram_sha_256, scram_sha_512`},
		{"[connectors.authentication]\nmechanism = \"plain\"\nusername = \"\"\npassword = \"p\"\n", 6, "connectors[0].authentication.username: must not be empty"},
		{"[connectors.authentication]\nmechanism = \"plain\"\nusername = \"u\"\npassword = \"\"\n", 7, "connectors[0].authentication.password: must not be empty"},
		{"[connectors.authentication]\nmechanism = \"plain\"\nusername = \"u\"\n", 4, `missing required key "password"`},
		{"[connectors.socket_opts]\nsndbuf = \"200MB\"\n", 5, "connectors[0].socket_opts.sndbuf: must be at most 100000000 bytes"},
		{"[connectors.socket_opts]\nrecbuf = \"lots\"\n", 5, `connectors[0].socket_opts.recbuf: invalid value "lots"`},
		{"[connectors.socket_opts]\nnodelay = \"yes\"\n", 5, "connectors[0].socket_opts.nodelay: expected a boolean"},
		{"bootstrap_host = \"x:1\"\n", 4, `unknown key "bootstrap_host"`},
	} {
		wantProblem(t, tc.extra, tc.line, tc.prefix)
	}
	// Settings of a disabled [connectors.ssl] other than verify are not checked.
	mustParseConnector(t, "[connectors.ssl]\ncacertfile = \"/nonexistent/ca.pem\"\nserver_name_indication = \"other\"\n")
}

func TestConnectorTCPKeepalive(t *testing.T) {
	for _, ok := range []string{"none", "240,30,5", " 240, 30 ,5 ", "1,1,1", "32767,32767,127"} {
		cn := mustParseConnector(t, fmt.Sprintf("[connectors.socket_opts]\ntcp_keepalive = %q\n", ok))
		if got := cn.SocketOpts.KeepaliveEnabled(); got != (ok != "none") {
			t.Errorf("%q: keepalive enabled = %v", ok, got)
		}
	}
	for _, bad := range []string{"", "true", "240,30", "240,30,5,1", "a,30,5", "0,30,5", "240,0,5", "240,30,0", "240,30,128", "32768,30,5", "-1,30,5", "240;30;5"} {
		wantProblem(t, fmt.Sprintf("[connectors.socket_opts]\ntcp_keepalive = %q\n", bad), 5, "connectors[0].socket_opts.tcp_keepalive: ")
	}
}

func TestConnectorCertFiles(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope.pem")
	wantProblem(t, fmt.Sprintf("[connectors.ssl]\nenable = true\ncacertfile = %q\n", missing), 6,
		fmt.Sprintf("connectors[0].ssl.cacertfile: file %q does not exist", missing))
	key := writeTemp(t, "k.pem", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
	wantProblem(t, fmt.Sprintf("[connectors.ssl]\nenable = true\ncertfile = %q\nkeyfile = %q\n", missing, key), 6,
		fmt.Sprintf("connectors[0].ssl.certfile: file %q does not exist", missing))

	notPEM := writeTemp(t, "ca.pem", "not a certificate\n")
	wantProblem(t, fmt.Sprintf("[connectors.ssl]\nenable = true\ncacertfile = %q\n", notPEM), 6,
		fmt.Sprintf("connectors[0].ssl.cacertfile: %q holds no PEM CERTIFICATE", notPEM))

	cert := writeTemp(t, "c.pem", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
	wantProblem(t, fmt.Sprintf("[connectors.ssl]\nenable = true\ncertfile = %q\n", cert), 6, "connectors[0].ssl.certfile: needs keyfile too")
	wantProblem(t, fmt.Sprintf("[connectors.ssl]\nenable = true\ncertfile = %q\nkeyfile = %q\n", cert, cert), 7,
		fmt.Sprintf("connectors[0].ssl.keyfile: %q holds no PEM PRIVATE KEY", cert))
	// A CA directory is what librdkafka accepts as well.
	mustParseConnector(t, fmt.Sprintf("[connectors.ssl]\nenable = true\ncacertfile = %q\n", t.TempDir()))
	// SNI equal to the host librdkafka connects to changes nothing and is accepted.
	mustParseConnector(t, "[connectors.ssl]\nenable = true\nserver_name_indication = \"KAFKA-1.example.com\"\n")
}

func TestConnectorPasswordFile(t *testing.T) {
	path := writeTemp(t, "pw", "from-file\r\nsecond line\n")
	cn := mustParseConnector(t, fmt.Sprintf("[connectors.authentication]\nmechanism = \"plain\"\nusername = \"u\"\npassword = \"file://%s\"\n", path))
	if got := string(cn.Authentication.Password); got != "from-file" {
		t.Fatalf("password = %q, want the file's first line", got)
	}
	oneLine := writeTemp(t, "pw1", "only-line")
	cn = mustParseConnector(t, fmt.Sprintf("[connectors.authentication]\nmechanism = \"plain\"\nusername = \"u\"\npassword = \"file://%s\"\n", oneLine))
	if got := string(cn.Authentication.Password); got != "only-line" {
		t.Fatalf("password = %q", got)
	}

	missing := filepath.Join(t.TempDir(), "nope")
	wantProblem(t, fmt.Sprintf("[connectors.authentication]\nmechanism = \"plain\"\nusername = \"u\"\npassword = \"file://%s\"\n", missing), 7,
		fmt.Sprintf("connectors[0].authentication.password: file %q does not exist", missing))
	wantProblem(t, fmt.Sprintf("[connectors.authentication]\nmechanism = \"plain\"\nusername = \"u\"\npassword = \"file://%s\"\n", t.TempDir()), 7,
		"connectors[0].authentication.password: file ")
	empty := writeTemp(t, "empty", "\nsecret-on-line-2\n")
	_, ps := parseConnector(t, fmt.Sprintf("[connectors.authentication]\nmechanism = \"plain\"\nusername = \"u\"\npassword = \"file://%s\"\n", empty))
	if len(ps) != 1 || !strings.Contains(ps[0].Msg, "is empty") || strings.Contains(ps[0].Msg, "secret-on-line-2") {
		t.Fatalf("problems:\n%s", fmtProblems(ps))
	}
	if os.Geteuid() != 0 {
		unreadable := writeTemp(t, "locked", "secret\n")
		if err := os.Chmod(unreadable, 0); err != nil {
			t.Fatal(err)
		}
		wantProblem(t, fmt.Sprintf("[connectors.authentication]\nmechanism = \"plain\"\nusername = \"u\"\npassword = \"file://%s\"\n", unreadable), 7,
			fmt.Sprintf("connectors[0].authentication.password: file %q cannot be read: permission denied", unreadable))
	}
}

func TestSecretIsNeverShown(t *testing.T) {
	a := ConnectorAuth{Mechanism: "plain", Username: "u", Password: "hunter2"}
	js, _ := json.Marshal(a)
	var logged strings.Builder
	slog.New(slog.NewTextHandler(&logged, nil)).Info("x", "auth", a, "pw", a.Password)
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("x", "auth", a, "pw", a.Password)
	for _, s := range []string{fmt.Sprint(a), fmt.Sprintf("%v %+v %#v %s", a, a, a, a.Password), fmt.Sprint(&a), string(js), logged.String()} {
		if strings.Contains(s, "hunter2") {
			t.Fatalf("password shown: %s", s)
		}
	}
	if string(a.Password) != "hunter2" {
		t.Fatal("conversion to string lost the value")
	}
}

// TestMessageMaxBytes: a connector's message.max.bytes is the sinks' record
// limit, so it must read as librdkafka reads it: a plain number in its range.
func TestMessageMaxBytes(t *testing.T) {
	if n, err := MessageMaxBytes(mustParseConnector(t, "").Properties); n != DefaultMessageMaxBytes || err != nil {
		t.Fatalf("default: %d, %v", n, err)
	}
	cn := mustParseConnector(t, "[connectors.properties]\n\"message.max.bytes\" = \"5000\"\n")
	if n, err := MessageMaxBytes(cn.Properties); n != 5000 || err != nil {
		t.Fatalf("5000: %d, %v", n, err)
	}
	for _, v := range []string{"999", "1000000001", "1MB", " 5000", "0x1000"} {
		wantProblem(t, fmt.Sprintf("[connectors.properties]\n\"message.max.bytes\" = %q\n", v), 4,
			fmt.Sprintf("connectors[0].properties: message.max.bytes %q: must be a whole number", v))
	}
}

// TestSinkMaxInflightBytes: the default, a value, and one below the least
// (refused at its line).
func TestSinkMaxInflightBytes(t *testing.T) {
	sink := "[[sinks]]\nname = \"s\"\nconnector = \"k\"\ntopic = \"t\"\n"
	cfg, ps := parseConnector(t, sink)
	if len(ps) > 0 || cfg.Sinks[0].MaxInflightBytes != 24*MB {
		t.Fatalf("default: %v, problems %s", cfg.Sinks[0].MaxInflightBytes, fmtProblems(ps))
	}
	cfg, ps = parseConnector(t, sink+"max_inflight_bytes = \"100MB\"\n")
	if len(ps) > 0 || cfg.Sinks[0].MaxInflightBytes != 100*MB {
		t.Fatalf("100MB: problems %s", fmtProblems(ps))
	}
	wantProblem(t, sink+"max_inflight_bytes = \"1KB\"\n", 8, "sinks[0].max_inflight_bytes: must be at least 64KB")
}

// TestGiveUpPropertiesAreManaged: the librdkafka properties that make a
// producer give up on a record are refused (each sink sets them from
// max_batch_age), and max_batch_age must be one librdkafka takes.
func TestGiveUpPropertiesAreManaged(t *testing.T) {
	for _, k := range []string{"message.timeout.ms", "delivery.timeout.ms", "retries", "message.send.max.retries"} {
		wantProblem(t, fmt.Sprintf("[connectors.properties]\n%q = \"1000\"\n", k), 4,
			fmt.Sprintf("connectors[0].properties: %s is set by mqkafka", k))
	}
	sink := "[[sinks]]\nname = \"s\"\nconnector = \"k\"\ntopic = \"t\"\n"
	cfg, ps := parseConnector(t, sink+"max_batch_age = \"30s\"\n")
	if len(ps) > 0 || cfg.Sinks[0].MaxBatchAge != 30*time.Second {
		t.Fatalf("30s: %v, problems %s", cfg.Sinks[0].MaxBatchAge, fmtProblems(ps))
	}
	for _, v := range []string{"5ms", "500us", "-1s", "600h"} {
		wantProblem(t, sink+fmt.Sprintf("max_batch_age = %q\n", v), 8, "sinks[0].max_batch_age: must be")
	}
}
