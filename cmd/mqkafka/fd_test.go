package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/mqkafka/mqkafka/internal/testkit"
)

// TestListenerSurvivesRunningOutOfFileDescriptors: a flood of idle sockets
// exhausts the process's file descriptors, so accepts fail with EMFILE;
// /readyz says so meanwhile. Once the sockets are closed, the listener
// accepts again (mochi's used to return from its accept loop for good) and a
// client's publish reaches Kafka.
func TestListenerSurvivesRunningOutOfFileDescriptors(t *testing.T) {
	const nofile = 256 // RLIMIT_NOFILE of the child, soft and hard: Go raises the soft one to the hard one
	_, kafkaAddr := testkit.NewKafka(t, 0, kfake.SeedTopics(1, "fd"))
	port, adminPort := testkit.FreePort(t), testkit.FreePort(t)
	cfg := testkit.FixedListener(testkit.BaseConfig(t, kafkaAddr, "fd"), port)
	// Idle sockets must hold their descriptors for the whole flood.
	cfg = strings.Replace(cfg, "[broker]\n", "[broker]\nidle_timeout = \"1h\"\n", 1)
	cfg = strings.Replace(cfg, `listen = "127.0.0.1:0"`, fmt.Sprintf(`listen = "127.0.0.1:%d"`, adminPort), 1)
	// `ulimit -n` without -S or -H sets both limits, in dash as in bash.
	p := startCommand(t, exec.Command("sh", "-c", `ulimit -n "$0" && exec "$@"`, strconv.Itoa(nofile),
		builtBinary(t), "serve", "-c", testkit.WriteConfig(t, cfg)))
	mqttAddr := fmt.Sprintf("127.0.0.1:%d", port)

	// One kept-alive admin connection, opened before the descriptors run out.
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1}}
	defer hc.CloseIdleConnections()
	get := func(path string) (int, string) {
		resp, err := hc.Get(fmt.Sprintf("http://127.0.0.1:%d%s", adminPort, path))
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	testkit.WaitFor(t, 30*time.Second, "ready", func() bool { code, _ := get("/readyz"); return code == 200 })

	// The kernel completes connections the process cannot accept (its
	// backlog), so every dial succeeds; past the limit they wait there.
	var idle []net.Conn
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	for range nofile + 64 {
		c, err := net.DialTimeout("tcp", mqttAddr, 5*time.Second)
		if err != nil {
			t.Fatalf("dial idle socket %d: %v", len(idle), err)
		}
		idle = append(idle, c)
	}
	var why string
	testkit.WaitFor(t, 20*time.Second, "/readyz to report the failing accepts", func() bool {
		var code int
		code, why = get("/readyz")
		return code == http.StatusServiceUnavailable && strings.Contains(why, "cannot accept: too many open files")
	})
	t.Logf("/readyz while out of descriptors: %s", strings.TrimSpace(why))
	if _, m := get("/metrics"); !strings.Contains(m, "mqkafka_broker_accept_errors_total") ||
		strings.Contains(m, "mqkafka_broker_accept_errors_total 0\n") {
		t.Errorf("accept errors not counted in /metrics")
	}

	for _, c := range idle {
		c.Close()
	}
	idle = nil
	testkit.WaitFor(t, 30*time.Second, "ready again", func() bool { code, _ := get("/readyz"); return code == 200 })
	c := testkit.MQTTClient(t, mqttAddr, "dev-fd", nil)
	if r := testkit.Publish(t, c, "t/fd", 1, []byte("after the flood")); r.ReasonCode != 0 {
		t.Fatalf("PUBACK reason %#x", r.ReasonCode)
	}
	recs := testkit.Consume(t, kafkaAddr, "fd", 1, 30*time.Second)
	if len(recs) != 1 || !strings.Contains(string(recs[0].Value), "after the flood") {
		t.Fatalf("Kafka has %d records, want the publish", len(recs))
	}
	if n := openFiles(p.cmd.Process.Pid); n >= nofile {
		t.Errorf("the child still has %d descriptors open", n)
	}
}

// openFiles counts a process's open descriptors.
func openFiles(pid int) int {
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(fds)
}
