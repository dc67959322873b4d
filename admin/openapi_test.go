package admin

import (
	"encoding/json"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/mqkafka/mqkafka/conf"
	"github.com/mqkafka/mqkafka/internal/testkit"
)

// TestOpenAPICoversRoutes: openapi.json is served, parses, and documents
// exactly the routes the server registers ({kind} stands for each kind).
func TestOpenAPICoversRoutes(t *testing.T) {
	base := startServer(t, &fakeRuntime{})
	resp, body := testkit.Do(t, "GET", base+"/api/v1/openapi.json", "tok", "")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET openapi.json: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var doc struct {
		OpenAPI string                    `json:"openapi"`
		Paths   map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal([]byte(body), &doc); err != nil || !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi.json: %v, version %q", err, doc.OpenAPI)
	}
	var documented []string
	for p, ops := range doc.Paths {
		for m := range ops {
			documented = append(documented, strings.ToUpper(m)+" "+p)
		}
	}
	s, err := New("127.0.0.1:0", "", &fakeRuntime{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var served []string
	for _, r := range s.routes() {
		if !strings.Contains(r.pattern, "{kind}") {
			served = append(served, r.pattern)
			continue
		}
		for _, kind := range []string{"connectors", "rules", "sinks", "sources"} {
			p := strings.Replace(r.pattern, "{kind}", kind, 1)
			if key, _ := conf.KindKey(kind); key != "name" {
				p = strings.Replace(p, "{name}", "{"+key+"}", 1)
			}
			served = append(served, p)
		}
	}
	slices.Sort(documented)
	slices.Sort(served)
	for _, r := range served {
		if !slices.Contains(documented, r) {
			t.Errorf("%s is served but not in openapi.json", r)
		}
	}
	for _, r := range documented {
		if !slices.Contains(served, r) {
			t.Errorf("%s is in openapi.json but not served", r)
		}
	}
}
