package broker

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mqkafka/mqkafka/third_party/mochi/packets"
	"golang.org/x/crypto/bcrypt"

	"github.com/mqkafka/mqkafka/conf"
	"github.com/mqkafka/mqkafka/internal/testkit"
)

func mustHash(t testing.TB, pw string) conf.Secret {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return conf.Secret(h)
}

func TestAuthenticator(t *testing.T) {
	users := []conf.User{{Username: "u1", PasswordHash: mustHash(t, "p1")}, {Username: "u2", PasswordHash: mustHash(t, "p2")}}
	for _, tc := range []struct {
		anonymous bool
		users     []conf.User
		user, pw  string
		want      bool
	}{
		{false, nil, "", "", false},
		{false, nil, "u1", "p1", false},
		{true, nil, "", "", true},
		{true, nil, "anyone", "anything", true}, // no users: names are not checked
		{false, users, "u1", "p1", true},
		{false, users, "u2", "p2", true},
		{false, users, "u1", "p2", false},
		{false, users, "nobody", "p1", false},
		{false, users, "", "", false},
		{true, users, "", "", true},
		{true, users, "u1", "bad", false}, // a name given must be right
		{true, users, "nobody", "p1", false},
	} {
		au, err := newAuthenticator(conf.BrokerAuth{AllowAnonymous: tc.anonymous, Users: tc.users})
		if err != nil {
			t.Fatal(err)
		}
		for range 2 { // the second answer comes from the cache
			if got, _ := au.check([]byte(tc.user), []byte(tc.pw)); got != tc.want {
				t.Errorf("anonymous %v, %d users: check(%q, %q) = %v, want %v", tc.anonymous, len(tc.users), tc.user, tc.pw, got, tc.want)
			}
		}
	}
}

func TestAuthenticatorCachesVerdicts(t *testing.T) {
	au, err := newAuthenticator(conf.BrokerAuth{Users: []conf.User{{Username: "u", PasswordHash: mustHash(t, "right")}}})
	if err != nil {
		t.Fatal(err)
	}
	var compares atomic.Int64
	au.compare = func(h, pw []byte) error { compares.Add(1); return bcrypt.CompareHashAndPassword(h, pw) }
	for range 100 {
		if !verdict(au, "u", "right") || verdict(au, "u", "wrong") || verdict(au, "x", "right") {
			t.Fatal("wrong verdict")
		}
	}
	if n := compares.Load(); n != 3 {
		t.Fatalf("%d bcrypt comparisons for 3 distinct (user, password) pairs, want 3", n)
	}
	// (user, password) boundaries are part of the key.
	if verdict(au, "ur", "ight") {
		t.Fatal("a shifted split of the same bytes was accepted")
	}
	// The cache stays bounded.
	au.compare = func([]byte, []byte) error { return bcrypt.ErrMismatchedHashAndPassword }
	for i := range 2*cacheGeneration + 1 {
		au.check([]byte("u"), []byte{byte(i), byte(i >> 8), byte(i >> 16)})
	}
	if n := len(au.cache[0]) + len(au.cache[1]); n > 2*cacheGeneration {
		t.Fatalf("cache holds %d verdicts, more than %d", n, 2*cacheGeneration)
	}
}

func verdict(au *authenticator, user, pw string) bool {
	ok, _ := au.check([]byte(user), []byte(pw))
	return ok
}

// TestWrongPasswordFlood: CONNECTs whose passwords need a bcrypt comparison
// wait for one of a bounded number of places; past them a CONNECT is
// refused at once with "server busy" (MQTT 3.1.1: server unavailable) and
// counted, a client whose verdict is remembered connects meanwhile, and
// every wrong password is counted.
func TestWrongPasswordFlood(t *testing.T) {
	release := make(chan struct{})
	var compared atomic.Int64
	b := startBrokerWith(t, brokerConfig(t, fmt.Sprintf("[broker]\ndata_dir = %q\nlisteners = [{ address = \"127.0.0.1:0\" }]\n[[broker.auth.users]]\nusername = \"u\"\npassword_hash = %q\n",
		t.TempDir(), string(mustHash(t, "right")))), &recorder{}, func(b *Broker) {
		real := b.access.auth.compare
		b.access.auth.compare = func(h, pw []byte) error {
			if string(pw) != "right" {
				compared.Add(1)
				<-release // a slow comparison
			}
			return real(h, pw)
		}
	})
	var releaseOnce sync.Once
	unblock := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(unblock) // before the broker closes, which waits for every CONNECT
	addr := b.Addrs()[0]
	connect := func(v byte, id, pw string) *rawClient {
		c := rawOn(t, dial(t, addr), v)
		c.put(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, Connect: packets.ConnectParams{
			ProtocolName: []byte("MQTT"), Clean: true, Keepalive: 30, ClientIdentifier: id,
			UsernameFlag: true, Username: []byte("u"), PasswordFlag: true, Password: []byte(pw)}})
		return c
	}
	if code := connect(5, "known", "right").expect(packets.Connack).ReasonCode; code != 0 {
		t.Fatalf("right password: CONNACK %#x", code)
	}
	places := cap(b.access.auth.slots) * (1 + authQueuePerSlot)
	var waiting []*rawClient
	for i := range places {
		waiting = append(waiting, connect(5, fmt.Sprintf("w%d", i), fmt.Sprintf("wrong%d", i)))
	}
	testkit.WaitFor(t, 5*time.Second, "the queue to fill", func() bool { return b.access.auth.queued.Load() == int64(places) })
	if code := connect(5, "v5", "wrong-v5").expect(packets.Connack).ReasonCode; code != packets.ErrServerBusy.Code {
		t.Fatalf("MQTT 5 CONNECT past the queue: CONNACK %#x, want %#x", code, packets.ErrServerBusy.Code)
	}
	if code := connect(4, "v4", "wrong-v4").expect(packets.Connack).ReasonCode; code != packets.Err3ServerUnavailable.Code {
		t.Fatalf("MQTT 3.1.1 CONNECT past the queue: return code %#x, want %#x", code, packets.Err3ServerUnavailable.Code)
	}
	if code := connect(5, "known2", "right").expect(packets.Connack).ReasonCode; code != 0 {
		t.Fatalf("remembered right password while the queue is full: CONNACK %#x", code)
	}
	unblock()
	for _, c := range waiting {
		if code := c.expect(packets.Connack).ReasonCode; code != packets.ErrBadUsernameOrPassword.Code {
			t.Fatalf("queued wrong password: CONNACK %#x", code)
		}
	}
	refused := b.Refused()
	if refused[reasonAuthBusy] != 2 || refused[reasonBadPassword] != int64(places) || compared.Load() != int64(places) {
		t.Fatalf("refused %v after %d comparisons, want %s 2 and %s %d", refused, compared.Load(), reasonAuthBusy, reasonBadPassword, places)
	}
}
