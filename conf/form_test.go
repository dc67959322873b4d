package conf

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/pelletier/go-toml/v2"
)

// formFile sets a value other than the default for most keys, so that a
// round trip that loses one shows.
const formFile = `
shutdown_timeout = "1500ms"
[broker]
listeners = [{ address = "127.0.0.1:0" }]
max_packet_size = "3MB"
max_conn_rate = "60/m"
bytes_rate = "4MB/s"
idle_timeout = "20s"
[sysmon.os]
sysmem_high_watermark = "65.5%"

[[connectors]]
name = "k"
bootstrap_hosts = "127.0.0.1:9092"
connect_timeout = "2500ms"
concurrent_clients = 2
[connectors.socket_opts]
sndbuf = "1MB"
recbuf = 1000
tcp_keepalive = "240,30,5"
[connectors.authentication]
mechanism = "plain"
username = "u"
password = "p"
[connectors.properties]
"linger.ms" = "7"

[[sinks]]
name = "s"
connector = "k"
topic = "t-${clientid}"
partition_strategy = "fixed"
partition = 2
partition_count_refresh_interval = "90s"
max_batch_bytes = "1000B"
max_linger_time = "1us"
mqtt_topic_filters = ["a/#"]
kafka_ext_headers = [{ kafka_ext_header_key = "h", kafka_ext_header_value = "${topic}" }]
[sinks.buffer]
mode = "disk"
per_partition_limit = "1GB"
fsync = "interval"
fsync_interval = "250ms"

[[sources]]
name = "src"
connector = "k"
topic = ["in1", "in2"]
offset_commit_interval = "7s"
[[sources.topic_mapping]]
kafka_topic = "in1"
mqtt_topic = "d/${.key}"
qos = 0

[[rules]]
id = "r"
sql = 'SELECT * FROM "a/#"'
actions = ["kafka_producer:s"]
[[rules.republish]]
topic = "e/1"
qos = 1
retain = true
`

// TestFormRoundTrip: every entry written in its file form, through JSON as
// the REST API carries it, parses back to the same entry.
func TestFormRoundTrip(t *testing.T) {
	cfg, err := Parse("form.toml", []byte(formFile))
	if err != nil {
		t.Fatal(err)
	}
	text, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	dec := json.NewDecoder(bytes.NewReader(text))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		t.Fatal(err)
	}
	// A secret shows as "******"; put it back as an edit form's PUT does.
	connectors := doc["connectors"].([]any)
	connectors[0].(map[string]any)["authentication"].(map[string]any)["password"] = "p"
	back, err := toml.Marshal(JSONNumbers(doc))
	if err != nil {
		t.Fatal(err)
	}
	again, err := Parse("again.toml", back)
	if err != nil {
		t.Fatalf("%v\n%s", err, back)
	}
	again.pos, cfg.pos = nil, nil
	if !reflect.DeepEqual(again, cfg) {
		t.Errorf("round trip changed the configuration:\n%s", diffCfg(again, cfg))
	}

	sink := doc["sinks"].([]any)[0].(map[string]any)
	for k, want := range map[string]any{"partition_strategy": "fixed", "partition_count_refresh_interval": "90s",
		"max_batch_bytes": "1000B", "max_inflight_bytes": "24MB", "max_linger_time": "1us", "sync_query_timeout": "5s"} {
		if sink[k] != want {
			t.Errorf("sink %s = %v, want %v", k, sink[k], want)
		}
	}
	if got := doc["broker"].(map[string]any)["max_conn_rate"]; got != "1/s" {
		t.Errorf("max_conn_rate = %v", got)
	}
	if got := doc["broker"].(map[string]any)["messages_rate"]; got != "infinity" {
		t.Errorf("messages_rate = %v", got)
	}
}

func TestFormUnits(t *testing.T) {
	for d, want := range map[time.Duration]string{0: "0s", time.Minute: "60s", 1500 * time.Millisecond: "1500ms", 3 * time.Microsecond: "3us", 7: "7ns"} {
		if got := FormatDuration(d); got != want {
			t.Errorf("FormatDuration(%d) = %q, want %q", d, got, want)
		}
	}
	for b, want := range map[ByteSize]string{0: "0B", 896 * KB: "896KB", 256 * MB: "256MB", 2 * GB: "2GB", 1000: "1000B"} {
		if got, _ := b.MarshalText(); string(got) != want {
			t.Errorf("ByteSize(%d) = %q, want %q", b, got, want)
		}
	}
	for _, text := range []string{"1000/s", "1/m", "7/h", "infinity", "1MB/s", "500/10s"} {
		var r, back Rate
		if err := r.UnmarshalText([]byte(text)); err != nil {
			t.Fatal(err)
		}
		out, _ := r.MarshalText()
		if err := back.UnmarshalText(out); err != nil || back != r {
			t.Errorf("rate %q written as %q reads back as %v (%v)", text, out, back, err)
		}
	}
}

// diffCfg names the fields in which two configurations differ.
func diffCfg(a, b *Config) string {
	va, vb := reflect.ValueOf(*a), reflect.ValueOf(*b)
	out := ""
	for i := range va.NumField() {
		if !va.Type().Field(i).IsExported() {
			continue
		}
		if !reflect.DeepEqual(va.Field(i).Interface(), vb.Field(i).Interface()) {
			out += fmt.Sprintf("%s:\n%#v\n%#v\n", va.Type().Field(i).Name, va.Field(i).Interface(), vb.Field(i).Interface())
		}
	}
	return out
}
