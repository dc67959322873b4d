package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/mqkafka/mqkafka/internal/testkit"
)

// What a client that never authenticates can cost a `mqkafka serve`, for
// README's security notes:
//
//	go test -run '^$' -bench 'Cost' -benchtime 2000x ./cmd/mqkafka
//
// rss-bytes/socket is the child's resident memory per socket held open,
// cpu-ns/packet its CPU time (user+system) per packet handled.

// BenchmarkCostHalfOpenSocket: sockets that send nothing (before idle_timeout closes them).
func BenchmarkCostHalfOpenSocket(b *testing.B) {
	p, addr := costProc(b)
	benchRSS(b, p, func() net.Conn { return costDial(b, addr) })
}

// BenchmarkCostIdleClient: anonymous MQTT 3.1.1 clients connected, silent.
func BenchmarkCostIdleClient(b *testing.B) {
	p, addr := costProc(b)
	i := 0
	benchRSS(b, p, func() net.Conn {
		c := costDial(b, addr)
		i++
		connect(b, c, fmt.Sprintf("idle-%d", i))
		return c
	})
}

// BenchmarkCostPublishPacket: QoS 0 publishes of 16 bytes to a topic no rule
// reads, the cheapest packet that does work.
func BenchmarkCostPublishPacket(b *testing.B) {
	p, addr := costProc(b)
	c := costDial(b, addr)
	defer c.Close()
	connect(b, c, "pub")
	topic := "x/cost"
	pk := append([]byte{0x30, byte(2 + len(topic) + 16), 0, byte(len(topic))}, topic...)
	pk = append(pk, bytes.Repeat([]byte{'p'}, 16)...)
	batch := bytes.Repeat(pk, 1000)
	before := cpuTime(b, p)
	b.ResetTimer()
	for n := b.N; n > 0; n -= 1000 {
		if _, err := c.Write(batch[:min(n, 1000)*len(pk)]); err != nil {
			b.Fatal(err)
		}
	}
	// Packets are handled in order: the PINGRESP follows the last publish.
	if _, err := c.Write([]byte{0xc0, 0}); err != nil {
		b.Fatal(err)
	}
	resp := make([]byte, 2)
	if _, err := io.ReadFull(c, resp); err != nil || resp[0] != 0xd0 {
		b.Fatalf("PINGRESP: % x, %v", resp, err)
	}
	b.StopTimer()
	b.ReportMetric(float64(cpuTime(b, p)-before)/float64(b.N), "cpu-ns/packet")
}

func costProc(b *testing.B) (*proc, string) {
	_, kafkaAddr := testkit.NewKafka(b, 0, kfake.SeedTopics(1, "cost"))
	port := testkit.FreePort(b)
	cfg := strings.Replace(testkit.FixedListener(testkit.BaseConfig(b, kafkaAddr, "cost"), port), "[broker]\n", "[broker]\nidle_timeout = \"1h\"\n", 1)
	return startProc(b, testkit.WriteConfig(b, cfg)), fmt.Sprintf("127.0.0.1:%d", port)
}

func costDial(b *testing.B, addr string) net.Conn {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// connect sends an MQTT 3.1.1 CONNECT (keepalive 0) and reads the CONNACK.
func connect(b *testing.B, c net.Conn, id string) {
	body := append([]byte{0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 0, 0, byte(len(id))}, id...)
	if _, err := c.Write(append([]byte{0x10, byte(len(body))}, body...)); err != nil {
		b.Fatal(err)
	}
	ack := make([]byte, 4)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, ack); err != nil || ack[3] != 0 {
		b.Fatalf("CONNACK % x, %v", ack, err)
	}
	_ = c.SetReadDeadline(time.Time{})
}

// benchRSS opens b.N connections and reports the child's RSS growth per one.
func benchRSS(b *testing.B, p *proc, open func() net.Conn) {
	pid := p.cmd.Process.Pid
	before := rss(b, pid)
	conns := make([]net.Conn, 0, b.N)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	b.ResetTimer()
	for range b.N {
		conns = append(conns, open())
	}
	testkit.WaitFor(b, 30*time.Second, "the sockets to be accepted", func() bool { return openFiles(pid) >= b.N })
	b.StopTimer()
	b.ReportMetric(float64(rss(b, pid)-before)/float64(b.N), "rss-bytes/socket")
}

// rss is a process's resident memory in bytes.
func rss(b *testing.B, pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	b.Fatal("no VmRSS")
	return 0
}

// cpuTime is a process's user+system CPU time in ns (clock ticks of 10ms).
func cpuTime(b *testing.B, p *proc) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	f := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return (ut + st) * int64(10*time.Millisecond)
}
