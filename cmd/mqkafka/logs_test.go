package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/mqkafka/mqkafka/internal/logx"
	"github.com/mqkafka/mqkafka/internal/testkit"
)

// TestLogsBoundedAndRateLimited: over real sockets to a `mqkafka serve`
// process, a 900 KB PUBLISH to the invalid topic t/+ (MQTT 3.1.1 and 5)
// logs no payload byte and no line over 1 KB (mochi logged the packet: a
// 2.7 MB line), and a burst of 200 malformed connections logs a bounded
// number of lines, a later one counting those left out.
func TestLogsBoundedAndRateLimited(t *testing.T) {
	_, kafkaAddr := testkit.NewKafka(t, 0, kfake.SeedTopics(1, "logs"))
	port := testkit.FreePort(t)
	p := startProc(t, testkit.WriteConfig(t, testkit.FixedListener(testkit.BaseConfig(t, kafkaAddr, "logs"), port)))
	addr := fmt.Sprintf("127.0.0.1:%d", port)

	payload := bytes.Repeat([]byte("LOGMARK-"), 900_000/8)
	for _, version := range []byte{4, 5} {
		var out bytes.Buffer
		testkit.RawConnect(t, &out, version, fmt.Sprintf("inflate-%d", version))
		if version == 5 {
			testkit.RawPublishV5(t, &out, "t/+", 1, payload)
		} else {
			testkit.RawPublish(t, &out, "t/+", 1, 1, string(payload))
		}
		untilClosed(t, addr, out.Bytes())
	}
	testkit.WaitFor(t, 10*time.Second, "both refused publishes logged", func() bool {
		return strings.Count(p.out.String(), "error processing packet") >= 2
	})
	checkBounded(t, p.out.String())

	// Half garbage, half a CONNECT of an unknown protocol version.
	var badConnect bytes.Buffer
	testkit.RawConnect(t, &badConnect, 9, "bad")
	inputs := [][]byte{[]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), badConnect.Bytes()}
	before := len(p.out.String())
	start := time.Now()
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			untilClosed(t, addr, inputs[i%2])
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	// Whatever the broker says about them (mochi's listener logged one WARN
	// line each; mqkafka logs them at debug level), it is bounded.
	burst := strings.Count(p.out.String()[before:], "\n")
	if limit := 20 + int(10*(elapsed.Seconds()+1)); burst > limit || burst >= 200 {
		t.Errorf("200 malformed connections in %v logged %d lines, want at most %d:\n%.2000s", elapsed, burst, limit, p.out.String()[before:])
	}
	if burst >= 20 {
		// The limit held some back: a later line tells how many.
		testkit.WaitFor(t, 10*time.Second, "a line counting the suppressed ones", func() bool {
			untilClosed(t, addr, inputs[0])
			return strings.Contains(p.out.String()[before:], logx.SuppressedKey+"=")
		})
	}

	// The broker still serves.
	c := testkit.MQTTClient(t, addr, "after", nil)
	if r := testkit.Publish(t, c, "t/ok", 1, []byte("ok")); r.ReasonCode != 0 {
		t.Fatalf("publish after the flood: reason %#x", r.ReasonCode)
	}
	checkBounded(t, p.out.String())
}

// checkBounded: the log has no line over logx.MaxLine and none of the
// payload TestLogsBoundedAndRateLimited publishes, as text or as the
// decimal bytes mochi printed packets with.
func checkBounded(t *testing.T, out string) {
	t.Helper()
	if strings.Contains(out, "LOGMARK") || strings.Contains(out, "76 79 71 77 65 82 75") {
		t.Error("the payload is in the log")
	}
	for _, l := range strings.Split(out, "\n") {
		if len(l)+1 > logx.MaxLine {
			t.Errorf("a %d-byte log line: %.300s...", len(l)+1, l)
		}
	}
}

// untilClosed writes b on a new connection to addr and reads until the
// broker closes it.
func untilClosed(t testing.TB, addr string, b []byte) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Error(err)
		return
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write(b); err != nil {
		return // the broker may close before reading it all
	}
	if _, err := io.Copy(io.Discard, conn); err != nil && !isReset(err) {
		t.Errorf("waiting for the broker to close: %v", err)
	}
}

func isReset(err error) bool { return strings.Contains(err.Error(), "connection reset") }
