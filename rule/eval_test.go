package rule

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mqkafka/mqkafka/ack"
)

// eventWith is testEvent with another payload.
func eventWith(payload string) *Event {
	ev := testEvent()
	ev.Payload = []byte(payload)
	return ev
}

// run compiles sql and applies it to ev; it returns the record as JSON,
// "<no result>" when WHERE turned it down, or the error.
func run(t *testing.T, sql string, ev *Event) (string, error) {
	t.Helper()
	r, err := Compile("r", sql, nil)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	rec, ok, err := r.Eval(ev)
	if err != nil {
		return "", err
	}
	if !ok {
		return "<no result>", nil
	}
	return string(rec.AppendJSON(nil)), nil
}

// jsonEq compares two JSON texts ignoring key order.
func jsonEq(a, b string) bool {
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return a == b
	}
	xb, _ := json.Marshal(x)
	yb, _ := json.Marshal(y)
	return string(xb) == string(yb)
}

func TestEMQXExamples(t *testing.T) {
	for _, tc := range []struct {
		name, sql, payload, want string
	}{
		{
			"select with where", `SELECT payload.device as device, clientid FROM "t/#" WHERE payload.temp > 30`,
			`{"device":"d7","temp":31}`, `{"device":"d7","clientid":"c\"1"}`,
		},
		{
			"where false", `SELECT payload.device as device, clientid FROM "t/#" WHERE payload.temp > 30`,
			`{"device":"d7","temp":30}`, `<no result>`,
		},
		{
			"number in a string compares as a number", `SELECT clientid FROM "t/#" WHERE payload.temp > 30`,
			`{"temp":"30.5"}`, `{"clientid":"c\"1"}`,
		},
		{"topic match", `SELECT * FROM "t/#" WHERE topic =~ 't/+'`, `{}`, "event"},
		{"topic no match", `SELECT * FROM "t/#" WHERE topic =~ 't/+/x'`, `{}`, `<no result>`},
		{
			"headers from pub_props", `SELECT pub_props.'User-Property' as headers, payload FROM "t/#"`,
			`hello`, `{"headers":{"k":"v"},"payload":"hello"}`,
		},
		{
			"user property without quotes", `SELECT pub_props.User-Property.k as k, pub_props.Message-Expiry-Interval as mei FROM "t/#"`,
			`{}`, `{"k":"v","mei":30}`,
		},
		{"implicit nested keys", `SELECT payload.a.b, payload.device FROM "t/#"`, `{"device":"d","a":{"b":[1,2]}}`, `{"payload":{"a":{"b":[1,2]},"device":"d"}}`},
		{"nested alias", `SELECT payload.device AS payload.x.dev, qos AS payload.x.q, 1 AS payload.n FROM "t/#"`, `{"device":"d"}`, `{"payload":{"x":{"dev":"d","q":1},"n":1}}`},
		{"arrays are 1-based", `SELECT payload.arr[1] AS first, payload.arr[-1] AS last, payload.arr[9] AS none, payload.m[2][1] AS m FROM "t"`, `{"arr":[10,20,30],"m":[[1],[2]]}`, `{"first":10,"last":30,"m":2}`},
		{"star with fields", `SELECT *, payload.device AS device FROM "t/#"`, `{"device":"d"}`, "event+device"},
		{"missing fields are left out", `SELECT payload.nope AS a, nope AS b, clientid FROM "t"`, `{}`, `{"clientid":"c\"1"}`},
		{"json null is kept", `SELECT payload.x AS x FROM "t"`, `{"x":null}`, `{"x":null}`},
		{"aliases are visible later and in WHERE", `SELECT payload.temp * 2 AS t2, t2 + 1 AS t3 FROM "t" WHERE t3 > 60`, `{"temp":30}`, `{"t2":60,"t3":61}`},
		{"an alias hides the event field", `SELECT upper(clientid) AS clientid, payload.x AS payload FROM "t" WHERE clientid = 'C"1' AND is_null(payload.y)`, `{"x":{"z":1},"y":2}`, `{"clientid":"C\"1","payload":{"z":1}}`},
		{"a nested alias is merged into the event field", `SELECT 1 AS payload.n FROM "t" WHERE payload.y = 2 AND payload.n = 1`, `{"y":2}`, `{"payload":{"n":1}}`},
		{"alias without AS", `SELECT clientid cid, qos q FROM "t"`, `{}`, `{"cid":"c\"1","q":1}`},
		{"event fields", `SELECT id, username, topic, qos, flags, flags.retain AS r, peerhost, timestamp, publish_received_at, node FROM "t"`, `{}`,
			`{"id":"AB010000000000000000000000000000","username":"u","topic":"t/1","qos":1,"flags":{"dup":false,"retain":true},"r":true,"peerhost":"127.0.0.1","timestamp":1700000000123,"publish_received_at":1700000000123,"node":"mqkafka@h"}`},
		{"pub_props", `SELECT pub_props FROM "t"`, `{}`, `{"pub_props":{"User-Property":{"k":"v"},"Content-Type":"json","Message-Expiry-Interval":30}}`},
		{"case when", `SELECT CASE WHEN payload.t > 30 THEN 'hot' WHEN payload.t > 10 THEN 'warm' ELSE 'cold' END AS level FROM "t"`, `{"t":20}`, `{"level":"warm"}`},
		{"case without else", `SELECT CASE WHEN payload.t > 30 THEN 'hot' END AS level, 1 AS one FROM "t"`, `{"t":20}`, `{"one":1}`},
		{"simple case", `SELECT CASE payload.c WHEN 1 THEN 'one' WHEN 2 THEN 'two' ELSE 'many' END AS n FROM "t"`, `{"c":2}`, `{"n":"two"}`},
		{"in", `SELECT payload.x IN (1, 2, 'a') AS a, payload.y IN (1, 2) AS b, payload.y NOT IN (1) AS c FROM "t" WHERE payload.x IN (5, 1)`, `{"x":1,"y":"1"}`, `{"a":true,"b":false,"c":true}`},
		{"in turns down", `SELECT * FROM "t" WHERE clientid IN ('x', 'y')`, `{}`, `<no result>`},
		{"arithmetic", `SELECT 7 / 2 AS d, 7 div 2 AS i, -7 mod 3 AS m, 2 * 3 - 1 AS e, 1 + 0.5 AS f, 4 / 2 AS g, (1 + 2) * 3 AS p FROM "t"`, `{}`, `{"d":3.5,"i":3,"m":-1,"e":5,"f":1.5,"g":2,"p":9}`},
		{"string concatenation", `SELECT 'a' + 'b' AS s, 'n' + 1 AS n, 1.5 + 'x' AS f, clientid + '/' + topic AS ct FROM "t"`, `{}`, `{"s":"ab","n":"n1","f":"1.5x","ct":"c\"1/t/1"}`},
		{"both quote styles are strings in expressions", `SELECT "dq" AS a, 'it''s' AS b FROM "t"`, `{}`, `{"a":"dq","b":"it's"}`},
		{"comparisons", `SELECT 1 = 1.0 AS a, 'a' < 'b' AS b, 2 >= 3 AS c, 1 <> 2 AS d, 1 != 1 AS e, true = 'true' AS f, payload.none = 1 AS g FROM "t"`, `{}`, `{"a":true,"b":true,"c":false,"d":true,"e":false,"f":true,"g":false}`},
		{"logic", `SELECT true AND false AS a, true OR false AS b, NOT false AS c, NOT 1 AS d FROM "t" WHERE NOT flags.dup AND (qos = 1 OR qos = 2)`, `{}`, `{"a":false,"b":true,"c":true,"d":false}`},
		{"literals", `SELECT 1 AS i, -2.5 AS f, 1e3 AS e, true AS t, null AS n FROM "t"`, `{}`, `{"i":1,"f":-2.5,"e":1000,"t":true,"n":null}`},
		{"list literal", `SELECT [1, 'a', payload.x] AS l FROM "t"`, `{"x":true}`, `{"l":[1,"a",true]}`},
		{"string holding JSON is decoded on the way", `SELECT payload.inner.x AS x FROM "t"`, `{"inner":"{\"x\":5}"}`, `{"x":5}`},
		{"quoted and keyword keys", `SELECT payload.'a b' AS a, payload.from AS f, payload."1" AS one FROM "t"`, `{"a b":1,"from":2,"1":3}`, `{"a":1,"f":2,"one":3}`},
		{"unicode and escapes in payload strings", `SELECT payload.s AS s FROM "t"`, `{"s":"\u00e9\"x\n"}`, `{"s":"é\"x\n"}`},
		{"big integers stay exact", `SELECT payload.n AS n, payload.n + 1 AS m FROM "t"`, `{"n":9007199254740993}`, `{"n":9007199254740993,"m":9007199254740994}`},
		{"payload that is not JSON is fine when no path reads it", `SELECT payload, clientid FROM "t"`, `not json`, `{"payload":"not json","clientid":"c\"1"}`},
	} {
		got, err := run(t, tc.sql, eventWith(tc.payload))
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		want := tc.want
		ev := eventWith(tc.payload)
		switch want {
		case "event":
			want = string(ev.AppendJSON(nil))
		case "event+device":
			want = strings.TrimSuffix(string(ev.AppendJSON(nil)), "}") + `,"device":"d"}`
			if got != want {
				t.Errorf("%s: key order:\n got %s\nwant %s", tc.name, got, want)
			}
		}
		if !jsonEq(got, want) {
			t.Errorf("%s: %s\n got %s\nwant %s", tc.name, tc.sql, got, want)
		}
	}
}

// TestSelectStarIsTheEvent: no copy, no allocation, the *Event itself.
func TestSelectStarIsTheEvent(t *testing.T) {
	r, _ := Compile("r", `SELECT * FROM "t/#" WHERE qos = 1`, nil)
	ev := testEvent()
	rec, ok, err := r.Eval(ev)
	if err != nil || !ok || rec != Record(ev) {
		t.Fatalf("rec=%v ok=%v err=%v", rec, ok, err)
	}
}

func TestRuntimeFailures(t *testing.T) {
	for _, tc := range []struct{ sql, payload, want string }{
		{`SELECT payload.x AS x FROM "t"`, `not json`, "line 1, column 8: payload.x: the payload is not valid JSON"},
		{`SELECT * FROM "t" WHERE payload.temp > 30`, `{"temp":`, "WHERE: line 1, column 25: payload.temp: the payload is not valid JSON"},
		{`SELECT payload.x * 2 AS y FROM "t"`, `{"x":"a"}`, `"a" * 2: not numbers`},
		{`SELECT 'a' * 2 AS y FROM "t"`, `{}`, `"a" * 2: not numbers`},
		{`SELECT 1 / payload.z AS y FROM "t"`, `{"z":0}`, "division by zero"},
		{`SELECT 5 div payload.z AS y FROM "t"`, `{"z":0.5}`, "not integers"},
		{`SELECT * FROM "t" WHERE payload.x > 1`, `{"x":"abc"}`, `"abc" is not a number`},
		{`SELECT upper(payload.x) AS y FROM "t"`, `{"x":1}`, "upper(): argument 1 must be a string, got 1"},
		{`SELECT topic(5) AS y FROM "t"`, `{}`, `topic(): topic "t/1" has no level 5`},
		{`SELECT json_decode(payload.s) AS y FROM "t"`, `{"s":"{"}`, "json_decode(): not valid JSON"},
		{`SELECT -payload.s AS y FROM "t"`, `{"s":"x"}`, `cannot negate "x"`},
		{`SELECT regex_match(clientid, payload.re) AS y FROM "t"`, `{"re":"("}`, "regex_match(): error parsing regexp"},
	} {
		_, err := run(t, tc.sql, eventWith(tc.payload))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s on %s: error %v, want %q", tc.sql, tc.payload, err, tc.want)
		}
	}
}

func TestEnvTopicTemplate(t *testing.T) {
	t.Setenv("MQKAFKA_VAR_KAFKA_TOPIC", "from-env")
	t.Setenv("KAFKA_TOPIC", "not-this-one")
	r, err := Compile("r", `SELECT getenv('KAFKA_TOPIC') as kafka_topic, payload FROM "t/#"`, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Read once at compile time, as EMQX caches it.
	t.Setenv("MQKAFKA_VAR_KAFKA_TOPIC", "changed")
	rec, ok, err := r.Eval(eventWith(`{"device":"d7"}`))
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	for src, want := range map[string]string{
		"${kafka_topic}":            "from-env",
		"device-${payload.device}":  "device-d7",
		"${payload}":                `{"device":"d7"}`,
		"${.}":                      `{"kafka_topic":"from-env","payload":"{\"device\":\"d7\"}"}`,
		"${clientid}|${topic}":      "c\"1|t/1", // not selected: not in the record
		"${kafka_topic.x}${nope}-x": "-x",
	} {
		if src == "${clientid}|${topic}" {
			want = "|"
		}
		if got := string(MustTemplate(src).Render(nil, rec)); got != want {
			t.Errorf("%s = %q, want %q", src, got, want)
		}
	}
	if v, err := run(t, `SELECT getenv('UNSET_'+'VAR') AS v, getenv('UNSET') AS w FROM "t"`, testEvent()); err != nil || v != `{"v":"","w":""}` {
		t.Errorf("unset variables: %s %v", v, err)
	}
}

func TestSelectedRecordRendering(t *testing.T) {
	r, _ := Compile("r", `SELECT payload.device AS device, payload.a AS a, payload.n AS n, 4 / 2 AS two, qos,
		payload.a.b[2] AS b2, pub_props.'User-Property' AS headers, null AS z, true AS t FROM "t/#"`, nil)
	rec, _, err := r.Eval(testEvent())
	if err != nil {
		t.Fatal(err)
	}
	for src, want := range map[string]string{
		"device-${device}":      "device-d7",
		"${a}":                  `{"b":[1,2]}`,
		"${a.b[1]}/${a.b[-1]}":  "1/2",
		"${n}|${two}|${qos}":    "3.5|2|1",
		"${b2}":                 "2",
		"${headers.k}":          "v",
		"${headers}":            `{"k":"v"}`,
		"${z}|${t}|${missing}|": "null|true||",
	} {
		if got := string(MustTemplate(src).Render(nil, rec)); got != want {
			t.Errorf("%s = %q, want %q", src, got, want)
		}
	}
	want := `{"device":"d7","a":{"b":[1,2]},"n":3.5,"two":2,"qos":1,"b2":2,"headers":{"k":"v"},"z":null,"t":true}`
	if got := string(rec.AppendJSON(nil)); got != want {
		t.Errorf("JSON\n got %s\nwant %s", got, want)
	}
	// With *, paths not selected fall through to the event.
	r, _ = Compile("r", `SELECT *, upper(clientid) AS clientid FROM "t/#"`, nil)
	rec, _, _ = r.Eval(testEvent())
	if got := string(MustTemplate("${clientid}@${topic}:${payload.device}").Render(nil, rec)); got != `C"1@t/1:d7` {
		t.Errorf("star record rendered %q", got)
	}
	var m map[string]any
	if err := json.Unmarshal(rec.AppendJSON(nil), &m); err != nil || m["clientid"] != `C"1` || m["topic"] != "t/1" || len(m) != 12 {
		t.Errorf("star record JSON %s: %v", rec.AppendJSON(nil), err)
	}
}

// TestEventTemplatePaths: templates on the event use the SQL's paths too.
func TestEventTemplatePaths(t *testing.T) {
	ev := eventWith(`{"arr":[{"x":1},{"x":2}],"m":{"a b":"s"},"z":null}`)
	for src, want := range map[string]string{
		"${payload.arr[2].x}":             "2",
		"${payload.arr[-1]}":              `{"x":2}`,
		"${payload.arr[0]}":               "",
		"${payload.arr[5]}":               "",
		"${payload.m.'a b'}":              "s",
		"${payload.z}":                    "null",
		"${pub_props.'User-Property'.k}":  "v",
		"${pub_props.Content-Type}":       "json",
		"${pub_props.Nope}${flags.nope}":  "",
		"${clientid.x}${payload.arr.x}":   "",
		"${payload.arr.1}":                "",
		"${pub_props.User-Property.k.x}|": "|",
	} {
		if got := string(MustTemplate(src).Render(nil, ev)); got != want {
			t.Errorf("%s = %q, want %q", src, got, want)
		}
	}
	if got := string(MustTemplate("${payload.x}").Render(nil, eventWith("not json"))); got != "" {
		t.Errorf("path into a non-JSON payload rendered %q", got)
	}
}

func TestFunctions(t *testing.T) {
	t.Setenv("MQKAFKA_VAR_X", "xv")
	ev := eventWith(`{"device":"d7","a":{"b":[1,2]},"n":3.5,"s":"  pad  ","arr":["a","b"],"neg":-3,"nul":null}`)
	now := time.Now().Unix()
	for _, tc := range []struct{ expr, want string }{
		{`getenv('X')`, `"xv"`},
		{`getenv(lower('X'))`, `""`},
		{`lower('AbC')`, `"abc"`},
		{`upper('AbC')`, `"ABC"`},
		{`trim(payload.s)`, `"pad"`},
		{`ltrim(payload.s)`, `"pad  "`},
		{`rtrim(payload.s)`, `"  pad"`},
		{`trim('xxaxx', 'x')`, `"a"`},
		{`reverse('héllo')`, `"olléh"`},
		{`concat('a', 1, true)`, `"a1true"`},
		{`concat(['a', 'b', 2.5])`, `"ab2.5"`},
		{`concat(payload.arr)`, `"ab"`},
		{`substr('hello', 1)`, `"ello"`},
		{`substr('héllo', 1, 3)`, `"éll"`},
		{`substr('hi', 5)`, `""`},
		{`split('a/b//c', '/')`, `["a","b","c"]`},
		{`split('a/b//c', '/', 'notrim')`, `["a","b","","c"]`},
		{`split('a/b/c', '/', 'leading')`, `["a","b/c"]`},
		{`split('a/b/c', '/', 'trailing')`, `["a/b","c"]`},
		{`replace('a-b-c', '-', '+')`, `"a+b+c"`},
		{`replace('a-b-c', '-', '+', 'leading')`, `"a+b-c"`},
		{`replace('a-b-c', '-', '+', 'trailing')`, `"a-b+c"`},
		{`regex_match('abc123', '\d+$')`, `true`},
		{`regex_match('abc', '^\d')`, `false`},
		{`regex_replace('a1b22', '\d+', '<&>')`, `"a<1>b<22>"`},
		{`regex_replace('ab-cd', '(\w)(\w)', '\2\1')`, `"ba-dc"`},
		{`regex_replace('a.b', '\.', '$')`, `"a$b"`},
		{`regex_replace('abc', 'abc', '')`, `""`},
		{`regex_replace('baaac', 'a*', '-')`, `"-b-c-"`},
		{`regex_replace('abc', 'x', '-')`, `"abc"`},
		{`regex_extract('Date: 2021-05-20', '(\d{4})-(\d{2})-(\d{2})')`, `["2021","05","20"]`},
		{`sprintf('~s-~p-~w-~.2f-~5.10.0B-~8.16.0b-~c~~~n', 'x', 1, 'b', 2.5, 42, 255, 65)`, `"x-1-<<\"b\">>-2.50-00042-000000ff-A~\n"`},
		{`sprintf('[~-5s|~5s]', 'ab', 'cd')`, `"[ab   |   cd]"`},
		{`sprintf('~p ~p ~w', 2.0, [1, 'a'], payload.a)`, `"2.0 [1,<<\"a\">>] #{<<\"b\">> => [1,2]}"`},
		{`sprintf('~e ~g ~.3g', 1234.5, 0.001, 12.5)`, `"1.23450e+3 1.00000e-3 12.5"`},
		{`str(1.5)`, `"1.5"`},
		{`str(2.0)`, `"2.0"`},
		{`str(0.1 + 0.2)`, `"0.3"`},
		{`str(payload.a)`, `"{\"b\":[1,2]}"`},
		{`str(payload.missing)`, `"undefined"`},
		{`str_utf8(12)`, `"12"`},
		{`strlen('héllo')`, `5`},
		{`abs(payload.neg)`, `3`},
		{`abs(-1.5)`, `1.5`},
		{`ceil(1.2)`, `2`},
		{`floor(-1.2)`, `-2`},
		{`round(2.5)`, `3`},
		{`round(7)`, `7`},
		{`int('42')`, `42`},
		{`int('4.7')`, `4`},
		{`int(3.9)`, `3`},
		{`int(true)`, `1`},
		{`float(1)`, `1`},
		{`float('1.5')`, `1.5`},
		{`bool('true')`, `true`},
		{`power(2, 10)`, `1024`},
		{`sqrt(16)`, `4`},
		{`fmod(7.5, 2)`, `1.5`},
		{`log2(8) + log10(100) + log(exp(1))`, `6`},
		{`mod(7, 3)`, `1`},
		{`json_decode('{"x":[1,2]}')`, `{"x":[1,2]}`},
		{`json_decode('"s"')`, `"s"`},
		{`json_encode(payload.a)`, `"{\"b\":[1,2]}"`},
		{`json_encode('s')`, `"\"s\""`},
		{`json_encode(split('a,b', ','))`, `"[\"a\",\"b\"]"`},
		{`base64_encode('hi')`, `"aGk="`},
		{`base64_decode('aGk=')`, `"hi"`},
		{`base64_decode('aGk')`, `"hi"`},
		{`md5('a')`, `"0cc175b9c0f1b6a831c399e269772661"`},
		{`sha('a')`, `"86f7e437faa5a7fce15d1ddcb9eaeaea377667b8"`},
		{`sha256('a')`, `"ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb"`},
		{`format_date('second', '+08:00', '%Y-%m-%d %H:%M:%S%:z', 0)`, `"1970-01-01 08:00:00+08:00"`},
		{`format_date('millisecond', 'Z', '%Y-%m-%dT%H:%M:%S.%3NZ', 1700000000123)`, `"2023-11-14T22:13:20.123Z"`},
		{`format_date('nanosecond', -3600, '%H:%M:%S.%6N %N %z %::z', 1700000000123456789)`, `"21:13:20.123456 123456789 -0100 -01:00:00"`},
		{`format_date('millisecond', '+0530', '%d/%m/%Y %H%M', timestamp)`, `"15/11/2023 0343"`},
		{`unix_ts_to_rfc3339(0, 'second') = format_date('second', 'local', '%Y-%m-%dT%H:%M:%S%:z', 0)`, `true`},
		{`topic()`, `"t/1"`},
		{`topic(1)`, `"t"`},
		{`topic(2)`, `"1"`},
		{`clientid() + username() + peerhost()`, `"c\"1u127.0.0.1"`},
		{`qos()`, `1`},
		{`msgid() = id AND clientip() = peerhost AND payload() = payload`, `true`},
		{`coalesce(payload.missing, payload.nul, '', 'x')`, `"x"`},
		{`coalesce(payload.missing)`, `""`},
		{`is_null(payload.missing)`, `true`},
		{`is_null(payload.nul)`, `false`},
		{`is_null_var(payload.nul)`, `true`},
		{`is_not_null(payload.device)`, `true`},
		{`is_not_null(payload.missing)`, `false`},
		{`is_not_null_var(payload.nul)`, `false`},
		{`is_str('a') AND is_int(1) AND is_float(1.5) AND is_num(1) AND is_bool(true) AND is_map(payload.a) AND is_array(payload.arr)`, `true`},
		{`nth(2, payload.arr)`, `"b"`},
		{`length(payload.a.b)`, `2`},
		{`map_get('b', payload.a)`, `[1,2]`},
		{`map_get('x.y', payload.a, 'dflt')`, `"dflt"`},
		{`unescape('a\tb\x41')`, `"a` + "\\t" + `bA"`},
		{`UPPER('x')`, `"X"`},
	} {
		got, err := run(t, `SELECT `+tc.expr+` AS v FROM "t/#"`, ev)
		if err != nil {
			t.Errorf("%s: %v", tc.expr, err)
			continue
		}
		if want := `{"v":` + tc.want + `}`; got != want {
			t.Errorf("%s:\n got %s\nwant %s", tc.expr, got, want)
		}
	}
	for _, unit := range []struct {
		arg    string
		factor int64
	}{{"", 1}, {"'second'", 1}, {"'millisecond'", 1e3}, {"'microsecond'", 1e6}, {"'nanosecond'", 1e9}} {
		got, err := run(t, `SELECT now_timestamp(`+unit.arg+`) AS v FROM "t"`, ev)
		if err != nil {
			t.Fatal(err)
		}
		n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimPrefix(got, `{"v":`), "}"), 10, 64)
		if s := n / unit.factor; s < now || s > now+2 {
			t.Errorf("now_timestamp(%s) = %d, now %d", unit.arg, n, now)
		}
	}
	got, err := run(t, `SELECT now_rfc3339() AS v FROM "t"`, ev)
	if err != nil || !strings.Contains(got, time.Now().Format("2006-01-02T")) {
		t.Errorf("now_rfc3339() = %s, %v", got, err)
	}
}

// TestEveryFunctionTested keeps TestFunctions in step with the builtins.
func TestEveryFunctionTested(t *testing.T) {
	src, err := readTestSources()
	if err != nil {
		t.Fatal(err)
	}
	for name := range builtins {
		if !strings.Contains(src, name+"(") {
			t.Errorf("function %s() is not tested", name)
		}
	}
}

func readTestSources() (string, error) {
	b, err := os.ReadFile("eval_test.go")
	return string(b), err
}

type failingAction struct{ n int }

func (a *failingAction) Enqueue(context.Context, ack.Wait, Record) error { a.n++; return nil }

func TestEngineMetricsAndLog(t *testing.T) {
	var logs bytes.Buffer
	r1, _ := Compile("hot", `SELECT payload.device AS device FROM "t/#" WHERE payload.temp > 30`, []string{"a"})
	r2, _ := Compile("all", `SELECT * FROM "t/#"`, []string{"a"})
	a := &failingAction{}
	e, err := NewEngine([]*Rule{r1, r2}, map[string]Action{"a": a})
	if err != nil {
		t.Fatal(err)
	}
	e.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	for _, p := range []string{`{"temp":31}`, `{"temp":20}`, `not json`, `{"temp":"hot"}`, `{"temp":`} {
		ev := eventWith(p)
		if err := e.Publish(context.Background(), ack.InCall(), ev); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := r1.Stats(), (Stats{Matched: 5, Passed: 1, Failed: 3, NoResult: 1}); got != want {
		t.Errorf("hot: %+v, want %+v", got, want)
	}
	if got, want := r2.Stats(), (Stats{Matched: 5, Passed: 5}); got != want {
		t.Errorf("all: %+v, want %+v", got, want)
	}
	if a.n != 6 {
		t.Errorf("action got %d records, want 6", a.n)
	}
	if n := strings.Count(logs.String(), "rule skipped a message"); n != 1 {
		t.Errorf("%d log lines in a second, want 1:\n%s", n, logs.String())
	}
	for _, w := range []string{"rule=hot", "reason=render_failed", "payload.temp: the payload is not valid JSON"} {
		if !strings.Contains(logs.String(), w) {
			t.Errorf("log misses %q:\n%s", w, logs.String())
		}
	}
}

func TestSourcesNeverMatchTopics(t *testing.T) {
	r, err := Compile("src", `SELECT * FROM "$bridges/kafka_consumer:in"`, []string{"a"})
	if err != nil {
		t.Fatal(err)
	}
	e, _ := NewEngine([]*Rule{r}, map[string]Action{"a": &recorder{}})
	for _, topic := range []string{"$bridges/kafka_consumer:in", "$bridges/#", "in"} {
		if r.Matches(topic) || e.Matches(topic) {
			t.Errorf("source rule matched topic %q", topic)
		}
	}
	if len(r.Stmt.Sources) != 1 || r.Stmt.Sources[0] != "in" || len(r.Stmt.From) != 0 {
		t.Errorf("sources %q from %q", r.Stmt.Sources, r.Stmt.From)
	}
}

func TestNoAllocations(t *testing.T) {
	r, _ := Compile("r", `SELECT * FROM "t/#"`, []string{"a", "s"})
	e, _ := NewEngine([]*Rule{r}, map[string]Action{"a": nopAction{}, "s": nopStager{}})
	ev := testEvent()
	ctx := context.Background()
	if n := testing.AllocsPerRun(100, func() {
		if !e.Matches(ev.Topic) || e.Matches("x/y") {
			panic("match")
		}
		if err := e.Publish(ctx, ack.InCall(), ev); err != nil {
			panic(err)
		}
	}); n != 0 {
		t.Errorf("SELECT * allocates %v per message", n)
	}
	tpl := MustTemplate("device-${payload.a.b[2]}-${pub_props.User-Property.k}")
	buf := make([]byte, 0, 256)
	if n := testing.AllocsPerRun(100, func() { buf = tpl.Render(buf[:0], ev) }); n != 0 {
		t.Errorf("rendering from the event allocates %v", n)
	}
}

type nopAction struct{}

func (nopAction) Enqueue(context.Context, ack.Wait, Record) error { return nil }

// nopStager stages every record; staging costs the engine no allocation.
type nopStager struct{}

func (nopStager) Enqueue(context.Context, ack.Wait, Record) error { return nil }
func (nopStager) Stage(Record) (Staged, error)                    { return nopStaged{}, nil }

type nopStaged struct{}

func (nopStaged) Append(context.Context, ack.Wait) error { return nil }
func (nopStaged) Discard()                               {}
