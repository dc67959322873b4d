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

	"github.com/eclipse/paho.golang/paho"
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

// TestSIGTERMDrainsAndExitsZero: a graceful stop stops accepting, drains
// what is buffered to Kafka and exits 0.
func TestSIGTERMDrainsAndExitsZero(t *testing.T) {
	_, kafkaAddr := testkit.NewKafka(t, 0, kfake.SeedTopics(3, "drain"))
	port := testkit.FreePort(t)
	p := startProc(t, testkit.WriteConfig(t, testkit.FixedListener(testkit.BaseConfig(t, kafkaAddr, "drain"), port)))
	c := testkit.MQTTClient(t, fmt.Sprintf("127.0.0.1:%d", port), "dev-term", nil)
	const n = 2000
	for i := range n {
		testkit.Publish(t, c, "t/term", 1, fmt.Appendf(nil, "m%d", i))
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

// TestSIGHUPReload: a new rule in the file takes effect on SIGHUP; a broken
// file is refused and the running configuration stays.
func TestSIGHUPReload(t *testing.T) {
	_, addr := testkit.NewKafka(t, 0, kfake.SeedTopics(1, "hup"))
	port := testkit.FreePort(t)
	cfg := testkit.FixedListener(testkit.SinkConfig(t, addr, "topic = \"hup\"\nvalue = \"${payload}\""), port)
	path := testkit.WriteConfig(t, cfg)
	p := startProc(t, path)
	c := testkit.MQTTClient(t, fmt.Sprintf("127.0.0.1:%d", port), "hup", nil)
	testkit.Publish(t, c, "new/1", 1, []byte("before"))

	added := cfg + `
[[rules]]
id = "r2"
sql = 'SELECT * FROM "new/#"'
actions = ["kafka_producer:s1"]
`
	if err := os.WriteFile(path, []byte(added), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = p.cmd.Process.Signal(syscall.SIGHUP)
	testkit.WaitFor(t, 10*time.Second, "reload", func() bool { return strings.Contains(p.out.String(), "configuration applied") })
	testkit.Publish(t, c, "new/1", 1, []byte("after"))
	recs := testkit.Consume(t, addr, "hup", 1, 20*time.Second)
	if len(recs) != 1 || string(recs[0].Value) != "after" {
		t.Fatalf("Kafka holds %v", recs)
	}

	if err := os.WriteFile(path, []byte(added+"\nbogus_key = 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = p.cmd.Process.Signal(syscall.SIGHUP)
	testkit.WaitFor(t, 10*time.Second, "refusal", func() bool { return strings.Contains(p.out.String(), "reload refused") })
	if !strings.Contains(p.out.String(), `unknown key \"bogus_key\"`) {
		t.Fatalf("the refusal does not say why:\n%s", p.out.String())
	}
	testkit.Publish(t, c, "new/2", 1, []byte("still"))
	if recs := testkit.Consume(t, addr, "hup", 2, 20*time.Second); len(recs) != 2 {
		t.Fatalf("after a refused reload Kafka holds %d records, want 2", len(recs))
	}
}

// TestSourceRestartSIGTERM: a source consumes half, mqkafka stops on
// SIGTERM, the rest is produced while it is down; after the restart the
// rest arrives, nothing lost and nothing twice. The subscriber is a
// persistent session that is offline during the restart: sessions are not
// kept across restarts yet, so it reconnects within start_delay, before
// the restarted source publishes anything, and gets the backlog.
func TestSourceRestartSIGTERM(t *testing.T) {
	t.Parallel()
	_, addr := testkit.NewKafka(t, 0, kfake.SeedTopics(3, "src-r"))
	port := testkit.FreePort(t)
	mqttAddr := fmt.Sprintf("127.0.0.1:%d", port)
	cfg := testkit.WriteConfig(t, testkit.FixedListener(testkit.SourceConfig(t, addr, `
[[sources]]
name = "r"
connector = "k"
topic = "src-r"
offset_reset_policy = "earliest"
start_delay = "2s"
[[sources.topic_mapping]]
kafka_topic = "src-r"
mqtt_topic = "r/${.key}"
payload_template = "${.value}"
`), port))
	p := startProc(t, cfg)
	box := &testkit.Inbox{}
	c := testkit.Subscriber(t, mqttAddr, "dev", 600, box, 1, "r/#")
	testkit.Produce(t, addr, testkit.SeqRecords("src-r", 0, 500))
	testkit.WaitFor(t, 30*time.Second, "the first half", func() bool { return box.Len() >= 500 })
	_ = c.Disconnect(&paho.Disconnect{})
	if code := p.stop(t, 20*time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
	}

	testkit.Produce(t, addr, testkit.SeqRecords("src-r", 500, 500))
	startProc(t, cfg)
	testkit.Subscriber(t, mqttAddr, "dev", 600, box, 1, "r/#")
	testkit.WaitFor(t, 30*time.Second, "the rest", func() bool { return box.Len() >= 1000 })
	testkit.Settle(t, mqttAddr, "r/settle", box)
	seen := map[string]int{}
	for _, m := range box.All() {
		seen[m.Topic]++
	}
	dups := box.Len() - len(seen)
	if len(seen) != 1000 || dups != 0 {
		t.Fatalf("%d distinct, %d duplicates after a restart; want 1000 and 0", len(seen), dups)
	}
}
