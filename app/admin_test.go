package app

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/mqkafka/mqkafka/internal/testkit"
)

// adminConfig is sinkConfig with a token on the admin listener.
func adminConfig(t *testing.T, kafkaAddr, sinkTOML string) string {
	return strings.Replace(testkit.SinkConfig(t, kafkaAddr, sinkTOML), `listen = "127.0.0.1:0"`,
		"listen = \"127.0.0.1:0\"\ntoken = \"s3cret\"", 1)
}

// call makes an admin request; token "" sends none.
func call(t *testing.T, a *App, method, path, token, body string) (int, string) {
	t.Helper()
	resp, b := testkit.Do(t, method, "http://"+a.admin.Addr()+path, token, body)
	return resp.StatusCode, b
}

// metric reads one sample from a /metrics text.
func metric(text, name string) (float64, bool) {
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindStringSubmatch(text)
	if m == nil {
		return 0, false
	}
	v, err := strconv.ParseFloat(m[1], 64)
	return v, err == nil
}

func TestMetricsAndAuth(t *testing.T) {
	_, addr := testkit.NewKafka(t, 0, kfake.SeedTopics(2, "mt"))
	a := startApp(t, adminConfig(t, addr, `topic = "mt"`))
	c := testkit.MQTTClient(t, a.broker.Addrs()[0], "met", nil)
	for i := range 20 {
		testkit.Publish(t, c, "t/m", 1, fmt.Appendf(nil, "m%d", i))
	}
	testkit.WaitFor(t, 20*time.Second, "delivery", func() bool { return a.sinks[0].sink.Counters.Success.Load() == 20 })

	if code, _ := call(t, a, "GET", "/metrics", "", ""); code != http.StatusUnauthorized {
		t.Fatalf("/metrics without a token: %d", code)
	}
	if code, _ := call(t, a, "GET", "/api/v1/status", "wrong", ""); code != http.StatusUnauthorized {
		t.Fatalf("wrong token: %d", code)
	}
	if code, _ := call(t, a, "GET", "/healthz", "", ""); code != 200 {
		t.Fatalf("/healthz: %d", code)
	}
	code, text := call(t, a, "GET", "/metrics", "s3cret", "")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	for name, want := range map[string]float64{
		`mqkafka_sink_success_total{sink="s1"}`:   20,
		`mqkafka_sink_matched_total{sink="s1"}`:   20,
		`mqkafka_connector_status{connector="k"}`: 2,
		`mqkafka_rule_matched_total{rule="r1"}`:   20,
		`mqkafka_broker_connections`:              1,
		// Everything acknowledged: nothing counts against max_inflight_bytes.
		`mqkafka_sink_inflight_bytes{sink="s1"}`: 0,
	} {
		if got, ok := metric(text, name); !ok || got != want {
			t.Errorf("%s = %v (found %v), want %v", name, got, ok, want)
		}
	}
	if got, _ := metric(text, "mqkafka_broker_messages_received_total"); got < 20 {
		t.Errorf("messages received %v", got)
	}
	code, body := call(t, a, "GET", "/api/v1/sinks/s1/status", "s3cret", "")
	var sink struct {
		Counters struct{ Success int64 }
		Status   string
	}
	if err := json.Unmarshal([]byte(body), &sink); code != 200 || err != nil || sink.Counters.Success != 20 || sink.Status != "connected" {
		t.Fatalf("GET sink: %d %v %s", code, err, body)
	}
	if code, _ := call(t, a, "GET", "/readyz", "s3cret", ""); code != 200 {
		t.Fatalf("/readyz with Kafka up: %d", code)
	}
}

func TestReadyzWithKafkaDown(t *testing.T) {
	a := startApp(t, testkit.SinkConfig(t, fmt.Sprintf("127.0.0.1:%d", testkit.FreePort(t)), `topic = "x"`))
	testkit.WaitFor(t, 10*time.Second, "not ready", func() bool {
		code, _ := call(t, a, "GET", "/readyz", "", "")
		return code == http.StatusServiceUnavailable
	})
}

// TestAPIChangesApplyWithoutRestart: a sink and a rule created through the
// API deliver at once, survive a restart through runtime.toml, and an
// invalid body is refused with check's own message.
func TestAPIChangesApplyWithoutRestart(t *testing.T) {
	_, addr := testkit.NewKafka(t, 0, kfake.SeedTopics(1, "mt", "api-topic"))
	cfgText := adminConfig(t, addr, `topic = "mt"`)
	cfgText = strings.Replace(cfgText, `"api.version.request.timeout.ms" = "10000"`, "\"api.version.request.timeout.ms\" = \"10000\"\n\"sasl.password\" = \"hunter2\"", 1)
	a := startApp(t, cfgText)
	s1 := a.sinkRun("s1")
	if code, body := call(t, a, "POST", "/api/v1/sinks", "s3cret", `{"name":"s2","connector":"k","topic":"api-topic","value":"${payload}","max_inflight":4}`); code != 201 {
		t.Fatalf("create sink: %d %s", code, body)
	}
	if a.sinkRun("s1") != s1 {
		t.Fatal("adding a sink restarted another sink of the same connector")
	}
	if code, body := call(t, a, "GET", "/api/v1/config", "s3cret", ""); code != 200 || strings.Contains(body, "hunter2") || !strings.Contains(body, "******") {
		t.Fatalf("config shows a secret: %d %s", code, body)
	}
	if code, body := call(t, a, "POST", "/api/v1/rules", "s3cret", `{"id":"r2","sql":"SELECT * FROM \"api/#\"","actions":["kafka_producer:s2"]}`); code != 201 {
		t.Fatalf("create rule: %d %s", code, body)
	}
	c := testkit.MQTTClient(t, a.broker.Addrs()[0], "api", nil)
	testkit.Publish(t, c, "api/1", 1, []byte("via-api"))
	if recs := testkit.Consume(t, addr, "api-topic", 1, 20*time.Second); len(recs) != 1 || string(recs[0].Value) != "via-api" {
		t.Fatalf("api-topic holds %v", recs)
	}

	code, body := call(t, a, "PUT", "/api/v1/sinks/s2", "s3cret", `{"connector":"k","topic":"api-topic","required_acks":"all"}`)
	if code != 400 || !strings.Contains(body, `required_acks: \"all\" is not one of all_isr, leader_only, none`) {
		t.Fatalf("invalid change: %d %s", code, body)
	}
	if code, _ := call(t, a, "POST", "/api/v1/sinks", "s3cret", `{"name":"s2","connector":"k","topic":"x"}`); code != 409 {
		t.Fatalf("duplicate create: %d", code)
	}
	if code, body := call(t, a, "POST", "/api/v1/rules/test", "s3cret", `{"sql":"SELECT payload.a as a FROM \"t/#\"","topic":"t/1","payload":"{\"a\":1}","sink":"s1"}`); code != 200 || !strings.Contains(body, `"outcome": "ok"`) {
		t.Fatalf("rule test: %d %s", code, body)
	}
	if code, body := call(t, a, "POST", "/api/v1/connectors/k/test", "s3cret", ""); code != 200 {
		t.Fatalf("connector test: %d %s", code, body)
	}
	dataDir := a.Config().Broker.DataDir
	if _, err := os.Stat(filepath.Join(dataDir, "runtime.toml")); err != nil {
		t.Fatalf("runtime.toml: %v", err)
	}
	if code, _ := call(t, a, "DELETE", "/api/v1/rules/r1", "s3cret", ""); code != 204 {
		t.Fatalf("delete rule: %d", code)
	}
	testkit.Publish(t, c, "t/1", 1, []byte("no rule reads this"))
	if m := a.sinks[0].sink.Counters.Matched.Load(); m != 0 {
		t.Fatalf("deleted rule still matched %d", m)
	}

	// A restart on the same data dir keeps the API's changes.
	_ = a.Stop()
	cfgPath := filepath.Join(t.TempDir(), "same.toml")
	text := strings.Replace(cfgText, "data_dir = ", fmt.Sprintf("data_dir = %q\n#", dataDir), 1)
	if err := os.WriteFile(cfgPath, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Start(cfgPath, cfg, testVersion, testkit.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Stop() })
	if b.sinkRun("s2") == nil || len(b.Config().Rules) != 1 || b.Config().Rules[0].ID != "r2" {
		t.Fatalf("after restart: sinks %v rules %v", b.Config().Sinks, b.Config().Rules)
	}
}
