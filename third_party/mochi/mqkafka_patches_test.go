package mqtt

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqkafka/mqkafka/third_party/mochi/packets"
)

// TestMqkafkaWriteEncodedAfterBuffered: packets WritePacket left in the
// client's write buffer (it buffers while messages to the client are
// queued) go out before what WriteEncoded writes, so PUBACKs keep their
// order.
func TestMqkafkaWriteEncodedAfterBuffered(t *testing.T) {
	near, far := net.Pipe()
	defer near.Close()
	defer far.Close()
	s := New(nil)
	cl := s.NewClient(near, "t", "c1", false)
	cl.Net.outbuf = bytes.NewBuffer([]byte{0x40, 2, 0, 1})
	done := make(chan error, 1)
	go func() { done <- cl.WriteEncoded([]byte{0x40, 2, 0, 2}, 1, 5*time.Second) }()
	_ = far.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, 8)
	if _, err := io.ReadFull(far, got); err != nil {
		t.Fatal(err)
	}
	if want := []byte{0x40, 2, 0, 1, 0x40, 2, 0, 2}; !bytes.Equal(got, want) {
		t.Fatalf("wrote % x, want % x", got, want)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if cl.Net.outbuf != nil {
		t.Fatal("write buffer not flushed")
	}
}

// failingHook fails every publish, as a hook that refuses one does.
type failingHook struct{ HookBase }

func (h *failingHook) ID() string { return "failing" }
func (h *failingHook) Provides(b byte) bool {
	return b == OnPublish || b == OnACLCheck
}
func (h *failingHook) OnACLCheck(*Client, string, bool) bool { return true }
func (h *failingHook) OnPublish(_ *Client, pk packets.Packet) (packets.Packet, error) {
	return pk, errors.New("refused")
}

// TestMqkafkaLogNoPayload: the lines logged for a publish the server or a
// hook refuses carry neither its payload nor more of the client id or
// topic than logMaxString; upstream logged the whole packet (a 900 KB
// payload made a 2.7 MB line).
func TestMqkafkaLogNoPayload(t *testing.T) {
	var logs bytes.Buffer
	s := New(&Options{Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err := s.AddHook(new(failingHook), nil); err != nil {
		t.Fatal(err)
	}
	near, far := net.Pipe()
	defer near.Close()
	defer far.Close()
	long := strings.Repeat("i", 65000)
	cl := s.NewClient(near, "t", long, false)
	cl.Properties.ProtocolVersion = 4
	cl.State.Inflight.ResetReceiveQuota(10)
	go func() { _, _ = io.Copy(io.Discard, far) }()
	payload := bytes.Repeat([]byte("PAYLOADMARK"), 900_000/11)
	for _, topic := range []string{"t/+", "t/" + long} {
		pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: topic, Payload: payload}
		_ = s.receivePacket(cl, pk)
	}
	out := logs.String()
	if strings.Contains(out, "PAYLOADMARK") || strings.Contains(out, "80 65 89") {
		t.Fatal("the payload was logged")
	}
	for _, msg := range []string{"error processing packet", "publish packet error"} {
		if !strings.Contains(out, msg) {
			t.Errorf("no %q line:\n%.2000s", msg, out)
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if len(line) > 1024 {
			t.Errorf("a %d-byte line: %.300s...", len(line), line)
		}
	}
}

// TestMqkafkaLogLevels: a publish a hook refuses logs nothing above debug
// (mqkafka's hooks log their refusals), and messages dropped for a full
// in-flight store log one warning a second, not one per message.
func TestMqkafkaLogLevels(t *testing.T) {
	var logs bytes.Buffer
	s := New(&Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err := s.AddHook(new(failingHook), nil); err != nil {
		t.Fatal(err)
	}
	near, far := net.Pipe()
	defer near.Close()
	defer far.Close()
	go func() { _, _ = io.Copy(io.Discard, far) }()
	cl := s.NewClient(near, "t", "c1", false)
	cl.Properties.ProtocolVersion = 4
	cl.State.Inflight.ResetReceiveQuota(10)
	_ = s.receivePacket(cl, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: "t"})
	if strings.Contains(logs.String(), "publish packet error") {
		t.Fatalf("a refused publish logged above debug:\n%s", logs.String())
	}

	s.Options.Capabilities.MaximumInflight = 1
	cl.State.Inflight.Set(packets.Packet{PacketID: 1})
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, TopicName: "t"}
	for range 5 {
		if _, err := s.publishToClient(cl, packets.Subscription{Filter: "t", Qos: 1}, pk); !errors.Is(err, packets.ErrQuotaExceeded) {
			t.Fatalf("publish to a full in-flight store: %v", err)
		}
	}
	if n := strings.Count(logs.String(), "client store quota reached"); n != 1 || !strings.Contains(logs.String(), "logged at most once a second") {
		t.Fatalf("%d warnings for 5 drops within a second:\n%s", n, logs.String())
	}
	if n := s.Info.InflightDropped; n != 5 {
		t.Fatalf("InflightDropped %d, want 5", n)
	}
}

// TestMqkafkaSubscribeCutShort: an MQTT 5 SUBSCRIBE that ends after its
// filter, without the options byte, is malformed; upstream read past the
// buffer and the panic ended the process (upstream issue #501).
func TestMqkafkaSubscribeCutShort(t *testing.T) {
	body := []byte{0, 1, 0, 0, 1, '#'} // packet id, no properties, filter "#"
	for _, v := range []byte{4, 5} {
		pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1, Remaining: len(body)}, ProtocolVersion: v}
		if err := decodePacket(&pk, body); err == nil {
			t.Errorf("MQTT %d: decoded % x", v, body)
		}
	}
}

// TestMqkafkaReadRemainingGrowsWithData: a packet announcing a large length
// holds memory in proportion to the bytes that arrived, not the length.
func TestMqkafkaReadRemainingGrowsWithData(t *testing.T) {
	const announced = 1 << 20
	for _, sent := range []int{0, 10, readChunk, 3 * readChunk, announced} {
		p, err := readRemaining(bytes.NewReader(make([]byte, sent)), announced)
		if sent < announced && err == nil {
			t.Fatalf("sent %d of %d: no error", sent, announced)
		}
		if sent == announced && (err != nil || len(p) != announced) {
			t.Fatalf("whole packet: %d bytes, %v", len(p), err)
		}
		if len(p) != sent {
			t.Fatalf("sent %d: read %d", sent, len(p))
		}
		if limit := 2*sent + readChunk; cap(p) > limit {
			t.Fatalf("sent %d of %d: holds %d bytes, want at most %d", sent, announced, cap(p), limit)
		}
	}
}

// TestMqkafkaSubscribersAllocatesOnlyForMatches: every publish asks the
// index for its subscribers; when nothing matches (a bridge-only broker) that
// must cost no maps, and a shared subscription still gets a SharedSelected
// map for OnSelectSubscribers to fill.
func TestMqkafkaSubscribersAllocatesOnlyForMatches(t *testing.T) {
	index := NewTopicsIndex()
	index.Subscribe("cl1", packets.Subscription{Filter: "other/topic"})
	// Kept outside the closure, the result escapes as it does in
	// publishToSubscribers (hooks get it).
	var subs *Subscribers
	allocs := testing.AllocsPerRun(100, func() {
		subs = index.Subscribers("bench/device/1")
	})
	if len(subs.Subscriptions)+len(subs.Shared)+len(subs.InlineSubscriptions) != 0 {
		t.Fatal("matched a subscription on another topic")
	}
	if allocs > 1 {
		t.Fatalf("Subscribers without a match made %v allocations, want at most 1 (the struct)", allocs)
	}

	index.Subscribe("cl2", packets.Subscription{Filter: SharePrefix + "/grp/bench/#"})
	index.Subscribe("cl3", packets.Subscription{Filter: "bench/+/1"})
	subs = index.Subscribers("bench/device/1")
	if len(subs.Shared) != 1 || subs.SharedSelected == nil {
		t.Fatalf("shared subscribers %v, selected map %v", subs.Shared, subs.SharedSelected)
	}
	subs.SelectShared()
	subs.MergeSharedSelected()
	if _, ok := subs.Subscriptions["cl2"]; !ok || len(subs.Subscriptions) != 2 {
		t.Fatalf("merged subscriptions %v, want cl2 and cl3", subs.Subscriptions)
	}
}

func TestMqkafkaSubscribed(t *testing.T) {
	x := NewTopicsIndex()
	require.False(t, x.Subscribed("a/+"))
	x.Subscribe("c1", packets.Subscription{Filter: "a/+"})
	x.Subscribe("c1", packets.Subscription{Filter: SharePrefix + "/g/a/+"})
	require.True(t, x.Subscribed("a/+"))
	require.True(t, x.Subscribed(SharePrefix+"/g/a/+"))
	require.False(t, x.Subscribed(SharePrefix+"/h/a/+"))
	require.False(t, x.Subscribed("a"))
	x.Unsubscribe("a/+", "c1")
	require.False(t, x.Subscribed("a/+"))
	require.True(t, x.Subscribed(SharePrefix+"/g/a/+"))
	x.Unsubscribe(SharePrefix+"/g/a/+", "c1")
	require.False(t, x.Subscribed(SharePrefix+"/g/a/+"))
}

// selectAll records the topics it was asked to select subscribers for.
type selectAll struct {
	HookBase
	topics []string
}

func (h *selectAll) ID() string           { return "select-all" }
func (h *selectAll) Provides(b byte) bool { return b == OnSelectSubscribers }
func (h *selectAll) OnSelectSubscribers(subs *Subscribers, pk packets.Packet) *Subscribers {
	h.topics = append(h.topics, pk.TopicName)
	return subs
}

func TestMqkafkaSelectSubscribersEveryPublish(t *testing.T) {
	s := newServer()
	h := new(selectAll)
	require.NoError(t, s.AddHook(h, nil))
	s.publishToSubscribers(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: "no/subscriber"})
	require.Equal(t, []string{"no/subscriber"}, h.topics)
}

func TestMqkafkaUnsubscribeReportsExisted(t *testing.T) {
	x := NewTopicsIndex()
	require.True(t, x.Subscribe("c1", packets.Subscription{Filter: "a/b"}))
	require.False(t, x.Unsubscribe("a/b", "c2"), "c2 never subscribed")
	require.True(t, x.Unsubscribe("a/b", "c1"))
	require.False(t, x.Unsubscribe("a/b", "c1"), "already gone")

	require.True(t, x.Subscribe("n1", packets.Subscription{Filter: "$SHARE/g/a/#"}))
	require.False(t, x.Subscribe("n1", packets.Subscription{Filter: SharePrefix + "/g/a/#"}), "one entry for both spellings")
	require.False(t, x.Unsubscribe(SharePrefix+"/g/a/#", "n2"), "n2 is no member")
	require.True(t, x.Unsubscribe(SharePrefix+"/g/a/#", "n1"))
	require.False(t, x.Unsubscribe("$SHARE/g/a/#", "n1"), "the entry both spellings shared is gone")
}
