package rule

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/mqkafka/mqkafka/ack"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		sql     string
		from    []string
		errLine int
		errCol  int
		errMsg  string
	}{
		{sql: `SELECT * FROM "t/#"`, from: []string{"t/#"}},
		{sql: `select * from 't/+/x', "a/b"`, from: []string{"t/+/x", "a/b"}},
		{sql: "SELECT *\n  FROM\n  \"t/1\"", from: []string{"t/1"}},
		{sql: `SELECT * FORM "t/#"`, errLine: 1, errCol: 10, errMsg: "expected FROM"},
		{sql: "SELECT *\nFROM t", errLine: 2, errCol: 6, errMsg: "expected a quoted topic filter"},
		{sql: `SELECT * FROM "t/#/x"`, errLine: 1, errCol: 15, errMsg: "'#' must be the whole last level"},
		{sql: `SELECT * FROM "t/a+"`, errLine: 1, errCol: 15, errMsg: "'+' must be a whole level"},
		{sql: `SELECT * FROM "t/#" x`, errLine: 1, errCol: 21, errMsg: `unexpected "x"`},
		{sql: `SELECT * FROM "t/#`, errLine: 1, errCol: 15, errMsg: "unterminated string"},
		{sql: ``, errLine: 1, errCol: 1, errMsg: "expected SELECT"},
	} {
		st, err := Parse(tc.sql)
		if tc.errMsg == "" {
			if err != nil {
				t.Errorf("%q: %v", tc.sql, err)
				continue
			}
			if strings.Join(st.From, ",") != strings.Join(tc.from, ",") {
				t.Errorf("%q: from = %q, want %q", tc.sql, st.From, tc.from)
			}
			continue
		}
		var se *SyntaxError
		if !errors.As(err, &se) {
			t.Errorf("%q: error %v, want a SyntaxError", tc.sql, err)
			continue
		}
		if se.Line != tc.errLine || se.Col != tc.errCol || !strings.Contains(se.Msg, tc.errMsg) {
			t.Errorf("%q: got %d:%d %q, want %d:%d containing %q", tc.sql, se.Line, se.Col, se.Msg, tc.errLine, tc.errCol, tc.errMsg)
		}
	}
}

func TestMatchTopic(t *testing.T) {
	for _, tc := range []struct {
		filter, topic string
		want          bool
	}{
		{"t/#", "t/1", true},
		{"t/#", "t", true},
		{"t/#", "t/1/2", true},
		{"t/#", "tt/1", false},
		{"#", "a/b", true},
		{"#", "$SYS/x", false},
		{"+/x", "$SYS/x", false},
		{"$SYS/#", "$SYS/x", true},
		{"t/+", "t/1", true},
		{"t/+", "t/1/2", false},
		{"t/+", "t", false},
		{"t/+/z", "t//z", true},
		{"a/b", "a/b", true},
		{"a/b", "a/b/c", false},
		{"a/b/c", "a/b", false},
		{"+", "a", true},
		{"+", "a/b", false},
	} {
		if got := MatchTopic(tc.filter, tc.topic); got != tc.want {
			t.Errorf("MatchTopic(%q, %q) = %v, want %v", tc.filter, tc.topic, got, tc.want)
		}
	}
}

func testEvent() *Event {
	return &Event{
		ID:       [16]byte{0xAB, 1},
		ClientID: "c\"1",
		Username: "u",
		Topic:    "t/1",
		Payload:  []byte(`{"device":"d7","a":{"b":[1,2]},"n":3.5}`),
		QoS:      1,
		Retain:   true,
		UserProps: [][2]string{
			{"k", "v"},
		},
		Props:             []Prop{{Name: "Content-Type", Str: "json"}, {Name: "Message-Expiry-Interval", Num: 30, IsNum: true}},
		PeerHost:          "127.0.0.1",
		Timestamp:         1700000000123,
		PublishReceivedAt: 1700000000123,
		Node:              "mqkafka@h",
	}
}

func TestEventJSON(t *testing.T) {
	ev := testEvent()
	var got map[string]any
	if err := json.Unmarshal(ev.AppendJSON(nil), &got); err != nil {
		t.Fatalf("invalid JSON %s: %v", ev.AppendJSON(nil), err)
	}
	want := map[string]any{
		"id": "AB010000000000000000000000000000", "clientid": "c\"1", "username": "u", "topic": "t/1",
		"payload": `{"device":"d7","a":{"b":[1,2]},"n":3.5}`, "qos": 1.0,
		"flags":     map[string]any{"dup": false, "retain": true},
		"pub_props": map[string]any{"User-Property": map[string]any{"k": "v"}, "Content-Type": "json", "Message-Expiry-Interval": 30.0},
		"peerhost":  "127.0.0.1", "timestamp": 1700000000123.0, "publish_received_at": 1700000000123.0, "node": "mqkafka@h",
	}
	gb, _ := json.Marshal(got)
	wb, _ := json.Marshal(want)
	if string(gb) != string(wb) {
		t.Fatalf("event JSON\n got %s\nwant %s", gb, wb)
	}
}

func TestAppendJSONString(t *testing.T) {
	for _, s := range []string{"", "plain", "q\"b\\", "ctl\x00\x1f\n\t\r", "ünï☃", "bad\xff\xfeutf8", "\u2028"} {
		var back string
		if err := json.Unmarshal(AppendJSONString(nil, s), &back); err != nil {
			t.Errorf("%q: %v", s, err)
			continue
		}
		if want := strings.ToValidUTF8(s, "\ufffd"); back != want && !strings.Contains(s, "\xff") {
			t.Errorf("%q round-trips to %q", s, back)
		}
	}
}

func TestTemplates(t *testing.T) {
	ev := testEvent()
	for _, tc := range []struct{ src, want string }{
		{"${clientid}", "c\"1"},
		{"device-${payload.device}", "device-d7"},
		{"${payload.a.b}", "[1,2]"},
		{"${payload.n}", "3.5"},
		{"${payload.missing}-x", "-x"},
		{"${topic}|${qos}|${flags.retain}", "t/1|1|true"},
		{"${pub_props.User-Property.k}", "v"},
		{"${pub_props.Content-Type}", "json"},
		{"${pub_props.User-Property}", `{"k":"v"}`},
		{"static", "static"},
		{"${nope.deeper}", ""},
		{"${.timestamp}", "1700000000123"},
		{"k.${local.topic}", "k.t.1"},
	} {
		tpl, err := CompileTemplate(tc.src)
		if err != nil {
			t.Errorf("%q: %v", tc.src, err)
			continue
		}
		if got := string(tpl.Render(nil, ev)); got != tc.want {
			t.Errorf("%q rendered %q, want %q", tc.src, got, tc.want)
		}
	}
	whole := MustTemplate("${.}")
	if got := string(whole.Render(nil, ev)); got != string(ev.AppendJSON(nil)) {
		t.Errorf("${.} = %s", got)
	}
	for _, bad := range []string{"${", "x${}", "${a..b}"} {
		if _, err := CompileTemplate(bad); err == nil {
			t.Errorf("%q compiled", bad)
		}
	}
}

type recorder struct{ got []string }

func (r *recorder) Enqueue(_ context.Context, _ ack.Wait, rec Record) error {
	b, _ := rec.AppendPath(nil, []string{"topic"})
	r.got = append(r.got, string(b))
	return nil
}

func TestEngine(t *testing.T) {
	r1, _ := Compile("r1", `SELECT * FROM "a/#"`, []string{"x"})
	r2, _ := Compile("r2", `SELECT * FROM "a/1", "b/+"`, []string{"x", "y"})
	x, y := &recorder{}, &recorder{}
	e, err := NewEngine([]*Rule{r1, r2}, map[string]Action{"x": x, "y": y})
	if err != nil {
		t.Fatal(err)
	}
	for _, topic := range []string{"a/1", "b/2", "c/3"} {
		if e.Matches(topic) {
			if err := e.Publish(context.Background(), ack.InCall(), &Event{Topic: topic}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if strings.Join(x.got, ",") != "a/1,a/1,b/2" || strings.Join(y.got, ",") != "a/1,b/2" {
		t.Fatalf("x=%v y=%v", x.got, y.got)
	}
	if _, err := NewEngine([]*Rule{r1}, map[string]Action{}); err == nil {
		t.Fatal("unknown action accepted")
	}
}

func BenchmarkEventJSON(b *testing.B) {
	ev := testEvent()
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		buf = ev.AppendJSON(buf[:0])
	}
}

func BenchmarkMatchNoRule(b *testing.B) {
	r, _ := Compile("r", `SELECT * FROM "t/#", "devices/+/up"`, []string{"x"})
	e, _ := NewEngine([]*Rule{r}, map[string]Action{"x": &recorder{}})
	b.ReportAllocs()
	for b.Loop() {
		if e.Matches("other/device/42/status") {
			b.Fatal("matched")
		}
	}
}

var errRefused = errors.New("refused")

// stager is a Stager that refuses records whose topic is refuse.
type stager struct {
	refuse              string
	appended, discarded int
}

func (s *stager) Enqueue(context.Context, ack.Wait, Record) error { s.appended++; return nil }

func (s *stager) Stage(rec Record) (Staged, error) {
	if b, _ := rec.AppendPath(nil, []string{"topic"}); string(b) == s.refuse {
		return nil, errRefused
	}
	return stagedRec{s}, nil
}

type stagedRec struct{ s *stager }

func (r stagedRec) Append(context.Context, ack.Wait) error { r.s.appended++; return nil }
func (r stagedRec) Discard()                               { r.s.discarded++ }

// TestEngineRefusalAppendsNothing: when one action of one rule refuses a
// publish at staging, no action of any rule gets it, those staged before
// are discarded, and the refusal is returned.
func TestEngineRefusalAppendsNothing(t *testing.T) {
	r1, _ := Compile("r1", `SELECT * FROM "t/#"`, []string{"x", "y"})
	r2, _ := Compile("r2", `SELECT * FROM "t/#"`, []string{"z"})
	x, y, z := &stager{}, &recorder{}, &stager{refuse: "t/big"}
	e, err := NewEngine([]*Rule{r1, r2}, map[string]Action{"x": x, "y": y, "z": z})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Publish(context.Background(), ack.InCall(), &Event{Topic: "t/big"}); !errors.Is(err, errRefused) {
		t.Fatalf("publish: %v, want the refusal", err)
	}
	if x.appended != 0 || x.discarded != 1 || len(y.got) != 0 || z.appended != 0 {
		t.Fatalf("after a refusal: x appended %d discarded %d, y got %v, z appended %d",
			x.appended, x.discarded, y.got, z.appended)
	}
	if err := e.Publish(context.Background(), ack.InCall(), &Event{Topic: "t/ok"}); err != nil {
		t.Fatal(err)
	}
	if x.appended != 1 || x.discarded != 1 || strings.Join(y.got, ",") != "t/ok" || z.appended != 1 {
		t.Fatalf("after a normal publish: x appended %d discarded %d, y got %v, z appended %d",
			x.appended, x.discarded, y.got, z.appended)
	}
}
