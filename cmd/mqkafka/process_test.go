package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/mqkafka/mqkafka/internal/testkit"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
	binDir    string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// builtBinary builds the real mqkafka once per test run.
func builtBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "mqkafka-bin")
		if buildErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "mqkafka")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// proc is a running mqkafka child process.
type proc struct {
	cmd  *exec.Cmd
	out  *testkit.SyncBuffer
	done chan struct{}
	err  error
}

// startProc runs `mqkafka serve -c cfgPath` and waits until it has started.
func startProc(t testing.TB, cfgPath string) *proc {
	t.Helper()
	return startCommand(t, exec.Command(builtBinary(t), "serve", "-c", cfgPath))
}

// startCommand runs cmd, which execs `mqkafka serve`, and waits until it has started.
func startCommand(t testing.TB, cmd *exec.Cmd) *proc {
	t.Helper()
	p := &proc{cmd: cmd, out: &testkit.SyncBuffer{}, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("mqkafka output:\n%s", p.out.String())
		}
	})
	deadline := time.After(30 * time.Second)
	for !strings.Contains(p.out.String(), "mqkafka started") {
		select {
		case <-p.done:
			t.Fatalf("mqkafka exited at start: %v\n%s", p.err, p.out.String())
		case <-deadline:
			t.Fatalf("mqkafka did not start:\n%s", p.out.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	return p
}

func (p *proc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// stop sends SIGTERM and returns the exit code.
func (p *proc) stop(t testing.TB, timeout time.Duration) int {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("mqkafka did not stop within %v:\n%s", timeout, p.out.String())
	}
	return p.cmd.ProcessState.ExitCode()
}

func writeFile(t testing.TB, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "mqkafka.toml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// fixedListener pins the MQTT listener to a port so that restarts keep it.
func fixedListener(cfg string, port int) string {
	return strings.Replace(cfg, `address = "127.0.0.1:0"`, fmt.Sprintf(`address = "127.0.0.1:%d"`, port), 1)
}

// TestSIGTERMDrainsAndExitsZero: a graceful stop stops accepting, drains
// what is buffered to Kafka and exits 0.
func TestSIGTERMDrainsAndExitsZero(t *testing.T) {
	_, kafkaAddr := testkit.NewKafka(t, 0, kfake.SeedTopics(3, "drain"))
	port := testkit.FreePort(t)
	p := startProc(t, writeFile(t, fixedListener(baseConfig(t, kafkaAddr, "drain"), port)))
	c := testkit.MQTTClient(t, fmt.Sprintf("127.0.0.1:%d", port), "dev-term", nil)
	const n = 2000
	for i := range n {
		publish(t, c, "t/term", 1, fmt.Appendf(nil, "m%d", i))
	}
	if code := p.stop(t, 20*time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM:\n%s", code, p.out.String())
	}
	if !bytes.Contains([]byte(p.out.String()), []byte("msg=stopped")) {
		t.Fatalf("no clean stop logged:\n%s", p.out.String())
	}
	if recs := testkit.Consume(t, kafkaAddr, "drain", n, 30*time.Second); len(recs) != n {
		t.Fatalf("Kafka has %d records after a graceful stop, want %d", len(recs), n)
	}
}
