package rule

import (
	"errors"
	"strings"
	"testing"
)

func TestParseStatements(t *testing.T) {
	for _, tc := range []struct {
		sql     string
		fields  []string
		from    []string
		sources []string
		where   string
	}{
		{sql: `SELECT * FROM "t/#"`, fields: []string{"*"}, from: []string{"t/#"}},
		{
			sql:    `SELECT payload.device as device, clientid FROM "t/#" WHERE payload.temp > 30`,
			fields: []string{"payload.device as device", "clientid"}, from: []string{"t/#"}, where: "payload.temp > 30",
		},
		{
			sql:    "SELECT\n  *,\n  upper(clientid) AS cid -- a comment\nFROM \"a/+\", 'b/#'\nWHERE qos IN (1, 2) AND NOT flags.retain",
			fields: []string{"*", "upper(clientid) AS cid"}, from: []string{"a/+", "b/#"}, where: "qos IN (1, 2) AND NOT flags.retain",
		},
		{
			sql:    `SELECT * FROM "$bridges/kafka_consumer:src1", "t/1"`,
			fields: []string{"*"}, from: []string{"t/1"}, sources: []string{"src1"},
		},
		{sql: `SELECT * FROM "$bridges/kafka_consumer:only"`, fields: []string{"*"}, sources: []string{"only"}},
		{
			sql:    `select pub_props.'User-Property' as headers, pub_props.User-Property.k k from "t/#"`,
			fields: []string{"pub_props.'User-Property' as headers", "pub_props.User-Property.k k"}, from: []string{"t/#"},
		},
		{
			sql:    `SELECT CASE WHEN payload.x > 1 THEN 'hi' ELSE 'lo' END AS level FROM "t" WHERE topic =~ 't/+/x'`,
			fields: []string{"CASE WHEN payload.x > 1 THEN 'hi' ELSE 'lo' END AS level"}, from: []string{"t"}, where: "topic =~ 't/+/x'",
		},
		{
			sql:    `SELECT payload.arr[1] AS first, payload.arr[-1] AS last, payload.'odd key'.x FROM "t"`,
			fields: []string{"payload.arr[1] AS first", "payload.arr[-1] AS last", "payload.'odd key'.x"}, from: []string{"t"},
		},
		{
			sql:    `SELECT 1 + 2 * 3 div 2 mod 2 - -1 AS n, a.b.c AS x.y.z FROM "t" WHERE NOT (a = 1 OR b <> 2) AND c NOT IN ('x')`,
			fields: []string{"1 + 2 * 3 div 2 mod 2 - -1 AS n", "a.b.c AS x.y.z"}, from: []string{"t"},
			where: "NOT (a = 1 OR b <> 2) AND c NOT IN ('x')",
		},
	} {
		st, err := Parse(tc.sql)
		if err != nil {
			t.Errorf("%q: %v", tc.sql, err)
			continue
		}
		for _, c := range []struct {
			name      string
			got, want []string
		}{{"fields", st.Fields, tc.fields}, {"from", st.From, tc.from}, {"sources", st.Sources, tc.sources}} {
			if strings.Join(c.got, "|") != strings.Join(c.want, "|") {
				t.Errorf("%q: %s = %q, want %q", tc.sql, c.name, c.got, c.want)
			}
		}
		if tc.where != "" && st.Where != tc.where {
			t.Errorf("%q: where = %q, want %q", tc.sql, st.Where, tc.where)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		sql       string
		line, col int
		msg       string
	}{
		{`SELECT nope(1) FROM "t"`, 1, 8, "unknown function nope()"},
		{`SELECT lower() FROM "t"`, 1, 8, "lower() takes 1 argument, got 0"},
		{`SELECT substr('a') FROM "t"`, 1, 8, "substr() takes 2 to 3 arguments, got 1"},
		{`SELECT is_null(a, b) FROM "t"`, 1, 8, "is_null() takes 1 argument, got 2"},
		{"SELECT\n  upper(clientid),\n  bogus(x)\nFROM \"t\"", 3, 3, "unknown function bogus()"},
		{`SELECT regex_match(clientid, '(') FROM "t"`, 1, 30, "regex_match(): error parsing regexp"},
		{"SELECT x FROM \"t\"\nWHERE regex_replace(clientid, 'a', 'b', 'c')", 2, 7, "regex_replace() takes 3 arguments, got 4"},
		{`SELECT now_timestamp('hour') FROM "t"`, 1, 22, "invalid time unit"},
		{`SELECT format_date('second', '+25:00', '%Y') FROM "t"`, 1, 30, "bad time offset"},
		{`SELECT topic(0) FROM "t"`, 1, 14, "level must be an integer from 1"},
		{`SELECT sprintf('~s ~s', clientid) FROM "t"`, 1, 16, "the format needs 2 arguments, got 1"},
		{`SELECT sprintf('~q', clientid) FROM "t"`, 1, 16, "unsupported format directive ~q"},
		{`SELECT split(a, '/', 'sideways') FROM "t"`, 1, 22, "the mode must be"},
		{`SELECT getenv(1) FROM "t"`, 1, 15, "the variable name must be a string"},
		{`SELECT * FROM "t" WHERE`, 1, 24, "expected an expression, found end of statement"},
		{`SELECT * FROM "t" WHERE a = = 1`, 1, 29, `expected an expression, found "="`},
		{`SELECT * FROM "t" WHERE a > 1 > 2`, 1, 31, "comparisons cannot be chained"},
		{`SELECT * FROM "t" WHERE topic =~ 't/#/x'`, 1, 34, "'#' must be the whole last level"},
		{`SELECT * FROM "t" WHERE topic =~ 1`, 1, 31, "=~ needs a topic filter"},
		{`SELECT * FROM "t" WHERE a IN 1`, 1, 30, `expected "(", found "1"`},
		{`SELECT * FROM "t" WHERE (a = 1`, 1, 31, `expected ")", found end of statement`},
		{`SELECT CASE WHEN a THEN 1 FROM "t"`, 1, 27, "expected END, found \"FROM\""},
		{`SELECT CASE a END FROM "t"`, 1, 15, "expected WHEN, found \"END\""},
		{`SELECT CASE WHEN a 1 END FROM "t"`, 1, 20, "expected THEN"},
		{`SELECT 99999999999999999999 FROM "t"`, 1, 8, "integer 99999999999999999999 out of range"},
		{`SELECT payload.arr[x] FROM "t"`, 1, 20, "expected an array index"},
		{`SELECT payload.arr[1.5] FROM "t"`, 1, 20, "expected an array index"},
		{`SELECT payload. FROM "t"`, 1, 17, "expected a field name after '.'"},
		{`SELECT payload.x as FROM "t"`, 1, 21, `expected an alias, found "FROM"`},
		{`SELECT payload.x as y[1] FROM "t"`, 1, 22, "an alias cannot contain an index"},
		{`SELECT FROM "t"`, 1, 8, "expected a field to select"},
		{`SELECT a, FROM "t"`, 1, 11, "expected a field to select"},
		{`SELECT a b c FROM "t"`, 1, 12, `expected FROM, found "c"`},
		{`SELECT * FROM "$bridges/mqtt:x"`, 1, 15, "only MQTT topic filters"},
		{`SELECT * FROM "$bridges/kafka_consumer:"`, 1, 15, "missing the source name"},
		{`SELECT * FROM "t" WHERE a = 'x`, 1, 29, "unterminated string"},
		{`SELECT * FROM "t" WHERE a # 1`, 1, 27, `unexpected "#"`},
		{`SELECT 'a' 'b' FROM "t"`, 1, 12, `expected FROM, found string "b"`},
	} {
		_, err := Parse(tc.sql)
		var se *SyntaxError
		if !errors.As(err, &se) {
			t.Errorf("%q: error %v, want a SyntaxError", tc.sql, err)
			continue
		}
		if se.Line != tc.line || se.Col != tc.col || !strings.Contains(se.Msg, tc.msg) {
			t.Errorf("%q: got %d:%d %q, want %d:%d containing %q", tc.sql, se.Line, se.Col, se.Msg, tc.line, tc.col, tc.msg)
		}
	}
}

// TestCompileWrapsSyntaxError: callers find the position through errors.As.
func TestCompileWrapsSyntaxError(t *testing.T) {
	_, err := Compile("r1", "SELECT *\nFROM \"t\" WHERE nope()", nil)
	var se *SyntaxError
	if !errors.As(err, &se) || se.Line != 2 || se.Col != 16 || !strings.HasPrefix(err.Error(), "rule r1: line 2, column 16:") {
		t.Fatalf("got %v", err)
	}
}

func TestTemplatePaths(t *testing.T) {
	for _, tc := range []struct {
		src  string
		want []string
	}{
		{"${payload.arr[1]}", []string{"payload", "arr", "[1]"}},
		{"${payload.m[2][-1].x}", []string{"payload", "m", "[2]", "[-1]", "x"}},
		{"${pub_props.User-Property.k}", []string{"pub_props", "User-Property", "k"}},
		{"${pub_props.'User-Property'.k}", []string{"pub_props", "User-Property", "k"}},
		{`${payload."a.b".c}`, []string{"payload", "a.b", "c"}},
		{"${ clientid }", []string{"clientid"}},
	} {
		tpl, err := CompileTemplate(tc.src)
		if err != nil {
			t.Errorf("%q: %v", tc.src, err)
			continue
		}
		if got := tpl.parts[0].path; strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("%q: path %q, want %q", tc.src, got, tc.want)
		}
	}
	for _, bad := range []string{"${a[}", "${a[x]}", "${'a}", "${a.}", "${..a}", "${[1]}"} {
		if _, err := CompileTemplate(bad); err == nil {
			t.Errorf("%q compiled", bad)
		}
	}
}
