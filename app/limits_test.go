package app

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/mqkafka/mqkafka/internal/testkit"
)

// nestedParens is rule SQL whose WHERE nests n parentheses deep.
func nestedParens(n int) string {
	return `SELECT * FROM "t/#" WHERE ` + strings.Repeat("(", n) + "1" + strings.Repeat(")", n)
}

// ruleTestBody is a POST /api/v1/rules/test body.
func ruleTestBody(t *testing.T, sql, payload string) string {
	t.Helper()
	b, err := json.Marshal(map[string]string{"sql": sql, "topic": "t/1", "payload": payload})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestAdminRefusesWhatCouldCrashIt: the admin API answers every oversized,
// overdeep or mistyped body with a clear 4xx, the process survives, and
// nothing is saved.
func TestAdminRefusesWhatCouldCrashIt(t *testing.T) {
	_, addr := testkit.NewKafka(t, 0, kfake.SeedTopics(1, "mt"))
	a := startApp(t, adminConfig(t, addr, `topic = "mt"`))
	deep := strings.Repeat("[", 400_000) + strings.Repeat("]", 400_000)
	for _, tc := range []struct {
		name, method, path, body string
		code                     int
		want                     []string
	}{
		{"SQL nested 300,000 deep", "POST", "/api/v1/rules/test", ruleTestBody(t, nestedParens(300_000), "{}"),
			400, []string{`"BAD_SQL"`, "line 1, column 1: the SQL is 600027 bytes, more than the limit of 65536"}},
		{"SQL nested 30,000 deep", "POST", "/api/v1/rules/test", ruleTestBody(t, nestedParens(30_000), "{}"),
			400, []string{`"BAD_SQL"`, "line 1, column 283: expressions nest deeper than 256 levels"}},
		{"SQL nested 100,000 deep saved", "POST", "/api/v1/rules", fmt.Sprintf(`{"id":"deep","sql":%q,"actions":["kafka_producer:s1"]}`, nestedParens(100_000)),
			400, []string{`"BAD_CONFIG"`, "rules[1].sql: line 1, column 1: the SQL is 200027 bytes"}},
		{"SQL nested 30,000 deep saved", "POST", "/api/v1/rules", fmt.Sprintf(`{"id":"deep","sql":%q,"actions":["kafka_producer:s1"]}`, nestedParens(30_000)),
			400, []string{`"BAD_CONFIG"`, "rules[1].sql: line 1, column 283: expressions nest deeper than 256 levels"}},
		{"SQL too long", "POST", "/api/v1/rules/test", ruleTestBody(t, `SELECT * FROM "t/#" -- `+strings.Repeat("x", 70_000), "{}"),
			400, []string{"the SQL is 70023 bytes, more than the limit of 65536"}},
		{"payload nested 400,000 deep", "POST", "/api/v1/rules/test", ruleTestBody(t, `SELECT payload.x AS x FROM "t/#"`, deep),
			400, []string{`"BAD_PAYLOAD"`, "payload: JSON nested deeper than 256 levels"}},
		{"body nested 400,000 deep", "POST", "/api/v1/rules/test", `{"payload":` + deep + `}`,
			400, []string{`"BAD_REQUEST"`, "the body nests deeper than 32 levels"}},
		{"entry nested 33 deep", "POST", "/api/v1/sinks", `{"name":"n","x":` + strings.Repeat(`{"a":`, 32) + "1" + strings.Repeat("}", 32) + `}`,
			400, []string{"the body nests deeper than 32 levels"}},
		{"body over 1 MiB", "POST", "/api/v1/rules/test", ruleTestBody(t, `SELECT * FROM "t/#"`, strings.Repeat("x", 1<<20)),
			413, []string{`"TOO_LARGE"`, "the body is larger than 1048576 bytes"}},
		{"entry over 1 MiB", "PUT", "/api/v1/rules/r1", `{"sql":"` + strings.Repeat(" ", 1<<20) + `"}`,
			413, []string{"the body is larger than 1048576 bytes"}},
		{"unknown kind", "POST", "/api/v1/nope", `{}`, 404, []string{`"NOT_FOUND"`, "unknown kind"}},
		{"unknown kind, PUT", "PUT", "/api/v1/nope/x", `{}`, 404, []string{"unknown kind"}},
		{"id of the wrong type", "POST", "/api/v1/rules", `{"id":5,"sql":"SELECT * FROM \"t/#\"","actions":["kafka_producer:s1"]}`,
			400, []string{`"BAD_CONFIG"`, "id: expected a string, got an integer"}},
		{"id of the wrong type, PUT", "PUT", "/api/v1/rules/r1", `{"id":5,"sql":"SELECT * FROM \"t/#\"","actions":["kafka_producer:s1"]}`,
			400, []string{"id: expected a string, got an integer"}},
		{"sql of the wrong type", "POST", "/api/v1/rules", `{"sql":[]}`,
			400, []string{"sql: expected a string, got", `missing required key \"id\"`}},
		{"empty id", "POST", "/api/v1/rules", `{"id":"","sql":"SELECT * FROM \"t/#\""}`, 400, []string{`\"id\" must not be empty`}},
		{"null body", "POST", "/api/v1/rules", `null`, 400, []string{"the body must be a JSON object"}},
	} {
		code, body := call(t, a, tc.method, tc.path, "s3cret", tc.body)
		if code != tc.code {
			t.Errorf("%s: %d, want %d: %.300s", tc.name, code, tc.code, body)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(body, w) {
				t.Errorf("%s: %d %.300s, want it to contain %q", tc.name, code, body, w)
			}
		}
	}
	if code, body := call(t, a, "GET", "/api/v1/rules", "s3cret", ""); code != 200 || strings.Contains(body, "deep") {
		t.Fatalf("rules after the refusals: %d %s", code, body)
	}
	if _, err := os.Stat(filepath.Join(a.Config().Broker.DataDir, "runtime.toml")); !os.IsNotExist(err) {
		t.Fatalf("runtime.toml was written: %v", err)
	}
	// The rule test still answers at the limit.
	if code, body := call(t, a, "POST", "/api/v1/rules/test", "s3cret", ruleTestBody(t, nestedParens(256), "{}")); code != http.StatusOK || !strings.Contains(body, `"outcome": "no_result"`) {
		t.Fatalf("256 levels: %d %s", code, body)
	}
}

// TestDeepPayloadIsARuleFailure: a device publishing JSON nested 400,000
// deep gets its PUBACK, the rule counts a failure, and the broker and the
// rule go on with the next message.
func TestDeepPayloadIsARuleFailure(t *testing.T) {
	_, addr := testkit.NewKafka(t, 0, kfake.SeedTopics(1, "deep"))
	a := startApp(t, strings.Replace(testkit.SinkConfig(t, addr, `topic = "deep"`), `SELECT * FROM "t/#"`, `SELECT payload.x AS x FROM "t/#"`, 1))
	c := testkit.MQTTClient(t, a.broker.Addrs()[0], "deep", nil)
	deep := strings.Repeat("[", 400_000) + strings.Repeat("]", 400_000)
	if resp := testkit.Publish(t, c, "t/1", 1, []byte(deep)); resp == nil || resp.ReasonCode != 0 {
		t.Fatalf("PUBACK %+v", resp)
	}
	testkit.Publish(t, c, "t/2", 1, []byte(`{"x":7}`))
	if recs := testkit.Consume(t, addr, "deep", 1, 20*time.Second); len(recs) != 1 || string(recs[0].Value) != `{"x":7}` {
		t.Fatalf("deep holds %v", recs)
	}
	_, text := call(t, a, "GET", "/metrics", "", "")
	for name, want := range map[string]float64{
		`mqkafka_rule_failed_total{rule="r1"}`:  1,
		`mqkafka_rule_passed_total{rule="r1"}`:  1,
		`mqkafka_rule_matched_total{rule="r1"}`: 2,
	} {
		if got, ok := metric(text, name); !ok || got != want {
			t.Errorf("%s = %v (found %v), want %v", name, got, ok, want)
		}
	}
}

// TestSessionLimitKeepsReady: a CONNECT refused for max_sessions is a
// client's refusal, not an unhealthy node: /readyz stays 200, /metrics
// counts it next to the sessions held, and the log line names the limit,
// not the client.
func TestSessionLimitKeepsReady(t *testing.T) {
	_, addr := testkit.NewKafka(t, 0, kfake.SeedTopics(1, "mt"))
	cfg := strings.Replace(adminConfig(t, addr, `topic = "mt"`), "[broker]\n", "[broker]\nmax_sessions = 1\n", 1)
	a, logs := startAppLogged(t, cfg)
	testkit.WaitFor(t, 10*time.Second, "ready", func() bool {
		code, _ := call(t, a, "GET", "/readyz", "s3cret", "")
		return code == http.StatusOK
	})
	mqtt := a.broker.Addrs()[0]
	testkit.MQTTClient(t, mqtt, "first", nil)
	conn, err := net.DialTimeout("tcp", mqtt, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, ca, err := testkit.MQTTSession(t, conn, &paho.Connect{ClientID: "second-device", CleanStart: true}, nil); err == nil || ca == nil || ca.ReasonCode != 0x97 {
		t.Fatalf("a second session: %v, CONNACK %+v; want 0x97", err, ca)
	}
	if code, body := call(t, a, "GET", "/readyz", "s3cret", ""); code != http.StatusOK {
		t.Fatalf("/readyz after the refusal: %d %s", code, body)
	}
	_, text := call(t, a, "GET", "/metrics", "s3cret", "")
	for name, want := range map[string]float64{
		`mqkafka_broker_refused_total{reason="max_sessions"}`: 1,
		`mqkafka_broker_sessions`:                             1,
	} {
		if got, ok := metric(text, name); !ok || got != want {
			t.Errorf("%s = %v (found %v), want %v", name, got, ok, want)
		}
	}
	var refusal string
	for l := range strings.Lines(logs.String()) {
		if strings.Contains(l, "limit=max_sessions") {
			refusal = l
		}
	}
	if refusal == "" || strings.Contains(refusal, "second-device") {
		t.Errorf("log line of the refusal %q: want one with limit=max_sessions, without the client id", refusal)
	}
}
