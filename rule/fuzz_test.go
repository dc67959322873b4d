package rule

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/mqkafka/mqkafka/ack"
)

var fuzzSQLSeeds = []string{
	`SELECT * FROM "t/#"`,
	`SELECT payload.device as device, clientid FROM "t/#" WHERE payload.temp > 30`,
	`SELECT * FROM "t/#" WHERE topic =~ 't/+/x'`,
	`SELECT getenv('KAFKA_TOPIC') as kafka_topic, payload FROM "t/#"`,
	`SELECT pub_props.'User-Property' as headers, pub_props.User-Property.k FROM "t/#"`,
	`SELECT CASE WHEN payload.t > 30 THEN 'hot' ELSE 'cold' END AS level FROM "t" WHERE qos IN (1, 2)`,
	`SELECT CASE payload.c WHEN 1 THEN 'one' END AS n, payload.arr[-1] AS l FROM "t"`,
	`SELECT *, payload.a.b[2] AS payload.x.y, t2 + 1 AS t3 FROM "t" WHERE NOT flags.retain OR t3 > 1`,
	`SELECT 7 / 2 AS d, 7 div 2 AS i, -7 mod 3 AS m, 'a' + 1 AS s FROM "t"`,
	`SELECT sprintf('~s ~p ~.2f ~5.16.0B', clientid, payload, 1.5, 255) AS s FROM "t"`,
	`SELECT format_date('millisecond', '+08:00', '%Y-%m-%d %H:%M:%S.%3N%:z', timestamp) AS d FROM "t"`,
	`SELECT regex_replace(payload, '(\w+)', '<\1>') AS r, split(topic, '/') AS l FROM "t"`,
	`SELECT json_decode(payload) AS j, j.a AS a, json_encode(j) AS e FROM "t"`,
	`SELECT substr(clientid, 1, 2), md5(payload), base64_decode(base64_encode(payload)) FROM "t"`,
	`SELECT * FROM "$bridges/kafka_consumer:src"`,
	"SELECT\n  a -- comment\nFROM \"t\"",
	`SELECT [1, 'a', payload.x] AS l, coalesce(payload.y, 'd') AS c FROM "t"`,
	`SELECT 9223372036854775807 + 1 AS o, -9223372036854775807 - 2 AS u, 3037000500 * 3037000500 AS m FROM "t"`,
}

var fuzzPayloads = []string{
	`{"device":"d7","temp":31,"a":{"b":[1,2]},"t":40,"c":1,"arr":[1,"x",{"y":null}],"x":"a"}`,
	`not json`,
	`[1,2,3]`,
	`"str"`,
	``,
	`{"x":` + deepJSON(MaxJSONDepth-1, "1") + `}`,
	deepJSON(MaxJSONDepth+1, ""),
	strings.Repeat(`{"x":`, 10_000),
}

func FuzzParse(f *testing.F) {
	for _, s := range fuzzSQLSeeds {
		f.Add(s)
	}
	for _, n := range nestings {
		f.Add("SELECT " + n.expr(MaxDepth) + " AS v FROM \"t\" WHERE " + n.expr(MaxDepth))
		f.Add("SELECT * FROM \"t\" WHERE " + n.expr(MaxDepth+1))
	}
	f.Add(`SELECT * FROM "t" WHERE ` + strings.Repeat("(", 100_000))
	f.Fuzz(func(t *testing.T, sql string) {
		st, err := Parse(sql)
		if err != nil {
			if _, ok := err.(*SyntaxError); !ok {
				t.Fatalf("%q: error %T %v is not a SyntaxError", sql, err, err)
			}
			return
		}
		r := &Rule{ID: "fuzz", Stmt: st}
		for _, p := range fuzzPayloads {
			ev := eventWith(p)
			rec, ok, err := r.Eval(ev)
			if err != nil || !ok {
				continue
			}
			if js := rec.AppendJSON(nil); !json.Valid(js) {
				t.Fatalf("%q on %q: invalid JSON %s", sql, p, js)
			}
			for _, path := range [][]string{{"payload"}, {"a", "b"}, {"l", "[1]"}, {"payload", "x", "y"}} {
				rec.AppendPath(nil, path)
			}
		}
	})
}

func FuzzTemplate(f *testing.F) {
	for _, s := range []string{
		"${.}", "device-${payload.device}", "${payload.arr[1]}", "${pub_props.User-Property.k}",
		"${pub_props.'User-Property'.k}", `${payload."a.b"[-1].c}`, "${clientid}/${topic}/${qos}",
		"x${}", "${", "${a..b}", "${payload.a[}", "${ flags.retain }", "static",
		"${payload" + strings.Repeat(".x", 10_000) + "}", "${payload.x" + strings.Repeat("[1]", 10_000) + "}",
		strings.Repeat("${", 10_000) + strings.Repeat("}", 10_000),
	} {
		f.Add(s)
	}
	sel, err := Compile("r", `SELECT *, payload.a AS a, split(topic, '/') AS l, payload.n * 2 AS n2 FROM "t"`, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, src string) {
		tpl, err := CompileTemplate(src)
		if err != nil {
			return
		}
		_ = tpl.IsStatic()
		if tpl.String() != src {
			t.Fatalf("String() = %q, want %q", tpl.String(), src)
		}
		for _, p := range fuzzPayloads {
			ev := eventWith(p)
			tpl.Render(nil, ev)
			if rec, ok, err := sel.Eval(ev); err == nil && ok {
				tpl.Render(nil, rec)
			}
		}
	})
}

func BenchmarkSelectStar(b *testing.B) {
	r, _ := Compile("r", `SELECT * FROM "t/#"`, []string{"a"})
	e, _ := NewEngine([]*Rule{r}, map[string]Action{"a": nopAction{}})
	ev := eventWith(`{"device":"d7","temp":31,"a":{"b":[1,2]}}`)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := e.Publish(ctx, ack.InCall(), ev); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSelectFieldsWhere(b *testing.B) {
	r, _ := Compile("r", `SELECT payload.device as device, clientid FROM "t/#" WHERE payload.temp > 30`, []string{"a"})
	e, _ := NewEngine([]*Rule{r}, map[string]Action{"a": nopAction{}})
	ev := eventWith(`{"device":"d7","temp":31,"a":{"b":[1,2]},"location":{"lat":52.52,"lon":13.4}}`)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := e.Publish(ctx, ack.InCall(), ev); err != nil {
			b.Fatal(err)
		}
	}
	if s := r.Stats(); s.Passed == 0 || s.Failed != 0 {
		b.Fatalf("stats %+v", s)
	}
}

// BenchmarkSelectFieldsWhereRender adds what a sink does with the record.
func BenchmarkSelectFieldsWhereRender(b *testing.B) {
	r, _ := Compile("r", `SELECT payload.device as device, clientid FROM "t/#" WHERE payload.temp > 30`, nil)
	ev := eventWith(`{"device":"d7","temp":31,"a":{"b":[1,2]},"location":{"lat":52.52,"lon":13.4}}`)
	key, value := MustTemplate("${clientid}"), MustTemplate("${.}")
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		rec, ok, err := r.Eval(ev)
		if err != nil || !ok {
			b.Fatal(ok, err)
		}
		buf = value.Render(key.Render(buf[:0], rec), rec)
	}
}
