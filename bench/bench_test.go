package bench

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// mqkafkaBinary builds the real mqkafka: the bench runs it as its children.
func mqkafkaBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "mqkafka")
	out, err := exec.Command("go", "build", "-o", bin, "../cmd/mqkafka").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestTinyMatrix runs a small matrix end to end and checks what matters
// for the harness itself: nothing lost or duplicated, and well-formed
// results. No timing is asserted.
func TestTinyMatrix(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs mqkafka")
	}
	out := t.TempDir()
	p := DefaultParams()
	p.Clients, p.Inflight, p.Messages, p.Size = 2, 8, 2000, 64
	o := Options{
		Scenarios: DefaultScenarios(),
		Params:    p,
		Matrix:    []string{"buffer=memory,disk", "qos=0,1"},
		Out:       out,
		Binary:    mqkafkaBinary(t),
		Drain:     20 * time.Second,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := Run(ctx, o)
	if err != nil {
		t.Fatalf("bench: %v", err)
	}
	var table strings.Builder
	rep.Table(&table)
	t.Log("\n" + table.String())

	b, err := os.ReadFile(filepath.Join(out, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var got Report
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("results.json: %v", err)
	}
	// kafka-raw once, broker-raw per QoS, a pipeline per buffer and QoS.
	if len(got.Runs) != 1+2+4 {
		t.Fatalf("%d runs, want 7:\n%s", len(got.Runs), table.String())
	}
	for _, r := range got.Runs {
		if r.Error != "" || r.Skipped != "" {
			t.Errorf("%s: error %q, skipped %q", r.Name, r.Error, r.Skipped)
		}
		if r.Lost != 0 || r.Duplicates != 0 {
			t.Errorf("%s: lost %d, duplicates %d", r.Name, r.Lost, r.Duplicates)
		}
		if r.Delivered != p.Messages || r.Acked != p.Messages {
			t.Errorf("%s: acked %d, delivered %d of %d", r.Name, r.Acked, r.Delivered, p.Messages)
		}
		if r.E2E == nil || r.E2E.Count != p.Messages {
			t.Errorf("%s: end-to-end latency of %v messages", r.Name, r.E2E)
		}
		if r.Scenario != ScenarioKafkaRaw && r.Params.QoS == 1 && r.Puback == nil {
			t.Errorf("%s: no PUBACK latency", r.Name)
		}
		if r.Scenario == ScenarioPipeline && (r.CPUSeconds == nil || r.PeakRSSBytes == nil || r.Ratios["kafka_raw"] <= 0) {
			t.Errorf("%s: missing cpu, rss or ratio: %+v", r.Name, r)
		}
	}
	html, err := os.ReadFile(filepath.Join(out, "results.html"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(html), "<svg") || strings.Contains(string(html), "<script") {
		t.Errorf("results.html is not a self-contained page with charts")
	}
}

func TestPayloadRoundTrip(t *testing.T) {
	b := make([]byte, 100)
	fillPayload(b, 0xdeadbeef, 12345, 1_700_000_000_123_456_789)
	stampPayload(b, 42, 7)
	tag, id, ts, err := parsePayload(b)
	if err != nil || tag != 0xdeadbeef || id != 42 || ts != 7 {
		t.Fatalf("got %x %d %d %v from %q", tag, id, ts, err, b)
	}
	if _, _, _, err := parsePayload([]byte("not ours")); err == nil {
		t.Fatal("parsed a foreign payload")
	}
}

func TestIDSet(t *testing.T) {
	var s, want idSet
	for _, id := range []uint64{0, 1, chunkBits - 1, chunkBits, 5 * chunkBits} {
		want.add(id)
		if s.add(id) {
			t.Fatalf("%d: duplicate on first add", id)
		}
		if !s.add(id) {
			t.Fatalf("%d: no duplicate on second add", id)
		}
	}
	want.add(7)
	if n := s.missing(&want, 5*chunkBits+1); n != 1 {
		t.Fatalf("missing %d, want 1", n)
	}
}

func TestExpand(t *testing.T) {
	combos, err := expand(DefaultParams(), []string{"buffer=memory,disk,hybrid", "qos=0,1", "size=100,1024"})
	if err != nil {
		t.Fatal(err)
	}
	if len(combos) != 12 {
		t.Fatalf("%d combinations, want 12", len(combos))
	}
	if c := combos[len(combos)-1]; c.Buffer != "hybrid" || c.QoS != 1 || c.Size != 1024 {
		t.Fatalf("last combination %+v", c)
	}
	for _, bad := range []string{"buffer=tape", "qos=2", "size=10", "colour=red", "rate=fast"} {
		if _, err := expand(DefaultParams(), []string{bad}); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

func TestMQTTCodec(t *testing.T) {
	for _, n := range []int{0, 127, 128, 16383, 16384, 2097151, 2097152} {
		v, l, ok := readVBI(appendVBI(nil, n))
		if !ok || v != n || l != len(appendVBI(nil, n)) {
			t.Fatalf("VBI %d: got %d (%d bytes, %v)", n, v, l, ok)
		}
	}
	props := []byte{0x24, 1, 0x21, 0x04, 0x00, 0x1f, 0, 2, 'i', 'd'}
	if rm, ok := findUint16Prop(append([]byte{byte(len(props))}, props...), 0x21); !ok || rm != 1024 {
		t.Fatalf("receive maximum %d %v", rm, ok)
	}
}
