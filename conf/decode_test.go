package conf

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pelletier/go-toml/v2"
)

type testByteSize int64

func (b *testByteSize) UnmarshalText(text []byte) error {
	s := strings.TrimSpace(string(text))
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KB", 1 << 10}, {"MB", 1 << 20}, {"GB", 1 << 30}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return fmt.Errorf("not a byte size")
	}
	*b = testByteSize(n * mult)
	return nil
}

type testBuffer struct {
	Mode string       `toml:"mode"`
	Size testByteSize `toml:"size"`
}

func (b *testBuffer) SetDefaults() { b.Mode = "memory" }

type testSink struct {
	Name        string            `toml:"name,required"`
	Topic       string            `toml:"topic"`
	MaxInflight int               `toml:"max_inflight"`
	Retries     uint8             `toml:"retries"`
	Weight      float32           `toml:"weight"`
	Timeout     time.Duration     `toml:"timeout"`
	Limit       testByteSize      `toml:"limit"`
	Props       map[string]string `toml:"props"`
	Buffer      *testBuffer       `toml:"buffer"`
	Untagged    string
	Ignored     string `toml:"-"`
}

func (s *testSink) SetDefaults() {
	s.Topic = "mqtt"
	s.MaxInflight = 8
	s.Timeout = 5 * time.Second
}

type testListener struct {
	Type    string `toml:"type,required"`
	Address string `toml:"address"`
}

type testCfg struct {
	Broker struct {
		DataDir   string         `toml:"data_dir"`
		Listeners []testListener `toml:"listeners"`
	} `toml:"broker"`
	Sinks  []testSink     `toml:"sinks"`
	Level  int8           `toml:"level"`
	Extra  any            `toml:"extra"`
	Limits map[string]int `toml:"limits"`
}

func defaultCfg() *testCfg {
	c := &testCfg{}
	c.Broker.DataDir = "/var/lib/mqkafka"
	c.Level = 1
	return c
}

func TestDecode(t *testing.T) {
	tests := []struct {
		name     string
		doc      string
		problems []Problem
		check    func(t *testing.T, c *testCfg, pos Positions)
	}{
		{
			name: "valid file",
			doc: `level = 3
[broker]
data_dir = "/data"
listeners = [
  { type = "tcp", address = ":1883" },
  { type = "ws", address = ":8080" },
]

[[sinks]]
name = "a"
topic = "t1"
max_inflight = 0x10
retries = 3
weight = 2
timeout = "1m30s"
limit = "10MB"

[[sinks]]
name = "b"
timeout = 250
limit = 1024
props = { "acks" = "all" }
`,
			check: func(t *testing.T, c *testCfg, pos Positions) {
				if c.Level != 3 || c.Broker.DataDir != "/data" {
					t.Errorf("level/data_dir = %d/%q", c.Level, c.Broker.DataDir)
				}
				want := []testListener{{"tcp", ":1883"}, {"ws", ":8080"}}
				if !reflect.DeepEqual(c.Broker.Listeners, want) {
					t.Errorf("listeners = %+v", c.Broker.Listeners)
				}
				if len(c.Sinks) != 2 {
					t.Fatalf("got %d sinks", len(c.Sinks))
				}
				s0, s1 := c.Sinks[0], c.Sinks[1]
				if s0.Name != "a" || s0.Topic != "t1" || s0.MaxInflight != 16 || s0.Retries != 3 ||
					s0.Weight != 2 || s0.Timeout != 90*time.Second || s0.Limit != 10<<20 {
					t.Errorf("sinks[0] = %+v", s0)
				}
				if s1.Timeout != 250*time.Millisecond || s1.Limit != 1024 || s1.Props["acks"] != "all" {
					t.Errorf("sinks[1] = %+v", s1)
				}
				wantPos := Positions{
					"level":                       1,
					"broker":                      2,
					"broker.data_dir":             3,
					"broker.listeners":            4,
					"broker.listeners[0]":         5,
					"broker.listeners[0].type":    5,
					"broker.listeners[1].address": 6,
					"sinks":                       9,
					"sinks[0]":                    9,
					"sinks[0].timeout":            15,
					"sinks[1]":                    18,
					"sinks[1].name":               19,
					"sinks[1].props":              22,
					"sinks[1].props.acks":         22,
				}
				for k, line := range wantPos {
					if pos[k] != line {
						t.Errorf("pos[%q] = %d, want %d", k, pos[k], line)
					}
				}
			},
		},
		{
			name: "typo, wrong type and missing key are all reported",
			doc: `[broker]
data_dir = "/data"

[[sinks]]
name = "a"
topik = "x"

[[sinks]]
max_inflight = "ten"
`,
			problems: []Problem{
				{6, "sinks[0].topik", `unknown key "topik" in [[sinks]] (did you mean "topic"?)`},
				{8, "sinks[1].name", `missing required key "name" in [[sinks]]`},
				{9, "sinks[1].max_inflight", `sinks[1].max_inflight: expected an integer, got a string ("ten")`},
			},
		},
		{
			name: "wrong types",
			doc: `extra = 1
[broker]
data_dir = 5
listeners = { type = "tcp" }
[[sinks]]
name = "a"
retries = 1.5
weight = "heavy"
props = "acks=all"
buffer = [1]
`,
			problems: []Problem{
				{3, "broker.data_dir", "broker.data_dir: expected a string, got an integer"},
				{4, "broker.listeners", "broker.listeners: expected an array, got a table"},
				{7, "sinks[0].retries", "sinks[0].retries: expected an integer, got a float"},
				{8, "sinks[0].weight", `sinks[0].weight: expected a number, got a string ("heavy")`},
				{9, "sinks[0].props", `sinks[0].props: expected a table, got a string ("acks=all")`},
				{10, "sinks[0].buffer", "sinks[0].buffer: expected a table, got an array"},
			},
		},
		{
			name: "inline tables",
			doc: `[broker]
listeners = [{ type = "tcp", adress = ":1883" }]
[[sinks]]
name = "a"
buffer = { mode = "disk", sise = "1KB" }
`,
			problems: []Problem{
				{2, "broker.listeners[0].adress", `unknown key "adress" in broker.listeners[0] (did you mean "address"?)`},
				{5, "sinks[0].buffer.sise", `unknown key "sise" in sinks[0].buffer (did you mean "size"?)`},
			},
		},
		{
			name: "multi-line inline array",
			doc: `[broker]
listeners = [
  { type = "tcp" },
  # a comment
  { address = ":8883",
    tipe = "tls" },
]
`,
			problems: []Problem{
				{5, "broker.listeners[1].type", `missing required key "type" in broker.listeners[1]`},
				{6, "broker.listeners[1].tipe", `unknown key "tipe" in broker.listeners[1] (did you mean "type"?)`},
			},
			check: func(t *testing.T, c *testCfg, pos Positions) {
				if pos["broker.listeners[1]"] != 5 || pos["broker.listeners[1].tipe"] != 6 {
					t.Errorf("positions = %v", pos)
				}
			},
		},
		{
			name: "nested table under array of tables",
			doc: `[[sinks]]
name = "a"
[sinks.buffer]
size = "2KB"

[[sinks]]
name = "b"

[[sinks]]
name = "c"
[sinks.buffer]
mode = "disk"
moed = "x"
`,
			problems: []Problem{
				{13, "sinks[2].buffer.moed", `unknown key "moed" in [sinks.buffer] (did you mean "mode"?)`},
			},
			check: func(t *testing.T, c *testCfg, pos Positions) {
				if len(c.Sinks) != 3 {
					t.Fatalf("got %d sinks", len(c.Sinks))
				}
				if b := c.Sinks[0].Buffer; b == nil || *b != (testBuffer{Mode: "memory", Size: 2048}) {
					t.Errorf("sinks[0].buffer = %+v", b)
				}
				if c.Sinks[1].Buffer != nil {
					t.Errorf("sinks[1].buffer = %+v, want nil", c.Sinks[1].Buffer)
				}
				if b := c.Sinks[2].Buffer; b == nil || b.Mode != "disk" {
					t.Errorf("sinks[2].buffer = %+v", b)
				}
				if pos["sinks[0].buffer"] != 3 || pos["sinks[0].buffer.size"] != 4 || pos["sinks[2].buffer.mode"] != 12 {
					t.Errorf("positions = %v", pos)
				}
			},
		},
		{
			name: "defaults kept for keys not set",
			doc: `[[sinks]]
name = "a"
[[sinks]]
name = "b"
topic = "other"
`,
			check: func(t *testing.T, c *testCfg, pos Positions) {
				if c.Broker.DataDir != "/var/lib/mqkafka" || c.Level != 1 {
					t.Errorf("top-level defaults lost: %+v", c)
				}
				want := testSink{Name: "a", Topic: "mqtt", MaxInflight: 8, Timeout: 5 * time.Second}
				if !reflect.DeepEqual(c.Sinks[0], want) {
					t.Errorf("sinks[0] = %+v, want %+v", c.Sinks[0], want)
				}
				if c.Sinks[1].Topic != "other" || c.Sinks[1].MaxInflight != 8 {
					t.Errorf("sinks[1] = %+v", c.Sinks[1])
				}
			},
		},
		{
			name: "string map accepts unquoted values",
			doc: `[[sinks]]
name = "a"
[sinks.props]
"acks" = "all"
linger.ms = 5
enable.idempotence = true
batch.num.messages = 1_000
retry.backoff.multiplier = 1.5
compression = [1]
`,
			problems: []Problem{
				{9, "sinks[0].props.compression", "sinks[0].props.compression: expected a string, got an array"},
			},
			check: func(t *testing.T, c *testCfg, pos Positions) {
				want := map[string]string{
					"acks":                     "all",
					"linger.ms":                "5",
					"enable.idempotence":       "true",
					"batch.num.messages":       "1000",
					"retry.backoff.multiplier": "1.5",
				}
				if !reflect.DeepEqual(c.Sinks[0].Props, want) {
					t.Errorf("props = %v", c.Sinks[0].Props)
				}
				if pos["sinks[0].props.linger.ms"] != 5 {
					t.Errorf("pos[linger.ms] = %d", pos["sinks[0].props.linger.ms"])
				}
			},
		},
		{
			name: "typed map",
			doc: `limits = { a = 1, b = "two" }
`,
			problems: []Problem{
				{1, "limits.b", `limits.b: expected an integer, got a string ("two")`},
			},
			check: func(t *testing.T, c *testCfg, pos Positions) {
				if !reflect.DeepEqual(c.Limits, map[string]int{"a": 1}) {
					t.Errorf("limits = %v", c.Limits)
				}
			},
		},
		{
			name: "syntax error",
			doc: `[broker]
data_dir = "/data"
listeners = [
`,
			problems: []Problem{{3, "", "array is incomplete"}},
		},
		{
			name: "unquoted string",
			doc: `[[sinks]]
name = "a"
timeout = 20s
`,
			problems: []Problem{{3, "", "strings must be quoted"}},
		},
		{
			name: "duplicate key",
			doc: `[broker]
data_dir = "a"

data_dir = "b"
`,
			problems: []Problem{{4, "", "key data_dir is already defined"}},
		},
		{
			name: "integer overflow",
			doc: `level = 300
[[sinks]]
name = "a"
retries = -1
timeout = 9223372036854775807
`,
			problems: []Problem{
				{1, "level", "level: value 300 out of range (must be between -128 and 127)"},
				{4, "sinks[0].retries", "sinks[0].retries: value -1 out of range (must be between 0 and 255)"},
				{5, "sinks[0].timeout", "sinks[0].timeout: duration of 9223372036854775807 milliseconds is out of range"},
			},
		},
		{
			name: "integer beyond int64",
			doc: `[[sinks]]
name = "a"
max_inflight = 99999999999999999999
`,
			problems: []Problem{{3, "", "decimal number is too large to fit in a 64-bit signed integer"}},
		},
		{
			name: "bad durations and text values",
			doc: `[[sinks]]
name = "a"
timeout = "5 sec"
limit = "lots"
[[sinks]]
name = "b"
timeout = true
limit = 1.5
`,
			problems: []Problem{
				{3, "sinks[0].timeout", `sinks[0].timeout: invalid duration "5 sec": unknown unit " sec"; use a number with a unit, e.g. "500ms", "10s", "1m"`},
				{4, "sinks[0].limit", `sinks[0].limit: invalid value "lots": not a byte size`},
				{7, "sinks[1].timeout", `sinks[1].timeout: expected a duration (a string like "10s" or an integer of milliseconds), got a boolean`},
				{8, "sinks[1].limit", "sinks[1].limit: expected a string, got a float"},
			},
		},
		{
			name: "unknown tables and keys",
			doc: `lvl = 2
[brokr]
data_dir = "x"
[broker]
listeners = []
data.dir = "y"
l = 1
[[sink]]
name = "a"
`,
			problems: []Problem{
				{1, "lvl", `unknown key "lvl" (did you mean "level"?)`},
				{2, "brokr", `unknown key "brokr" (did you mean "broker"?)`},
				{6, "broker.data", `unknown key "data" in [broker]`},
				{7, "broker.l", `unknown key "l" in [broker]`},
				{8, "sink", `unknown key "sink" (did you mean "sinks"?)`},
			},
		},
		{
			name: "untagged and dash fields are not keys",
			doc: `[[sinks]]
name = "a"
Untagged = "x"
"-" = "y"
`,
			problems: []Problem{
				{3, "sinks[0].Untagged", `unknown key "Untagged" in [[sinks]]`},
				{4, "sinks[0].-", `unknown key "-" in [[sinks]]`},
			},
		},
		{
			name: "any keeps go-toml values",
			doc: `extra = { n = 1, f = 0.5, s = "x", l = [1, "a"], d = 1979-05-27, t = 1979-05-27T07:32:00Z, sub = { b = true } }
`,
			check: func(t *testing.T, c *testCfg, pos Positions) {
				want := map[string]any{
					"n": int64(1), "f": 0.5, "s": "x", "l": []any{int64(1), "a"},
					"d":   toml.LocalDate{Year: 1979, Month: 5, Day: 27},
					"t":   time.Date(1979, 5, 27, 7, 32, 0, 0, time.UTC),
					"sub": map[string]any{"b": true},
				}
				if !reflect.DeepEqual(c.Extra, want) {
					t.Errorf("extra = %#v", c.Extra)
				}
			},
		},
		{
			name: "dotted keys and implicit tables",
			doc: `broker.data_dir = "/x"
broker.listeners = [{ type = "tcp" }]
`,
			check: func(t *testing.T, c *testCfg, pos Positions) {
				if c.Broker.DataDir != "/x" || len(c.Broker.Listeners) != 1 {
					t.Errorf("broker = %+v", c.Broker)
				}
				if pos["broker"] != 1 || pos["broker.listeners[0].type"] != 2 {
					t.Errorf("positions = %v", pos)
				}
			},
		},
		{
			name: "byte order mark and CRLF",
			doc:  "\ufeff# config\r\n[broker]\r\ndata_dir = 1\r\n",
			problems: []Problem{
				{3, "broker.data_dir", "broker.data_dir: expected a string, got an integer"},
			},
		},
		{
			name: "table header after its subtable",
			doc: `[broker.listeners]
type = "tcp"
[broker]
data_dir = "/x"
dir = 1
`,
			problems: []Problem{
				{1, "broker.listeners", "broker.listeners: expected an array, got a table"},
				{5, "broker.dir", `unknown key "dir" in [broker]`},
			},
			check: func(t *testing.T, c *testCfg, pos Positions) {
				if pos["broker"] != 3 || pos["broker.listeners.type"] != 2 {
					t.Errorf("positions = %v", pos)
				}
			},
		},
		{
			name: "empty file",
			doc:  "",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := defaultCfg()
			pos, problems := decode([]byte(tt.doc), c)
			if !reflect.DeepEqual(problems, tt.problems) {
				t.Errorf("problems:\n%s\nwant:\n%s", fmtProblems(problems), fmtProblems(tt.problems))
			}
			if tt.check != nil {
				tt.check(t, c, pos)
			}
		})
	}
}

func fmtProblems(ps []Problem) string {
	var b strings.Builder
	for _, p := range ps {
		fmt.Fprintf(&b, "\t%s\n", p)
	}
	return b.String()
}

func TestDecodeRequiredTable(t *testing.T) {
	var c struct {
		Name string `toml:"name,required"`
		Sub  struct {
			ID int `toml:"id,required"`
		} `toml:"sub,required"`
		Opt *struct {
			ID int `toml:"id,required"`
		} `toml:"opt"`
	}
	_, problems := decode([]byte("# nothing\n"), &c)
	want := []Problem{
		{0, "name", `missing required key "name"`},
		{0, "sub", `missing required key "sub"`},
	}
	if !reflect.DeepEqual(problems, want) {
		t.Errorf("problems:\n%s", fmtProblems(problems))
	}
	if c.Opt != nil {
		t.Errorf("opt allocated without a table in the file")
	}
}

func TestDecodeBadTarget(t *testing.T) {
	var c testCfg
	if _, problems := decode([]byte("level = 1\n"), c); len(problems) != 1 || problems[0].Line != 0 {
		t.Errorf("problems = %v", problems)
	}
}

func TestProblemString(t *testing.T) {
	for _, tt := range []struct {
		p    Problem
		want string
	}{
		{Problem{3, "a.b", "a.b: bad"}, "3: a.b: bad"},
		{Problem{3, "", "bad"}, "3: bad"},
		{Problem{0, "a", "a: bad"}, "a: bad"},
	} {
		if got := tt.p.String(); got != tt.want {
			t.Errorf("%#v.String() = %q, want %q", tt.p, got, tt.want)
		}
	}
}

func TestEditDistance(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		want int
	}{
		{"topik", "topic", 1}, {"", "abc", 3}, {"adress", "address", 1}, {"moed", "mode", 2}, {"same", "same", 0},
	} {
		if got := editDistance(tt.a, tt.b); got != tt.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestDecodeNestedArrayTables(t *testing.T) {
	type item struct {
		X int `toml:"x"`
	}
	var c struct {
		A []struct {
			Items []item `toml:"items"`
		} `toml:"a"`
	}
	doc := `[[a]]
[[a.items]]
x = 1
[[a.items]]
x = "two"
[[a]]
[[a.items]]
x = 3
`
	pos, problems := decode([]byte(doc), &c)
	want := []Problem{{5, "a[0].items[1].x", `a[0].items[1].x: expected an integer, got a string ("two")`}}
	if !reflect.DeepEqual(problems, want) {
		t.Errorf("problems:\n%s", fmtProblems(problems))
	}
	if len(c.A) != 2 || len(c.A[0].Items) != 2 || c.A[0].Items[0].X != 1 || c.A[1].Items[0].X != 3 {
		t.Errorf("decoded %+v", c)
	}
	if pos["a[1]"] != 6 || pos["a[1].items[0]"] != 7 || pos["a[0].items[1].x"] != 5 {
		t.Errorf("positions = %v", pos)
	}
}
