package broker

import (
	"fmt"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

// TestAttackSubscriptionsPerClient: one SUBSCRIBE may carry tens of
// thousands of filters and each costs about 1.2KB for as long as the
// session lives (200,000 filters in ten packets took 245MB of heap), so a
// session holds at most max_subscriptions: a new filter past it gets 0x97
// (MQTT 3.1.1: 0x80) and is counted; renewing one it holds is allowed.
func TestAttackSubscriptionsPerClient(t *testing.T) {
	b, _ := startBroker(t, brokerConfig(t, fmt.Sprintf(`[broker]
data_dir = %q
persistence = false
listeners = [{ address = "127.0.0.1:0" }]
max_subscriptions = 100
[broker.auth]
allow_anonymous = true
`, t.TempDir())))
	subscribe := func(c *rawClient, id uint16, filters ...string) []byte {
		t.Helper()
		pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: id}
		for _, f := range filters {
			pk.Filters = append(pk.Filters, packets.Subscription{Filter: f, Qos: 1})
		}
		c.put(pk)
		return c.expect(packets.Suback).ReasonCodes
	}
	many := func(prefix string, n int) []string {
		fs := make([]string, n)
		for i := range fs {
			fs[i] = fmt.Sprintf("%s/%d", prefix, i)
		}
		return fs
	}

	for _, v := range []byte{5, 4} {
		c, _ := session(t, b.Addrs()[0], packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: v,
			Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), Clean: true, Keepalive: 30, ClientIdentifier: fmt.Sprintf("subber%d", v)}})
		refused := map[byte]byte{5: 0x97, 4: 0x80}[v]
		codes := subscribe(c, 1, many("a", 150)...)
		for i, code := range codes {
			if want := map[bool]byte{true: 1, false: refused}[i < 100]; code != want {
				t.Fatalf("v%d: filter %d of 150 got %#x, want %#x", v, i, code, want)
			}
		}
		// Held filters renew; new ones stay refused, also in later packets.
		codes = subscribe(c, 2, "a/0", "a/99", "b/0")
		if codes[0] != 1 || codes[1] != 1 || codes[2] != refused {
			t.Fatalf("v%d: renew a/0, a/99 and new b/0: got %#x, want [1 1 %#x]", v, codes, refused)
		}
	}
	if got := b.Refused()[reasonSubs]; got != 2*51 {
		t.Fatalf("refused %s = %d, want %d", reasonSubs, got, 2*51)
	}
}
