package admin

import (
	"context"
	"encoding/json"
	"io/fs"
	"log/slog"
	"path"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mqkafka/mqkafka/conf"
	"github.com/mqkafka/mqkafka/internal/testkit"
)

// fakeRuntime is a Runtime with fixed entries that records changes.
type fakeRuntime struct {
	mu      sync.Mutex
	snap    Snapshot
	entries map[string]map[string]map[string]any
	changes []conf.Change
}

func (f *fakeRuntime) Snapshot() Snapshot {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.snap
	s.Time = time.Now()
	return s
}
func (f *fakeRuntime) Config() *conf.Config  { return &conf.Config{} }
func (f *fakeRuntime) Ready() (bool, string) { return true, "" }
func (f *fakeRuntime) Change(_ context.Context, ch conf.Change) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.changes = append(f.changes, ch)
	return nil
}
func (f *fakeRuntime) TestConnector(context.Context, conf.Connector) error { return nil }
func (f *fakeRuntime) Entry(kind, name string) (map[string]any, error) {
	if e, ok := f.entries[kind][name]; ok {
		return e, nil
	}
	return nil, conf.ErrNotFound
}

func startServer(t *testing.T, rt Runtime) string {
	t.Helper()
	s, err := New("127.0.0.1:0", "tok", rt, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	t.Cleanup(func() { _ = s.Close() })
	return "http://" + s.Addr()
}

func uiFileNames(t *testing.T) []string {
	t.Helper()
	var names []string
	err := fs.WalkDir(uiFiles, "ui", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			names = append(names, strings.TrimPrefix(p, "ui/"))
		}
		return err
	})
	if err != nil || len(names) < 5 {
		t.Fatalf("embedded ui: %v %v", names, err)
	}
	return names
}

// TestUIServed: the dashboard and its assets are served without a token,
// with types a browser accepts for module scripts, while the API still
// wants the token.
func TestUIServed(t *testing.T) {
	base := startServer(t, &fakeRuntime{})
	resp, body := testkit.Do(t, "GET", base+"/", "", "")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" ||
		!strings.Contains(body, `<script type="module" src="app.js">`) {
		t.Fatalf("GET /: %d %q\n%s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "connect-src 'self'") {
		t.Errorf("CSP %q", csp)
	}
	want := map[string]string{".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
		".css": "text/css; charset=utf-8", ".png": "image/png"}
	for _, name := range uiFileNames(t) {
		resp, body := testkit.Do(t, "GET", base+"/"+name, "", "")
		if name == "index.html" {
			// The file server answers /index.html with a redirect to /.
			continue
		}
		if resp.StatusCode != 200 || len(body) == 0 {
			t.Errorf("%s: %d", name, resp.StatusCode)
		}
		if ct, ok := want[path.Ext(name)]; !ok || resp.Header.Get("Content-Type") != ct {
			t.Errorf("%s: Content-Type %q, want %q", name, resp.Header.Get("Content-Type"), ct)
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: no nosniff", name)
		}
	}
	if resp, _ := testkit.Do(t, "GET", base+"/nope.js", "", ""); resp.StatusCode != 404 {
		t.Errorf("missing asset: %d", resp.StatusCode)
	}
	if resp, _ := testkit.Do(t, "GET", base+"/api/v1/status", "", ""); resp.StatusCode != 401 {
		t.Errorf("status without a token: %d", resp.StatusCode)
	}
	if resp, _ := testkit.Do(t, "GET", base+"/api/v1/status", "tok", ""); resp.StatusCode != 200 {
		t.Errorf("status with the token: %d", resp.StatusCode)
	}
}

// TestUINoExternalURLs: the dashboard must work without Internet access
// and send the token nowhere else, so no file names an http(s) URL, and
// every script, style and image it references is embedded.
func TestUINoExternalURLs(t *testing.T) {
	names := uiFileNames(t)
	have := map[string]bool{}
	for _, n := range names {
		have[n] = true
	}
	ref := regexp.MustCompile(`(?:from\s+|import\(|src=|href=)["']\.?/?([\w./-]+\.(?:js|css|png))["']`)
	for _, name := range names {
		b, err := uiFiles.ReadFile("ui/" + name)
		if err != nil {
			t.Fatal(err)
		}
		text := strings.ToLower(string(b))
		for _, scheme := range []string{"http://", "https://", "//cdn", "url("} {
			if i := strings.Index(text, scheme); i >= 0 {
				t.Errorf("%s names %q: %q", name, scheme, text[max(0, i-40):min(len(text), i+60)])
			}
		}
		for _, m := range ref.FindAllStringSubmatch(string(b), -1) {
			if !have[m[1]] {
				t.Errorf("%s refers to %s, which is not embedded", name, m[1])
			}
		}
	}
}

// TestEntryRedactsSecrets: an edit form gets the entry with its file keys
// but no secret, and a PUT that sends the placeholder back keeps the secret.
func TestEntryRedactsSecrets(t *testing.T) {
	rt := &fakeRuntime{entries: map[string]map[string]map[string]any{"connectors": {"k": {
		"name": "k", "bootstrap_hosts": "b:9092", "connect_timeout": "3s",
		"authentication": map[string]any{"mechanism": "plain", "username": "u", "password": "pw1"},
		"properties":     map[string]any{"sasl.password": "pw2", "linger.ms": "5"},
	}}}}
	base := startServer(t, rt)
	resp, body := testkit.Do(t, "GET", base+"/api/v1/connectors/k/entry", "tok", "")
	if resp.StatusCode != 200 || strings.Contains(body, "pw1") || strings.Contains(body, "pw2") {
		t.Fatalf("entry: %d %s", resp.StatusCode, body)
	}
	var e map[string]any
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatal(err)
	}
	auth := e["authentication"].(map[string]any)
	if auth["password"] != "******" || auth["username"] != "u" || e["connect_timeout"] != "3s" ||
		e["properties"].(map[string]any)["sasl.password"] != "******" || e["properties"].(map[string]any)["linger.ms"] != "5" {
		t.Fatalf("entry %v", e)
	}
	if rt.entries["connectors"]["k"]["authentication"].(map[string]any)["password"] != "pw1" {
		t.Fatal("redaction changed the runtime's entry")
	}
	if resp, body := testkit.Do(t, "GET", base+"/api/v1/connectors/nope/entry", "tok", ""); resp.StatusCode != 404 || !strings.Contains(body, "NOT_FOUND") {
		t.Fatalf("missing entry: %d %s", resp.StatusCode, body)
	}
	if resp, _ := testkit.Do(t, "GET", base+"/api/v1/widgets/k/entry", "tok", ""); resp.StatusCode != 404 {
		t.Fatalf("unknown kind: %d", resp.StatusCode)
	}
	if resp, _ := testkit.Do(t, "GET", base+"/api/v1/connectors/k/entry", "", ""); resp.StatusCode != 401 {
		t.Fatalf("entry without a token: %d", resp.StatusCode)
	}

	edited := strings.Replace(body, `"3s"`, `"4s"`, 1)
	if resp, body := testkit.Do(t, "PUT", base+"/api/v1/connectors/k", "tok", edited); resp.StatusCode != 200 {
		t.Fatalf("PUT: %d %s", resp.StatusCode, body)
	}
	ch := rt.changes[len(rt.changes)-1]
	if ch.Entry["connect_timeout"] != "4s" || ch.Entry["authentication"].(map[string]any)["password"] != "pw1" ||
		ch.Entry["properties"].(map[string]any)["sasl.password"] != "pw2" {
		t.Fatalf("PUT applied %v", ch.Entry)
	}
	// A GET copied into a POST under a new name, or a PUT of an entry that
	// has no secret to keep, would store the placeholder as the password.
	n := len(rt.changes)
	copied := strings.Replace(body, `"name": "k"`, `"name": "k2"`, 1)
	if copied == body {
		t.Fatalf("no name to change in %s", body)
	}
	if resp, body := testkit.Do(t, "POST", base+"/api/v1/connectors", "tok", copied); resp.StatusCode != 400 || !strings.Contains(body, "authentication.password") && !strings.Contains(body, "properties.sasl.password") {
		t.Fatalf("POST with a placeholder secret: %d %s", resp.StatusCode, body)
	}
	if resp, body := testkit.Do(t, "PUT", base+"/api/v1/connectors/none", "tok", `{"bootstrap_hosts":"b:9092","properties":{"sasl.password":"******"}}`); resp.StatusCode != 400 || !strings.Contains(body, "properties.sasl.password") {
		t.Fatalf("PUT with a placeholder secret and nothing to keep: %d %s", resp.StatusCode, body)
	}
	testkit.Do(t, "PUT", base+"/api/v1/connectors/k", "tok", `{"bootstrap_hosts":"b:9092","authentication":{"mechanism":"plain","username":"u","password":"new"}}`)
	if len(rt.changes) != n+1 {
		t.Fatalf("refused bodies were applied: %d changes before, %d after", n, len(rt.changes))
	}
	if ch := rt.changes[len(rt.changes)-1]; ch.Entry["authentication"].(map[string]any)["password"] != "new" {
		t.Fatalf("a new password was not taken: %v", ch.Entry)
	}
}

// TestBrokerRates: the overview's publishes/s come from the broker's counters.
func TestBrokerRates(t *testing.T) {
	var r rates
	t0 := time.Now()
	for i := range 6 {
		s := Snapshot{Time: t0.Add(time.Duration(i) * time.Second), Broker: BrokerStats{MessagesReceived: int64(100 * i), MessagesSent: int64(10 * i)}}
		r.add(sample{at: s.Time, values: counterValues(s)})
	}
	s := Snapshot{Time: t0.Add(5 * time.Second), Broker: BrokerStats{MessagesReceived: 500, MessagesSent: 50}}
	r.fill(&s)
	if s.Broker.Rates["messages_received"].Last5s != 100 || s.Broker.Rates["messages_sent"].Last5s != 10 {
		t.Fatalf("broker rates %+v", s.Broker.Rates)
	}
}

// TestRatesShareOneWindow: at a steady rate every counter along a flow
// (rule matched and passed, sink matched and success) shows the same rate,
// and a counter that restarts has no negative rate.
func TestRatesShareOneWindow(t *testing.T) {
	var r rates
	t0 := time.Now()
	snap := func(i int) Snapshot {
		n := int64(15 * i)
		return Snapshot{Time: t0.Add(time.Duration(i) * time.Second),
			Rules: []RuleStatus{{ID: "r1", Matched: n, Passed: n}, {ID: "new", Matched: int64(i % 3)}},
			Sinks: []SinkStatus{{Name: "s1", Counters: SinkCounters{Matched: n, Success: n - 15}}}}
	}
	for i := range 90 {
		r.add(sample{at: snap(i).Time, values: counterValues(snap(i))})
	}
	s := snap(90)
	r.fill(&s)
	for _, got := range []Rate{s.Rules[0].Rates["matched"], s.Rules[0].Rates["passed"], s.Sinks[0].Rates["matched"], s.Sinks[0].Rates["success"]} {
		if got.Last5s != 15 || got.Last1m != 15 {
			t.Errorf("rate %+v, want 15/s over 5 s and 1 min; all: %+v %+v", got, s.Rules[0].Rates, s.Sinks[0].Rates)
		}
	}
	if got := s.Rules[1].Rates["matched"]; got.Last5s < 0 || got.Last1m < 0 {
		t.Errorf("a restarted counter has rate %+v", got)
	}
}

// TestRatesKeepFiveMinutes: the server keeps 5 minutes of one-second
// samples, and serves them so that a reloaded dashboard's charts are full.
func TestRatesKeepFiveMinutes(t *testing.T) {
	var r rates
	t0 := time.Now()
	for i := range 400 {
		s := Snapshot{Time: t0.Add(time.Duration(i) * time.Second), Broker: BrokerStats{MessagesReceived: int64(i)}}
		if i >= 350 {
			s.Sinks = []SinkStatus{{Name: "late", Counters: SinkCounters{Success: int64(i)}}}
		}
		r.add(sample{at: s.Time, values: counterValues(s)})
	}
	h := r.history()
	if len(h.TimesMs) != historyLen || h.TimesMs[0] != t0.Add(99*time.Second).UnixMilli() || h.TimesMs[historyLen-1] != t0.Add(399*time.Second).UnixMilli() {
		t.Fatalf("history of %d samples from %d to %d", len(h.TimesMs), h.TimesMs[0], h.TimesMs[len(h.TimesMs)-1])
	}
	in := h.Counters["broker:messages_received"]
	if *in[0] != 99 || *in[historyLen-1] != 399 {
		t.Errorf("broker column %d…%d", *in[0], *in[historyLen-1])
	}
	late := h.Counters["sink:late:success"]
	if late[250] != nil || late[251] == nil || *late[251] != 350 {
		t.Errorf("a sink added at sample 350: %v %v", late[250], late[251])
	}
}
