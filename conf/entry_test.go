package conf

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// TestCheckEntry: an entry checked on its own reports wrong types, unknown
// and missing keys by their key in the entry, without a line.
func TestCheckEntry(t *testing.T) {
	for _, tc := range []struct {
		kind  string
		entry map[string]any
		want  []string
	}{
		{"rules", map[string]any{"id": "r", "sql": "SELECT * FROM \"t\""}, nil},
		{"rules", map[string]any{"id": int64(5), "sql": "x"}, []string{"id: expected a string, got an integer"}},
		{"rules", map[string]any{"sql": []any{}}, []string{`missing required key "id" in [[rules]]`, "sql: expected a string, got an array"}},
		{"sinks", map[string]any{"name": "s", "connector": "k", "topic": "t", "nope": true}, []string{`unknown key "nope" in [[sinks]]`}},
	} {
		var got []string
		for _, p := range CheckEntry(tc.kind, tc.entry) {
			if p.Line != 0 || strings.HasPrefix(p.Path, tc.kind) {
				t.Errorf("%v: problem %+v has a line or a full path", tc.entry, p)
			}
			got = append(got, p.Msg)
		}
		if len(got) != len(tc.want) {
			t.Errorf("%v: got %q, want %q", tc.entry, got, tc.want)
			continue
		}
		for i := range got {
			if !strings.HasPrefix(got[i], tc.want[i]) {
				t.Errorf("%v: got %q, want %q", tc.entry, got, tc.want)
			}
		}
	}
	if key, ok := KindKey("rules"); !ok || key != "id" {
		t.Errorf("KindKey(rules) = %q, %v", key, ok)
	}
	if _, ok := KindKey("nope"); ok {
		t.Error("KindKey(nope) is known")
	}
}

// TestSQLErrorLine: a SQL error is reported at its file line whether the
// SQL starts on the line of the opening quotes or on the next one.
func TestSQLErrorLine(t *testing.T) {
	for _, tc := range []struct {
		sql  string
		line int
	}{
		{`'SELECT * FORM "t"'`, 4},
		{"'''SELECT *\nFORM \"t\"'''", 5},
		{"'''\nSELECT *\nFORM \"t\"'''", 6},
		{"\"\"\"\r\nSELECT *\r\nFORM \"t\"\"\"\"", 6},
	} {
		doc := "[[rules]]\nid = \"r\"\nactions = [\"kafka_producer:s\"]\nsql = " + tc.sql + "\n"
		_, err := Parse("f.toml", []byte(doc))
		var ce *Error
		if !errors.As(err, &ce) {
			t.Fatalf("%q: %v", tc.sql, err)
		}
		var lines []int
		for _, p := range ce.Problems {
			if p.Path == "rules[0].sql" {
				lines = append(lines, p.Line)
			}
		}
		if !reflect.DeepEqual(lines, []int{tc.line}) {
			t.Errorf("%q: sql problems at lines %v, want %d: %v", tc.sql, lines, tc.line, ce.Problems)
		}
	}
}
