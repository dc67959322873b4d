package app

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mqkafka/mqkafka/third_party/mochi/packets"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/mqkafka/mqkafka/internal/testkit"
)

// TestDiskFullRecovers puts a disk sink's buffer on a small real file
// system and fills it: MQTT 5 publishers get PUBACK 0x80, MQTT 3.1.1
// publishers are disconnected, /readyz says why. Once space is freed the
// same process accepts and delivers again, without a restart, and every
// PUBACKed publish reaches Kafka.
func TestDiskFullRecovers(t *testing.T) {
	_, kafkaAddr := testkit.NewKafka(t, 0, kfake.SeedTopics(1, "full"))
	cfg := withBuffer(testkit.BaseConfig(t, kafkaAddr, "full"), `mode = "disk"
segment_bytes = "64KB"`)
	dataDir := regexp.MustCompile(`data_dir = "(.*)"`).FindStringSubmatch(cfg)[1]
	// Only the buffer lives on the small file system: the broker's own
	// session store stays out of the test.
	bufDir := testkit.SmallFS(t, filepath.Join(dataDir, "buffer"), 2<<20)
	a := startApp(t, cfg)
	addr := a.broker.Addrs()[0]
	c5 := testkit.MQTTClient(t, addr, "full-v5", nil)

	var acked []string
	pub5 := func(payload string) byte {
		r := testkit.Publish(t, c5, "t/full", 1, []byte(payload))
		if r.ReasonCode == 0 {
			acked = append(acked, payload)
		}
		return r.ReasonCode
	}
	if rc := pub5("before"); rc != 0 {
		t.Fatalf("publish before the disk filled: reason %#x", rc)
	}
	testkit.WaitFor(t, 10*time.Second, "/readyz 200", func() bool {
		code, _ := call(t, a, "GET", "/readyz", "", "")
		return code == 200
	})

	filler := testkit.Fill(t, bufDir)
	var rc byte
	for i := 0; i < 1000 && rc == 0; i++ {
		rc = pub5(fmt.Sprintf("filling-%d", i))
	}
	if rc != 0x80 {
		t.Fatalf("MQTT 5 publish on a full disk: reason %#x, want 0x80", rc)
	}
	// The first failure is a write that failed; later publishes are refused
	// before any write.
	if rc := pub5("refused-v5"); rc != 0x80 {
		t.Fatalf("MQTT 5 publish refused on a full disk: reason %#x, want 0x80", rc)
	}
	if code, body := call(t, a, "GET", "/readyz", "", ""); code != 503 || !strings.Contains(body, "no space left") {
		t.Fatalf("/readyz on a full disk: %d %q", code, body)
	}
	if got := publish311(t, addr, "full-v3", "refused-v3"); got != "closed" {
		t.Fatalf("MQTT 3.1.1 publish on a full disk: %s, want the connection closed", got)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	n := 0
	testkit.WaitFor(t, 15*time.Second, "publishes accepted again", func() bool {
		n++
		return pub5(fmt.Sprintf("after-%d", n)) == 0
	})
	if got := publish311(t, addr, "full-v3", "accepted-v3"); got != "acked" {
		t.Fatalf("MQTT 3.1.1 publish after space was freed: %s", got)
	}
	acked = append(acked, "accepted-v3")
	testkit.WaitFor(t, 10*time.Second, "/readyz 200 again", func() bool {
		code, _ := call(t, a, "GET", "/readyz", "", "")
		return code == 200
	})

	got := map[string]bool{}
	for _, ps := range payloads(t, kafkaAddr, "full", len(acked), 20*time.Second) {
		for _, p := range ps {
			got[p] = true
		}
	}
	for _, p := range acked {
		if !got[p] {
			t.Fatalf("PUBACKed %q not in Kafka (%d acknowledged, %d delivered)", p, len(acked), len(got))
		}
	}
}

// publish311 sends one QoS 1 publish on a new MQTT 3.1.1 connection and
// says what came back: "acked", or "closed" when the broker closed the
// connection without a PUBACK.
func publish311(t *testing.T, addr, clientID, payload string) string {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var out bytes.Buffer
	testkit.RawConnect(t, &out, 4, clientID)
	testkit.RawPublish(t, &out, "t/full", 1, 7, payload)
	if _, err := conn.Write(out.Bytes()); err != nil {
		t.Fatal(err)
	}
	// CONNACK, then PUBACK 0x40 2 0 7 if the publish was acknowledged.
	puback := []byte{byte(packets.Puback << 4), 2, 0, 7}
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	var in []byte
	buf := make([]byte, 256)
	for {
		n, err := conn.Read(buf)
		in = append(in, buf[:n]...)
		switch {
		case bytes.Contains(in, puback):
			return "acked"
		case errors.Is(err, os.ErrDeadlineExceeded):
			return fmt.Sprintf("no answer after % x", in)
		case err != nil:
			return "closed"
		}
	}
}
