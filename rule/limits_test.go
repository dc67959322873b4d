package rule

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/mqkafka/mqkafka/ack"
)

// nestings builds, for each way expressions nest, an expression n levels deep.
var nestings = []struct {
	name string
	expr func(n int) string
}{
	{"parentheses", func(n int) string { return strings.Repeat("(", n) + "1" + strings.Repeat(")", n) }},
	{"calls", func(n int) string { return strings.Repeat("abs(", n) + "1" + strings.Repeat(")", n) }},
	{"NOT", func(n int) string { return strings.Repeat("NOT ", n) + "true" }},
	{"minus", func(n int) string { return strings.Repeat("- ", n) + "payload.x" }},
	{"folded minus", func(n int) string { return strings.Repeat("- ", n) + "1" }},
	{"plus", func(n int) string { return strings.Repeat("+ ", n) + "1" }},
	{"operator chain", func(n int) string { return "1" + strings.Repeat(" + 1", n) }},
	{"OR chain", func(n int) string { return "false" + strings.Repeat(" OR false", n) }},
	{"CASE", func(n int) string { return strings.Repeat("CASE WHEN true THEN ", n) + "1" + strings.Repeat(" END", n) }},
	{"arrays", func(n int) string { return strings.Repeat("[", n) + "1" + strings.Repeat("]", n) }},
	{"IN lists", func(n int) string { return strings.Repeat("1 IN (", n) + "1" + strings.Repeat(")", n) }},
	{"path", func(n int) string { return "payload" + strings.Repeat(".a", n) }},
}

// TestParseDepthLimit: every kind of nesting is accepted MaxDepth levels
// deep and evaluates; one more level is a syntax error at its line and
// column, in a WHERE on line 2 and in a SELECT field.
func TestParseDepthLimit(t *testing.T) {
	for _, tc := range nestings {
		sql := "SELECT " + tc.expr(MaxDepth) + " AS v FROM \"t\"\nWHERE " + tc.expr(MaxDepth)
		r, err := Compile("r", sql, nil)
		if err != nil {
			t.Errorf("%s, %d levels: %v", tc.name, MaxDepth, err)
			continue
		}
		if _, _, err := r.Eval(eventWith(`{"x":1}`)); err != nil && !strings.Contains(tc.name, "NOT") {
			t.Errorf("%s, %d levels: eval: %v", tc.name, MaxDepth, err)
		}
		for _, sql := range []string{
			"SELECT * FROM \"t\"\nWHERE " + tc.expr(MaxDepth+1),
			"SELECT 1 AS a,\n " + tc.expr(MaxDepth+1) + " AS v FROM \"t\"",
		} {
			_, err := Parse(sql)
			var se *SyntaxError
			if !errors.As(err, &se) || se.Line != 2 || se.Col < 2 || !strings.Contains(se.Msg, "256") {
				t.Errorf("%s, %d levels: got %v, want a syntax error on line 2 naming the limit", tc.name, MaxDepth+1, err)
			}
		}
	}
}

// TestParseDepthErrorPosition: the error points at what opens the level too many.
func TestParseDepthErrorPosition(t *testing.T) {
	for _, tc := range []struct {
		sql string
		col int
		msg string
	}{
		// WHERE is 6 columns wide; the 257th "(" follows 256 others.
		{"WHERE " + strings.Repeat("(", MaxDepth+1) + "1" + strings.Repeat(")", MaxDepth+1), 6 + MaxDepth + 1, "expressions nest deeper than 256 levels"},
		// "1" then " + 1" repeated: the 257th "+" is at 7 + 4*256 + 2.
		{"WHERE 1" + strings.Repeat(" + 1", MaxDepth+1), 7 + 4*MaxDepth + 2, "expressions nest deeper than 256 levels"},
		{"WHERE payload" + strings.Repeat(".a", MaxDepth+1), 6 + 7 + 2*MaxDepth + 2, "a path has more than 256 keys"},
	} {
		_, err := Parse("SELECT * FROM \"t\"\n" + tc.sql)
		var se *SyntaxError
		if !errors.As(err, &se) || se.Line != 2 || se.Col != tc.col || se.Msg != tc.msg {
			t.Errorf("%.40s…: got %v, want line 2, column %d: %s", tc.sql, err, tc.col, tc.msg)
		}
	}
}

// TestParseHugeNesting: what crashed the process (a stack overflow at
// 300,000 parentheses) is a syntax error.
func TestParseHugeNesting(t *testing.T) {
	const n = 300_000
	for _, e := range []string{
		strings.Repeat("(", n) + "1" + strings.Repeat(")", n),
		strings.Repeat("- ", n) + "1",
	} {
		if _, err := Parse(`SELECT * FROM "t" WHERE ` + e); err == nil {
			t.Fatalf("%.20s… parsed", e)
		}
	}
	if _, err := Parse(`SELECT * FROM "t" WHERE ` + strings.Repeat("(", 10_000) + "1" + strings.Repeat(")", 10_000)); err == nil ||
		!strings.Contains(err.Error(), "line 1, column 281: expressions nest deeper than 256 levels") {
		t.Fatalf("10,000 parentheses: %v", err)
	}
}

func TestAliasDepthLimit(t *testing.T) {
	alias := func(n int) string { return "a" + strings.Repeat(".a", n-1) }
	r, err := Compile("r", "SELECT 1 AS "+alias(MaxDepth)+" FROM \"t\"", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.Eval(eventWith(`{}`)); err != nil {
		t.Fatal(err)
	}
	_, err = Parse("SELECT 1 AS " + alias(MaxDepth+1) + " FROM \"t\"")
	if err == nil || !strings.Contains(err.Error(), "line 1, column 525: an alias nests deeper than 256 keys") {
		t.Fatalf("alias of %d keys: %v", MaxDepth+1, err)
	}
}

func TestSQLLengthLimit(t *testing.T) {
	head := `SELECT * FROM "t" -- `
	if _, err := Parse(head + strings.Repeat("x", MaxSQLLength-len(head))); err != nil {
		t.Fatalf("%d bytes: %v", MaxSQLLength, err)
	}
	_, err := Parse(head + strings.Repeat("x", MaxSQLLength+1-len(head)))
	if err == nil || err.Error() != "line 1, column 1: the SQL is 65537 bytes, more than the limit of 65536" {
		t.Fatalf("%d bytes: %v", MaxSQLLength+1, err)
	}
}

// deepJSON is an array nested n levels deep around value.
func deepJSON(n int, value string) string {
	return strings.Repeat("[", n) + value + strings.Repeat("]", n)
}

// TestPayloadDepthLimit: JSON nested MaxJSONDepth levels is read; deeper is
// a rule failure, wherever the rule decodes JSON, and never a crash.
func TestPayloadDepthLimit(t *testing.T) {
	ok := `{"x":` + deepJSON(MaxJSONDepth-1, "7") + `}`
	if got, err := run(t, `SELECT payload.x[1] AS y FROM "t"`, eventWith(ok)); err != nil || !strings.HasPrefix(got, `{"y":[[`) {
		t.Fatalf("%d levels: %s %v", MaxJSONDepth, got, err)
	}
	tooDeep := `{"x":` + deepJSON(MaxJSONDepth, "7") + `}`
	for _, tc := range []struct{ sql, payload, want string }{
		{`SELECT payload.x AS x FROM "t"`, tooDeep, "payload.x: the payload is JSON nested deeper than 256 levels"},
		{`SELECT payload.x AS x FROM "t"`, deepJSON(400_000, ""), "payload.x: the payload is JSON nested deeper than 256 levels"},
		{`SELECT * FROM "t" WHERE payload.x = 1`, strings.Repeat(`{"x":`, 400_000), "the payload is JSON nested deeper than 256 levels"},
		{`SELECT json_decode(payload.s) AS y FROM "t"`, `{"s":"` + deepJSON(MaxJSONDepth+1, "") + `"}`, "json_decode(): JSON nested deeper than 256 levels"},
	} {
		_, err := run(t, tc.sql, eventWith(tc.payload))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s on %.20s…: error %v, want %q", tc.sql, tc.payload, err, tc.want)
		}
	}
	// A string read as JSON on a path: too deep is not JSON, so undefined.
	s := `{"s":"{\"a\":` + deepJSON(MaxJSONDepth, "1") + `}"}`
	if got, err := run(t, `SELECT payload.s.a AS a FROM "t"`, eventWith(s)); err != nil || got != `{}` {
		t.Fatalf("deep string on a path: %s %v", got, err)
	}
	// Brackets in strings do not count.
	inString := `{"x":"` + strings.Repeat("[{", 1000) + `"}`
	if got, err := run(t, `SELECT payload.x AS x FROM "t"`, eventWith(inString)); err != nil || !strings.Contains(got, "[{[{") {
		t.Fatalf("brackets in a string: %.40s %v", got, err)
	}
}

// TestEngineCountsDeepPayload: the engine counts a payload too deep for the
// rule as a failure and goes on with the next message.
func TestEngineCountsDeepPayload(t *testing.T) {
	r, err := Compile("r", `SELECT payload.x AS x FROM "t/#"`, nil)
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewEngine([]*Rule{r}, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.Logger = slog.New(slog.DiscardHandler)
	for _, p := range []string{deepJSON(400_000, ""), `{"x":1}`} {
		if err := e.Publish(context.Background(), ack.InCall(), eventWith(p)); err != nil {
			t.Fatal(err)
		}
	}
	if s := r.Stats(); s.Matched != 2 || s.Failed != 1 || s.Passed != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestValidJSON(t *testing.T) {
	for in, want := range map[string]bool{
		`{"a":[1]}`:                         true,
		`{"a":`:                             false,
		deepJSON(MaxJSONDepth, ""):          true,
		deepJSON(MaxJSONDepth+1, ""):        false,
		`["\"` + deepJSON(1000, "") + `"]`:  true,
		`["\\"` + deepJSON(1000, "") + `"]`: false,
	} {
		if got := ValidJSON([]byte(in)); got != want {
			t.Errorf("ValidJSON(%.30s…) = %v", in, got)
		}
	}
}
