package rule

import "testing"

// TestColumnsEvent: a Kafka source message reaches rules as EMQX shows it,
// its fields read by SQL and templates instead of the publish fields.
func TestColumnsEvent(t *testing.T) {
	ev := &Event{Topic: "k1", Columns: `{"headers":{"h1":"v1"},"key":"d7","offset":42,"topic":"k1","ts":1700000000000,"ts_type":"create","value":"{\"temp\":31}"}`}
	for _, tc := range []struct{ sql, tpl, want string }{
		{`SELECT * FROM "$bridges/kafka_consumer:x"`, "${.}", ev.Columns},
		{`SELECT value.temp AS t, key FROM "$bridges/kafka_consumer:x" WHERE offset > 40 AND headers.h1 = 'v1'`, "${.}", `{"t":31,"key":"d7"}`},
		{`SELECT *, upper(key) AS key FROM "$bridges/kafka_consumer:x"`, "${.}", `{"headers":{"h1":"v1"},"offset":42,"topic":"k1","ts":1700000000000,"ts_type":"create","value":"{\"temp\":31}","key":"D7"}`},
		{`SELECT * FROM "$bridges/kafka_consumer:x"`, "${.value.temp}/${headers.h1}/${.key}/${ts_type}/${nope}", "31/v1/d7/create/"},
		{`SELECT topic(1) AS t FROM "$bridges/kafka_consumer:x"`, "${t}", "k1"},
	} {
		r, err := Compile("r", tc.sql, nil)
		if err != nil {
			t.Fatal(err)
		}
		rec, ok, err := r.Eval(ev)
		if err != nil || !ok {
			t.Fatalf("%s: ok=%v err=%v", tc.sql, ok, err)
		}
		if got := string(MustTemplate(tc.tpl).Render(nil, rec)); got != tc.want {
			t.Errorf("%s | %s:\n got %s\nwant %s", tc.sql, tc.tpl, got, tc.want)
		}
	}
	r, _ := Compile("r", `SELECT * FROM "$bridges/kafka_consumer:x" WHERE key = 'other'`, nil)
	if _, ok, err := r.Eval(ev); ok || err != nil {
		t.Fatalf("WHERE let a non-matching record through: ok=%v err=%v", ok, err)
	}
}
