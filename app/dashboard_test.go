package app

import (
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/mqkafka/mqkafka/internal/testkit"
)

// dashboardApp is a broker with an admin token, sink s1 writing to "dash",
// rule r1 on t/#, and what the dashboard draws besides a sink: source src1
// reading "dash-in" and rule echo on src1 with a republish action.
func dashboardApp(t *testing.T) (*App, string) {
	t.Helper()
	_, addr := testkit.NewKafka(t, 0, kfake.SeedTopics(3, "dash", "dash-in"), kfake.SeedTopics(1, "dash-new"))
	tables := testkit.Source("src1", `offset_reset_policy = "earliest"`, testkit.TopicMapping("dash-in", "down/${.key}", "")) +
		testkit.RepublishRule("echo", `SELECT * FROM "$bridges/kafka_consumer:src1"`, `topic = "echo/1"`)
	return startApp(t, adminConfig(t, addr, `topic = "dash"`)+tables), addr
}

// apiJSON calls the admin API with the token and decodes the answer.
func apiJSON(t *testing.T, a *App, method, path, body string, wantCode int) any {
	t.Helper()
	code, text := call(t, a, method, path, "s3cret", body)
	if code != wantCode {
		t.Fatalf("%s %s: %d, want %d: %s", method, path, code, wantCode, text)
	}
	var v any
	if text != "" {
		if err := json.Unmarshal([]byte(text), &v); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, text)
		}
	}
	return v
}

// at walks decoded JSON by keys and indexes: at(v, "sinks", 0, "config", "topic").
func at(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			l, _ := v.([]any)
			if k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

// byKey finds the element of a decoded JSON list whose key is value.
func byKey(list any, key, value string) any {
	l, _ := list.([]any)
	for _, e := range l {
		if at(e, key) == value {
			return e
		}
	}
	return nil
}

// TestDashboardAPI checks every endpoint and field the dashboard's
// JavaScript reads, so that a change to the API or to the conf types'
// field names breaks here rather than silently in the browser.
func TestDashboardAPI(t *testing.T) {
	a, _ := dashboardApp(t)
	c := testkit.MQTTClient(t, a.broker.Addrs()[0], "dash", nil)
	for i := range 5 {
		testkit.Publish(t, c, "t/1", 1, fmt.Appendf(nil, `{"n":%d}`, i))
	}
	testkit.WaitFor(t, 20*time.Second, "delivery", func() bool { return a.sinks[0].sink.Counters.Success.Load() == 5 })

	t.Run("status", func(t *testing.T) {
		s := apiJSON(t, a, "GET", "/api/v1/status", "", 200)
		for _, p := range [][]any{
			{"broker", "connections"}, {"broker", "messages_received"}, {"broker", "messages_sent"}, {"broker", "messages_dropped"},
			{"broker", "subscriptions"}, {"broker", "rates", "messages_received", "last_5s"}, {"broker", "rates", "messages_sent", "last_5s"},
			{"version"}, {"started"}, {"time"}, {"listeners", 0}, {"connectors", 0, "status"},
		} {
			if at(s, p...) == nil {
				t.Errorf("status has no %v", p)
			}
		}
		sink := byKey(at(s, "sinks"), "name", "s1")
		for p, want := range map[string]any{"config.topic": "dash", "config.buffer.mode": "memory", "config.key": "${clientid}",
			"config.partition_strategy": "random", "config.partition_count_refresh_interval": "60s", "config.max_batch_bytes": "896KB",
			"counters.success": 5.0, "counters.matched": 5.0, "connector": "k", "status": "connected"} {
			var path []any
			for _, k := range strings.Split(p, ".") {
				path = append(path, k)
			}
			if got := at(sink, path...); got != want {
				t.Errorf("sink %s = %v, want %v", p, got, want)
			}
		}
		for _, f := range []string{"per_partition_limit", "overflow", "segment_bytes", "fsync", "memory_limit"} {
			if at(sink, "config", "buffer", f) == nil {
				t.Errorf("sink config.buffer has no %s", f)
			}
		}
		for _, f := range []string{"topic", "partition", "queuing", "queuing_bytes", "inflight"} {
			if at(sink, "partitions", 0, f) == nil {
				t.Errorf("sink partitions have no %s: %v", f, at(sink, "partitions"))
			}
		}
		if at(sink, "counters", "dropped") == nil || at(sink, "rates", "success", "last_5s") == nil || at(sink, "rates", "matched", "last_1m") == nil {
			t.Errorf("sink without dropped or rates: %v", sink)
		}
		r1 := byKey(at(s, "rules"), "id", "r1")
		if fmt.Sprint(at(r1, "from")) != "[t/#]" || fmt.Sprint(at(r1, "actions")) != "[kafka_producer:s1]" || at(r1, "passed") != 5.0 ||
			at(r1, "rates", "passed", "last_5s") == nil || at(r1, "rates", "matched", "last_5s") == nil {
			t.Errorf("rule r1 %v", r1)
		}
		echo := byKey(at(s, "rules"), "id", "echo")
		if fmt.Sprint(at(echo, "sources")) != "[src1]" || fmt.Sprint(at(echo, "actions")) != "[republish:echo#0]" {
			t.Errorf("rule echo %v", echo)
		}
		src := byKey(at(s, "sources"), "name", "src1")
		if at(src, "config", "topic_mapping", 0, "kafka_topic") != "dash-in" || at(src, "config", "topic_mapping", 0, "mqtt_topic") != "down/${.key}" ||
			at(src, "config", "connector") != "k" || at(src, "config", "offset_commit_interval") != "5s" || at(src, "received") == nil ||
			at(src, "rates", "received", "last_5s") == nil || at(src, "rates", "success", "last_5s") == nil {
			t.Errorf("source %v", src)
		}
	})

	t.Run("lists and config", func(t *testing.T) {
		if at(apiJSON(t, a, "GET", "/api/v1/connectors", "", 200), 0, "name") != "k" {
			t.Error("GET /api/v1/connectors")
		}
		if at(apiJSON(t, a, "GET", "/api/v1/sinks", "", 200), 0, "name") != "s1" {
			t.Error("GET /api/v1/sinks")
		}
		cfg := apiJSON(t, a, "GET", "/api/v1/config", "", 200)
		if at(cfg, "connectors", 0, "bootstrap_hosts") == "" || at(byKey(at(cfg, "rules"), "id", "echo"), "republish", 0, "topic") != "echo/1" ||
			at(cfg, "shutdown_timeout") != "1s" {
			t.Errorf("config: connectors %v rules %v", at(cfg, "connectors"), at(cfg, "rules"))
		}
		if h := apiJSON(t, a, "GET", "/api/v1/rates", "", 200); at(h, "interval_ms") != 1000.0 || at(h, "counters", "sink:s1:success") == nil {
			t.Errorf("rates history %v", h)
		}
	})

	t.Run("entries", func(t *testing.T) {
		if e := apiJSON(t, a, "GET", "/api/v1/sinks/s1/entry", "", 200); fmt.Sprint(e) != "map[connector:k name:s1 topic:dash]" {
			t.Errorf("sink entry %v", e)
		}
		if e := apiJSON(t, a, "GET", "/api/v1/rules/r1/entry", "", 200); at(e, "sql") != `SELECT * FROM "t/#"` {
			t.Errorf("rule entry %v", e)
		}
		if e := apiJSON(t, a, "GET", "/api/v1/sources/src1/entry", "", 200); at(e, "topic_mapping", 0, "mqtt_topic") != "down/${.key}" {
			t.Errorf("source entry %v", e)
		}
		if e := apiJSON(t, a, "GET", "/api/v1/connectors/k/entry", "", 200); at(e, "properties", "api.version.request.timeout.ms") != "10000" {
			t.Errorf("connector entry %v", e)
		}
		apiJSON(t, a, "GET", "/api/v1/rules/nope/entry", "", 404)
		apiJSON(t, a, "GET", "/api/v1/rules/sink:s1/entry", "", 404)
	})

	// What a GET returns goes back unchanged through PUT, for every kind,
	// and a copy of it under another name is created by POST.
	t.Run("round trip", func(t *testing.T) {
		for _, kind := range []string{"connectors", "sinks", "sources", "rules"} {
			key := "name"
			if kind == "rules" {
				key = "id"
			}
			list := apiJSON(t, a, "GET", "/api/v1/"+kind, "", 200).([]any)
			if len(list) == 0 {
				t.Fatalf("no %s", kind)
			}
			for _, e := range list {
				name := at(e, key).(string)
				got := apiJSON(t, a, "GET", "/api/v1/"+kind+"/"+name, "", 200)
				if !reflect.DeepEqual(got, e) {
					t.Errorf("%s %s: GET of the entry %v, in the list %v", kind, name, got, e)
				}
				body, _ := json.Marshal(got)
				if back := apiJSON(t, a, "PUT", "/api/v1/"+kind+"/"+name, string(body), 200); !reflect.DeepEqual(back, got) {
					t.Errorf("%s %s: PUT answered %v, GET %v", kind, name, back, got)
				}
				if again := apiJSON(t, a, "GET", "/api/v1/"+kind+"/"+name, "", 200); !reflect.DeepEqual(again, got) {
					t.Errorf("%s %s: after the PUT %v, before %v", kind, name, again, got)
				}
				cp := got.(map[string]any)
				cp[key] = name + "_copy"
				body, _ = json.Marshal(cp)
				if created := apiJSON(t, a, "POST", "/api/v1/"+kind, string(body), 201); !reflect.DeepEqual(created, cp) {
					t.Errorf("%s %s: POST of a copy answered %v", kind, name, created)
				}
				apiJSON(t, a, "DELETE", "/api/v1/"+kind+"/"+name+"_copy", "", 204)
			}
		}
		if d := at(byKey(apiJSON(t, a, "GET", "/api/v1/sinks", "", 200), "name", "s1"), "max_linger_time"); d != "5ms" {
			t.Errorf("sink s1 max_linger_time %v", d)
		}
	})

	// problem is how the form finds the field a problem names.
	problem := regexp.MustCompile(`^(\w+)\[\d+\]\.([^:]+): `)
	wantProblem := func(t *testing.T, v any, kind, path string) {
		t.Helper()
		if at(v, "code") != "BAD_CONFIG" || at(v, "message") == nil {
			t.Fatalf("error shape %v", v)
		}
		for _, p := range at(v, "problems").([]any) {
			if m := problem.FindStringSubmatch(p.(string)); m != nil && m[1] == kind && m[2] == path {
				return
			}
		}
		t.Fatalf("no problem at %s[…].%s in %v", kind, path, at(v, "problems"))
	}

	t.Run("sinks", func(t *testing.T) {
		wantProblem(t, apiJSON(t, a, "POST", "/api/v1/sinks", `{"name":"s2","connector":"k","topic":"bad topic!"}`, 400), "sinks", "topic")
		wantProblem(t, apiJSON(t, a, "POST", "/api/v1/sinks", `{"name":"s2","connector":"k","topic":"dash-new","buffer":{"mode":"tape"}}`, 400), "sinks", "buffer.mode")
		apiJSON(t, a, "POST", "/api/v1/sinks", `{"name":"s2","connector":"k","topic":"dash-new","max_inflight":4}`, 201)
		apiJSON(t, a, "PUT", "/api/v1/sinks/s2", `{"name":"s2","connector":"k","topic":"dash-new","buffer":{"mode":"hybrid","per_partition_limit":"1MB"}}`, 200)
		if e := apiJSON(t, a, "GET", "/api/v1/sinks/s2/entry", "", 200); at(e, "buffer", "mode") != "hybrid" || at(e, "max_inflight") != nil {
			t.Errorf("after PUT: %v", e)
		}
		apiJSON(t, a, "DELETE", "/api/v1/sinks/s2", "", 204)
	})

	t.Run("rules", func(t *testing.T) {
		wantProblem(t, apiJSON(t, a, "POST", "/api/v1/rules", `{"id":"r2","sql":"SELEC * FROM \"x/#\"","actions":["kafka_producer:s1"]}`, 400), "rules", "sql")
		wantProblem(t, apiJSON(t, a, "POST", "/api/v1/rules", `{"id":"r2","sql":"SELECT * FROM \"x/#\"","actions":["kafka_producer:nope"]}`, 400), "rules", "actions[0]")
		apiJSON(t, a, "POST", "/api/v1/rules", `{"id":"r2","sql":"SELECT * FROM \"x/#\"","actions":["kafka_producer:s1"]}`, 201)
		apiJSON(t, a, "PUT", "/api/v1/rules/r2", `{"id":"r2","sql":"SELECT * FROM \"y/#\"","actions":["kafka_producer:s1"]}`, 200)
		res := apiJSON(t, a, "POST", "/api/v1/rules/test", `{"sql":"SELECT payload.n AS n, clientid FROM \"y/#\"","topic":"y/1","payload":"{\"n\":3}","clientid":"c9","sink":"s1","partitions":3}`, 200)
		if at(res, "outcome") != "ok" || at(res, "record", "n") != 3.0 || at(res, "kafka", "topic") != "dash" || at(res, "kafka", "key") != "c9" {
			t.Errorf("rule test %v", res)
		}
		if res := apiJSON(t, a, "POST", "/api/v1/rules/test", `{"sql":"SELECT * FROM \"y/#\"","topic":"z/1"}`, 200); at(res, "outcome") != "no_match" || at(res, "reason") == nil {
			t.Errorf("rule test no_match %v", res)
		}
		if res := apiJSON(t, a, "POST", "/api/v1/rules/test", `{"sql":"SELEC","topic":"z/1"}`, 400); at(res, "code") != "BAD_SQL" || at(res, "message") == "" {
			t.Errorf("rule test bad SQL %v", res)
		}
		apiJSON(t, a, "DELETE", "/api/v1/rules/r2", "", 204)
	})

	t.Run("sources", func(t *testing.T) {
		wantProblem(t, apiJSON(t, a, "POST", "/api/v1/sources", `{"name":"src2","connector":"k","offset_reset_policy":"newest","topic_mapping":[{"kafka_topic":"dash-in","mqtt_topic":"x/1"}]}`, 400), "sources", "offset_reset_policy")
		apiJSON(t, a, "POST", "/api/v1/sources", `{"name":"src2","connector":"k","topic_mapping":[{"kafka_topic":"dash-in","mqtt_topic":"x/1","qos":0}]}`, 201)
		apiJSON(t, a, "PUT", "/api/v1/sources/src2", `{"name":"src2","connector":"k","topic_mapping":[{"kafka_topic":"dash-in","mqtt_topic":"x/2"}]}`, 200)
		apiJSON(t, a, "DELETE", "/api/v1/sources/src2", "", 204)
	})

	t.Run("connectors", func(t *testing.T) {
		wantProblem(t, apiJSON(t, a, "POST", "/api/v1/connectors", `{"name":"k2","bootstrap_hosts":"127.0.0.1:1","connect_timeout":"soon"}`, 400), "connectors", "connect_timeout")
		apiJSON(t, a, "POST", "/api/v1/connectors", `{"name":"k2","bootstrap_hosts":"127.0.0.1:1","metadata_request_timeout":"1s","connect_timeout":"1s"}`, 201)
		if res := apiJSON(t, a, "POST", "/api/v1/connectors/k2/test", "", 502); at(res, "code") != "CONNECT_FAILED" || at(res, "message") == "" {
			t.Errorf("test of a dead connector %v", res)
		}
		if res := apiJSON(t, a, "POST", "/api/v1/connectors/k/test", "", 200); at(res, "status") != "connected" {
			t.Errorf("test of k %v", res)
		}
		apiJSON(t, a, "DELETE", "/api/v1/connectors/k2", "", 204)
		apiJSON(t, a, "POST", "/api/v1/connectors/nope/test", "", 404)
	})
}
