package app

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/mqkafka/mqkafka/internal/testkit"
)

// testVersion is the version an app started by a test reports.
const testVersion = "test"

// startApp validates cfgText exactly as serve does and starts it in-process.
func startApp(t testing.TB, cfgText string) *App {
	t.Helper()
	a, _ := startAppLogged(t, cfgText)
	return a
}

// startAppLogged is startApp that also keeps the log for inspection.
func startAppLogged(t testing.TB, cfgText string) (*App, *testkit.SyncBuffer) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "mqkafka.toml")
	if err := os.WriteFile(path, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatalf("config: %v\n%s", err, cfgText)
	}
	buf := &testkit.SyncBuffer{}
	log := slog.New(slog.NewTextHandler(io.MultiWriter(buf, testkit.LogWriter(t)), &slog.HandlerOptions{Level: slog.LevelDebug}))
	a, err := Start(path, cfg, testVersion, log)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() { _ = a.Stop() })
	return a, buf
}
