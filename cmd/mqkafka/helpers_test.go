package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/mqkafka/mqkafka/internal/testkit"
)

// startApp validates cfgText exactly as serve does and starts it in-process.
func startApp(t testing.TB, cfgText string) *app {
	t.Helper()
	a, _ := startAppLogged(t, cfgText)
	return a
}

// startAppLogged is startApp that also keeps the log for inspection.
func startAppLogged(t testing.TB, cfgText string) (*app, *testkit.SyncBuffer) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "mqkafka.toml")
	if err := os.WriteFile(path, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig(path)
	if err != nil {
		t.Fatalf("config: %v\n%s", err, cfgText)
	}
	buf := &testkit.SyncBuffer{}
	log := slog.New(slog.NewTextHandler(io.MultiWriter(buf, testkit.LogWriter(t)), &slog.HandlerOptions{Level: slog.LevelDebug}))
	a, err := start(path, cfg, log)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() { _ = a.stop() })
	return a, buf
}

// baseConfig is a broker on a free port with one connector, one rule on
// t/# and one sink writing to topic.
func baseConfig(t testing.TB, kafkaAddr, topic string) string {
	return sinkConfig(t, kafkaAddr, fmt.Sprintf("topic = %q", topic))
}

// sinkConfig is one connector, one rule on t/# and one sink given as TOML lines.
func sinkConfig(t testing.TB, kafkaAddr, sinkTOML string) string {
	return configHead(t, kafkaAddr, "1s", `"message.timeout.ms" = "10000"`) + `
[[rules]]
id = "r1"
sql = 'SELECT * FROM "t/#"'
actions = ["kafka_producer:s1"]

[[sinks]]
name = "s1"
connector = "k"
` + sinkTOML + "\n"
}

// configHead is a broker on a free loopback port, an open admin listener on
// another and one connector "k"; props are extra librdkafka properties.
func configHead(t testing.TB, kafkaAddr, shutdown, props string) string {
	return fmt.Sprintf(`
shutdown_timeout = %q
[broker]
listeners = [{ address = "127.0.0.1:0" }]
data_dir = %q
[broker.auth]
allow_anonymous = true
[admin]
listen = "127.0.0.1:0"

[[connectors]]
name = "k"
bootstrap_hosts = %q
metadata_request_timeout = "1s"
[connectors.properties]
"reconnect.backoff.max.ms" = "200"
%s
`, shutdown, t.TempDir(), kafkaAddr, props)
}

func publish(t testing.TB, c *paho.Client, topic string, qos byte, payload []byte) *paho.PublishResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	resp, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: qos, Payload: payload})
	// paho reports a negative PUBACK as an error too; callers check the reason.
	if err != nil && resp == nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
	return resp
}
