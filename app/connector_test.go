package app

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/mqkafka/mqkafka/conf"
	"github.com/mqkafka/mqkafka/connector"
	"github.com/mqkafka/mqkafka/internal/testkit"
	"github.com/mqkafka/mqkafka/producer"
)

// withConnectorKeys adds top-level keys to baseConfig's connector.
func withConnectorKeys(t *testing.T, cfg, keys string) string {
	t.Helper()
	i := strings.Index(cfg, "\nbootstrap_hosts = ")
	if i < 0 {
		t.Fatal("config has no bootstrap_hosts line")
	}
	j := i + 1 + strings.IndexByte(cfg[i+1:], '\n') + 1
	return cfg[:j] + keys + cfg[j:]
}

// publishOne publishes at QoS 1 and requires a successful PUBACK.
func publishOne(t *testing.T, a *App, clientID, payload string) {
	t.Helper()
	c := testkit.MQTTClient(t, a.broker.Addrs()[0], clientID, nil)
	if resp := testkit.Publish(t, c, "t/1", 1, []byte(payload)); resp.ReasonCode != 0 {
		t.Fatalf("publish: PUBACK reason %d", resp.ReasonCode)
	}
}

// requireDelivered waits for payload in topic, read with opts.
func requireDelivered(t *testing.T, a *App, addr, topic, payload string, opts ...kgo.Opt) {
	t.Helper()
	recs := testkit.Consume(t, addr, topic, 1, 30*time.Second, opts...)
	if len(recs) != 1 || !strings.Contains(string(recs[0].Value), payload) {
		t.Fatalf("Kafka has %d records, want the one with %q", len(recs), payload)
	}
	testkit.WaitFor(t, 5*time.Second, "buffer to empty", func() bool { return a.sinks[0].sink.Queued().Records == 0 })
}

// requireKeptNotDelivered checks that, after several more connection
// attempts (counted by the cluster's accepts), Kafka has nothing, the record
// stays buffered, the connector is not connected and the broker still accepts.
func requireKeptNotDelivered(t *testing.T, a *App, accepts *atomic.Int64, addr, topic string, opts ...kgo.Opt) {
	t.Helper()
	before := accepts.Load()
	testkit.WaitFor(t, 30*time.Second, "three more connection attempts", func() bool { return accepts.Load() >= before+3 })
	if recs := testkit.Consume(t, addr, topic, 1, 2*time.Second, opts...); len(recs) != 0 {
		t.Fatalf("Kafka has %d records, want none", len(recs))
	}
	if q := a.sinks[0].sink.Queued(); q.Records != 1 {
		t.Fatalf("buffer holds %d records, want 1", q.Records)
	}
	if s := a.sinks[0].clients[0].Status(); s == connector.Connected {
		t.Fatalf("connector status %s", s)
	}
	if d := a.sinks[0].sink.Counters.DroppedTotal(); d != 0 {
		t.Fatalf("dropped %v", a.sinks[0].sink.Counters.Dropped())
	}
	publishOne(t, a, "dev-still-up", "still up")
	if q := a.sinks[0].sink.Queued(); q.Records != 2 {
		t.Fatalf("buffer holds %d records after a second publish, want 2", q.Records)
	}
}

// TestSASLMechanisms: each SASL mechanism delivers with the right password;
// with a wrong one nothing is delivered, the record stays buffered, the
// process stays up and the password shows nowhere in the log.
func TestSASLMechanisms(t *testing.T) {
	for _, m := range []struct {
		conf, kfake string
		mech        func(user, pass string) kgo.Opt
	}{
		{"scram_sha_256", "SCRAM-SHA-256", func(u, p string) kgo.Opt { return kgo.SASL(scram.Auth{User: u, Pass: p}.AsSha256Mechanism()) }},
		{"scram_sha_512", "SCRAM-SHA-512", func(u, p string) kgo.Opt { return kgo.SASL(scram.Auth{User: u, Pass: p}.AsSha512Mechanism()) }},
		{"plain", "PLAIN", func(u, p string) kgo.Opt { return kgo.SASL(plain.Auth{User: u, Pass: p}.AsMechanism()) }},
	} {
		t.Run(m.conf, func(t *testing.T) {
			const secret = "s3cret-Pa55"
			read := m.mech("admin", secret)
			t.Run("delivers", func(t *testing.T) {
				addr := testkit.NewSASLKafka(t, m.kfake, "admin", secret, []kgo.Opt{read}, kfake.SeedTopics(1, "sasl-in"))
				// The password comes from a file, as file:// lets one write it.
				pwFile := filepath.Join(t.TempDir(), "kafka-password")
				if err := os.WriteFile(pwFile, []byte(secret+"\n"), 0o600); err != nil {
					t.Fatal(err)
				}
				cfg := testkit.WithConnectorTables(t, testkit.BaseConfig(t, addr, "sasl-in"), testkit.SASLTable(m.conf, "file://"+pwFile))
				a, log := startAppLogged(t, cfg)
				publishOne(t, a, "dev-sasl", "hello sasl")
				requireDelivered(t, a, addr, "sasl-in", "hello sasl", read)
				if strings.Contains(log.String(), secret) {
					t.Fatal("the password shows in the log")
				}
			})
			t.Run("wrong password", func(t *testing.T) {
				counted, accepts := testkit.CountAccepts()
				addr := testkit.NewSASLKafka(t, m.kfake, "admin", secret, []kgo.Opt{read}, kfake.SeedTopics(1, "sasl-in"), counted)
				const wrong = "Wr0ng-Pa55word"
				a, log := startAppLogged(t, testkit.WithConnectorTables(t, testkit.BaseConfig(t, addr, "sasl-in"), testkit.SASLTable(m.conf, wrong)))
				publishOne(t, a, "dev-sasl", "never")
				requireKeptNotDelivered(t, a, accepts, addr, "sasl-in", read)
				out := log.String()
				if strings.Contains(out, wrong) {
					t.Fatal("the password shows in the log")
				}
				if !strings.Contains(strings.ToLower(out), "authentication") {
					t.Fatalf("the log does not say authentication failed:\n%s", out)
				}
			})
		})
	}
}

// TestTLSConnector: a TLS connector verifying the broker with its CA
// delivers; with a CA that did not sign the broker's certificate nothing is
// delivered and the process stays up.
func TestTLSConnector(t *testing.T) {
	ca := testkit.NewCA(t)
	serverTLS := &tls.Config{Certificates: []tls.Certificate{ca.Server(t, []net.IP{net.ParseIP("127.0.0.1")}, "localhost").Certificate}, MinVersion: tls.VersionTLS12}
	read := kgo.DialTLSConfig(&tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1"})

	t.Run("verify_peer", func(t *testing.T) {
		_, addr := testkit.NewKafka(t, 0, kfake.TLS(serverTLS), kfake.SeedTopics(1, "tls-in"))
		a := startApp(t, testkit.WithConnectorTables(t, testkit.BaseConfig(t, addr, "tls-in"), testkit.SSLTable(ca.CertFile, "")))
		publishOne(t, a, "dev-tls", "hello tls")
		requireDelivered(t, a, addr, "tls-in", "hello tls", read)
	})
	t.Run("wrong CA", func(t *testing.T) {
		other := testkit.NewCA(t)
		counted, accepts := testkit.CountAccepts()
		_, addr := testkit.NewKafka(t, 0, kfake.TLS(serverTLS), kfake.SeedTopics(1, "tls-in"), counted)
		a, log := startAppLogged(t, testkit.WithConnectorTables(t, testkit.BaseConfig(t, addr, "tls-in"), testkit.SSLTable(other.CertFile, "")))
		publishOne(t, a, "dev-tls", "never")
		requireKeptNotDelivered(t, a, accepts, addr, "tls-in", read)
		if !strings.Contains(log.String(), "certificate verify failed") {
			t.Errorf("the log does not say why:\n%s", log.String())
		}
	})
	t.Run("wrong CA with verify_none", func(t *testing.T) {
		other := testkit.NewCA(t)
		_, addr := testkit.NewKafka(t, 0, kfake.TLS(serverTLS), kfake.SeedTopics(1, "tls-in"))
		a := startApp(t, testkit.WithConnectorTables(t, testkit.BaseConfig(t, addr, "tls-in"), testkit.SSLTable(other.CertFile, "verify = \"verify_none\"\n")))
		publishOne(t, a, "dev-tls", "unverified")
		requireDelivered(t, a, addr, "tls-in", "unverified", read)
	})
	t.Run("host name checked", func(t *testing.T) {
		// A certificate of the right CA but for another host.
		otherHost := &tls.Config{Certificates: []tls.Certificate{ca.Server(t, nil, "kafka.invalid").Certificate}}
		counted, accepts := testkit.CountAccepts()
		_, addr := testkit.NewKafka(t, 0, kfake.TLS(otherHost), kfake.SeedTopics(1, "tls-in"), counted)
		readOther := kgo.DialTLSConfig(&tls.Config{RootCAs: ca.Pool(), ServerName: "kafka.invalid"})
		a := startApp(t, testkit.WithConnectorTables(t, testkit.BaseConfig(t, addr, "tls-in"), testkit.SSLTable(ca.CertFile, "")))
		publishOne(t, a, "dev-tls", "never")
		requireKeptNotDelivered(t, a, accepts, addr, "tls-in", readOther)

		// server_name_indication = "disable" turns the host name check off.
		_, addr = testkit.NewKafka(t, 0, kfake.TLS(otherHost), kfake.SeedTopics(1, "tls-in"))
		a = startApp(t, testkit.WithConnectorTables(t, testkit.BaseConfig(t, addr, "tls-in"), testkit.SSLTable(ca.CertFile, "server_name_indication = \"disable\"\n")))
		publishOne(t, a, "dev-tls", "no host check")
		requireDelivered(t, a, addr, "tls-in", "no host check", readOther)
	})
	t.Run("SASL_SSL", func(t *testing.T) {
		// kfake serves SASL over its TLS listener too.
		scramRead := kgo.SASL(scram.Auth{User: "admin", Pass: "secret"}.AsSha256Mechanism())
		addr := testkit.NewSASLKafka(t, "SCRAM-SHA-256", "admin", "secret", []kgo.Opt{read, scramRead}, kfake.TLS(serverTLS), kfake.SeedTopics(1, "tls-in"))
		a := startApp(t, testkit.WithConnectorTables(t, testkit.BaseConfig(t, addr, "tls-in"), testkit.SSLTable(ca.CertFile, "")+testkit.SASLTable("scram_sha_256", "secret")))
		publishOne(t, a, "dev-tls", "hello sasl_ssl")
		requireDelivered(t, a, addr, "tls-in", "hello sasl_ssl", read, scramRead)
	})
}

// readClientIDs accepts connections on ln and returns the client id of the
// first request of each, until want distinct ids arrived or timeout passed.
func readClientIDs(t *testing.T, ln net.Listener, want int, timeout time.Duration) map[string]bool {
	t.Helper()
	ids := map[string]bool{}
	deadline := time.Now().Add(timeout)
	for len(ids) < want && time.Now().Before(deadline) {
		ln.(*net.TCPListener).SetDeadline(deadline)
		conn, err := ln.Accept()
		if err != nil {
			break
		}
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		// Request: size, api key, api version, correlation id, client id (int16 length + bytes).
		var hdr [14]byte
		if _, err := io.ReadFull(conn, hdr[:]); err == nil {
			n := int(int16(uint16(hdr[12])<<8 | uint16(hdr[13])))
			id := make([]byte, max(n, 0))
			if _, err := io.ReadFull(conn, id); err == nil {
				ids[string(id)] = true
			}
		}
		conn.Close()
	}
	return ids
}

// TestConnectorClientIDs: client ids are
// "<prefix>:<connector>:egress:<node>:<sink index>:<client no>", without the
// leading ":" when there is no prefix.
func TestConnectorClientIDs(t *testing.T) {
	for _, tc := range []struct{ keys, node, prefix string }{
		{"", conf.DefaultNode(), ""},
		{"client_id_prefix = \"site-a\"\n", "emqx@10.1.2.3", "site-a:"},
	} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		cfg := withConnectorKeys(t, testkit.BaseConfig(t, ln.Addr().String(), "ids"), tc.keys)
		if tc.node != conf.DefaultNode() {
			cfg = strings.Replace(cfg, "[broker]\n", fmt.Sprintf("[broker]\nnode = %q\n", tc.node), 1)
		}
		cfg += "\n[[sinks]]\nname = \"s2\"\nconnector = \"k\"\ntopic = \"ids2\"\n"
		a := startApp(t, cfg)
		ids := readClientIDs(t, ln, 2, 20*time.Second)
		ln.Close()
		for i := range 2 {
			want := fmt.Sprintf("%sk:egress:%s:%d:0", tc.prefix, tc.node, i)
			if !ids[want] {
				t.Errorf("no connection with client id %q; got %v", want, ids)
			}
		}
		_ = a.Stop()
	}
}

// TestConnectorClientConfigHidesPassword: the password is not in the client
// configuration's printed form either.
func TestConnectorClientConfigHidesPassword(t *testing.T) {
	const secret = "TopSecret-4711"
	base := testkit.BaseConfig(t, "127.0.0.1:9092", "t")
	path := filepath.Join(t.TempDir(), "ok.toml")
	if err := os.WriteFile(path, []byte(testkit.WithConnectorTables(t, base, testkit.SASLTable("plain", secret))), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	cc := producer.NewClientConfig(cfg.Connectors[0], cfg.Sinks[0])
	if s := fmt.Sprintf("%v %+v %#v", cc, cc, cc); strings.Contains(s, secret) {
		t.Fatalf("the password shows in %s", s)
	}
	if string(cc.Conn.SASL.Password) != secret || cc.Conn.SASL.Mechanism != "PLAIN" {
		t.Fatalf("SASL settings %+v", cc.Conn.SASL)
	}
}
