package mqtt

import (
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/mqkafka/mqkafka/third_party/mochi/packets"
)

// allowHook lets every client connect, publish and subscribe (hooks/auth's
// AllowHook imports this package).
type allowHook struct{ HookBase }

func (*allowHook) ID() string { return "allow" }

func (*allowHook) Provides(b byte) bool { return b == OnConnectAuthenticate || b == OnACLCheck }

func (*allowHook) OnConnectAuthenticate(*Client, packets.Packet) bool { return true }

func (*allowHook) OnACLCheck(*Client, string, bool) bool { return true }

// FuzzMqkafkaSession: no bytes an MQTT 5 or 3.1.1 client sends after a
// valid CONNECT make the server panic (which ends the process).
func FuzzMqkafkaSession(f *testing.F) {
	s := New(&Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := s.AddHook(new(allowHook), nil); err != nil {
		f.Fatal(err)
	}
	var n atomic.Int64
	connect := map[bool][]byte{
		true:  {0x10, 14, 0, 4, 'M', 'Q', 'T', 'T', 5, 0x02, 0, 30, 0, 0, 1, 'c'},
		false: {0x10, 13, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 30, 0, 1, 'c'},
	}
	f.Add(true, []byte{0x82, 9, 0, 1, 0, 0, 3, 'a', '/', 'b', 0})
	f.Add(true, []byte{0x32, 8, 0, 1, 't', 0, 1, 3, 0x23, 0, 1, 0x62, 2, 0, 1})
	f.Add(false, []byte{0x82, 8, 0, 1, 0, 3, 'a', '/', 'b', 1, 0x30, 4, 0, 1, 't', 'x'})
	f.Fuzz(func(t *testing.T, v5 bool, data []byte) {
		near, far := net.Pipe()
		cl := s.NewClient(near, "fuzz", "", false)
		go func() { _, _ = io.Copy(io.Discard, far) }()
		go func() {
			in := append([]byte{}, connect[v5]...)
			in[len(in)-1] = 'a' + byte(n.Add(1)%26) // a few client ids: take-overs too
			_, _ = far.Write(append(in, data...))
			_ = far.Close()
		}()
		_ = s.attachClient(cl, "fuzz-"+strconv.FormatBool(v5))
	})
}
