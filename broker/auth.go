package broker

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mqkafka/mqkafka/third_party/mochi"
	"github.com/mqkafka/mqkafka/third_party/mochi/packets"
	"golang.org/x/crypto/bcrypt"

	"github.com/mqkafka/mqkafka/conf"
	"github.com/mqkafka/mqkafka/internal/logx"
)

// authenticator checks user names and passwords against bcrypt hashes.
//
// A bcrypt comparison costs 50–100 ms of CPU at cost 10, so every verdict
// is remembered, keyed by an HMAC of (user name, password) under a key made
// at start: a reconnect storm, or a device retrying a wrong password in a
// loop, costs one comparison per distinct pair, and the cache holds nothing
// a password could be recovered from. The users cannot change while the
// process runs, so a remembered verdict is the one bcrypt would give.
type authenticator struct {
	anonymous bool
	users     map[string][]byte // user name → bcrypt hash
	// dummy is compared against for unknown users, so that the time an
	// answer takes does not tell which user names exist.
	dummy []byte

	// slots bounds concurrent comparisons to half the cores, so that a
	// flood of wrong passwords leaves the other half to the clients that
	// are in; queued bounds the CONNECTs in or waiting for a slot, so that
	// the queue's goroutines and memory, and the wait in it, are bounded.
	slots   chan struct{}
	queued  atomic.Int64
	compare func(hash, password []byte) error

	key   [32]byte
	mu    sync.Mutex
	cache [2]map[[32]byte]bool // current and previous generation
}

// cacheGeneration is how many verdicts a generation holds; when the current
// one is full it becomes the previous one, so the cache stays bounded and
// keeps the pairs in use.
const cacheGeneration = 1 << 15

// authQueuePerSlot is how many CONNECTs may wait per comparison slot: at
// bcrypt's default cost (50–100 ms) the last of them waits about a second.
const authQueuePerSlot = 16

func newAuthenticator(a conf.BrokerAuth) (*authenticator, error) {
	au := &authenticator{
		anonymous: a.AllowAnonymous,
		users:     map[string][]byte{},
		slots:     make(chan struct{}, max(1, runtime.GOMAXPROCS(0)/2)),
		compare:   bcrypt.CompareHashAndPassword,
		cache:     [2]map[[32]byte]bool{{}, {}},
	}
	for _, u := range a.Accounts() {
		au.users[u.Username] = []byte(u.PasswordHash)
	}
	if _, err := rand.Read(au.key[:]); err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	var pw [16]byte
	if _, err := rand.Read(pw[:]); err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	// At the users' cost, so that the dummy takes as long as a real check.
	cost := bcrypt.DefaultCost
	for _, h := range au.users {
		if c, err := bcrypt.Cost(h); err == nil {
			cost = c
			break
		}
	}
	if len(au.users) > 0 {
		h, err := bcrypt.GenerateFromPassword(pw[:], cost)
		if err != nil {
			return nil, fmt.Errorf("broker: %w", err)
		}
		au.dummy = h
	}
	return au, nil
}

// refusesAll reports whether no client can ever connect.
func (au *authenticator) refusesAll() bool { return !au.anonymous && len(au.users) == 0 }

// check decides a CONNECT. A client without a user name is anonymous; with
// no users configured, user names are not checked at all. It reports busy,
// without a verdict, when the pair needs a comparison and the slots and
// their queue are full; a remembered verdict never waits.
func (au *authenticator) check(username, password []byte) (ok, busy bool) {
	if len(username) == 0 || len(au.users) == 0 {
		return au.anonymous, false
	}
	k := au.cacheKey(username, password)
	au.mu.Lock()
	ok, hit := au.cache[0][k]
	if !hit {
		ok, hit = au.cache[1][k]
	}
	au.mu.Unlock()
	if hit {
		return ok, false
	}
	if au.queued.Add(1) > int64(cap(au.slots)*(1+authQueuePerSlot)) {
		au.queued.Add(-1)
		return false, true
	}
	hash, known := au.users[string(username)]
	if !known {
		hash = au.dummy
	}
	au.slots <- struct{}{}
	ok = au.compare(hash, password) == nil && known
	<-au.slots
	au.queued.Add(-1)
	au.mu.Lock()
	if len(au.cache[0]) >= cacheGeneration {
		au.cache[1], au.cache[0] = au.cache[0], make(map[[32]byte]bool, cacheGeneration)
	}
	au.cache[0][k] = ok
	au.mu.Unlock()
	return ok, false
}

func (au *authenticator) cacheKey(username, password []byte) [32]byte {
	m := hmac.New(sha256.New, au.key[:])
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(username)))
	m.Write(n[:])
	m.Write(username)
	m.Write(password)
	var k [32]byte
	m.Sum(k[:0])
	return k
}

// accessHook is the broker's only authentication and ACL hook (mochi lets
// any hook that says yes win), and applies the keepalive bounds and the
// CONNACK properties mochi does not send itself.
type accessHook struct {
	mqtt.HookBase
	srv  *mqtt.Server
	auth *authenticator
	acl  *acl // nil: every authenticated client may do anything
	log  *slog.Logger
	// refused counts the CONNECTs refused: a bad user name or password, a
	// full authentication queue, a session another user owns.
	refused *refusals

	// sessionOwner: a session belongs to the user name that made it
	// (session_owner_check).
	sessionOwner bool

	minKeepalive, maxKeepalive uint16 // seconds, 0: no bound
	maxPacketSize              uint32
	maxTopicAlias              uint16
	retainAvailable            bool

	// drain waits for a client's deferred PUBACKs, which mochi's answer to a
	// denied publish must not overtake.
	drain func(*mqtt.Client)

	denied      atomic.Int64 // publishes the ACL refused
	lastDenial  atomic.Int64 // unix ns of the last denial logged
	lastRefusal atomic.Int64 // unix ns of the last refused CONNECT logged
}

func newAccessHook(srv *mqtt.Server, cfg conf.Broker, log *slog.Logger) (*accessHook, error) {
	au, err := newAuthenticator(cfg.Auth)
	if err != nil {
		return nil, err
	}
	return &accessHook{
		srv:             srv,
		auth:            au,
		acl:             newACL(cfg.ACL),
		log:             log,
		minKeepalive:    uint16(cfg.MinKeepalive / time.Second),
		maxKeepalive:    uint16(cfg.MaxKeepalive / time.Second),
		maxPacketSize:   uint32(cfg.MaxPacketSize),
		maxTopicAlias:   uint16(cfg.MaxTopicAlias),
		retainAvailable: cfg.RetainAvailable,
		sessionOwner:    cfg.SessionOwnerCheck,
	}, nil
}

func (h *accessHook) ID() string { return "mqkafka-access" }

func (h *accessHook) Provides(b byte) bool {
	return b == mqtt.OnConnect || b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck || b == mqtt.OnPacketEncode ||
		(b == mqtt.OnSessionInherit && h.sessionOwner)
}

// OnConnect applies the keepalive bounds, then checks the user name and
// password. It answers the CONNACK of a refusal itself, so that a full
// authentication queue is told apart from a wrong password.
func (h *accessHook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	// There is no enhanced authentication: a client that asks for it must
	// be refused (MQTT 5 3.1.2.11.9), not let in without it.
	if cl.Properties.ProtocolVersion == 5 && pk.Properties.AuthenticationMethod != "" {
		if err := h.srv.SendConnack(cl, packets.ErrBadAuthenticationMethod, false, nil); err != nil {
			return fmt.Errorf("authentication method refused: %w", err)
		}
		return packets.ErrBadAuthenticationMethod
	}
	if err := h.boundKeepalive(cl); err != nil {
		return err
	}
	ok, busy := h.auth.check(pk.Connect.Username, pk.Connect.Password)
	if ok {
		return nil
	}
	code, reason, why := packets.ErrBadUsernameOrPassword, reasonBadPassword, "bad user name or password"
	if busy {
		code, reason, why = packets.ErrServerBusy, reasonAuthBusy, "too many CONNECTs wait for a password check"
	}
	h.refused.add(reason)
	if logx.Allowed(&h.lastRefusal) {
		h.log.Info("client refused: "+why+" (logged at most once a second)", "client", cl.ID,
			"username", string(pk.Connect.Username), "remote", cl.Net.Remote)
	}
	reply := code
	if busy && cl.Properties.ProtocolVersion < 5 {
		reply = packets.ErrServerUnavailable // MQTT 3.1.1 has no "server busy"
	}
	if err := h.srv.SendConnack(cl, reply, false, nil); err != nil {
		return fmt.Errorf("%s: %w", why, err)
	}
	return code
}

// Refusal reasons of the password check.
const (
	reasonBadPassword = "bad_username_or_password"
	reasonAuthBusy    = "auth_busy"
)

// boundKeepalive applies min_keepalive and max_keepalive. An MQTT 5 client
// is told the keepalive to use; an MQTT 3 client cannot be, so one asking
// for more than max_keepalive (or none) is refused, as mosquitto does,
// rather than dropped later for a silence it was allowed.
func (h *accessHook) boundKeepalive(cl *mqtt.Client) error {
	ka := cl.State.Keepalive
	want := ka
	if h.maxKeepalive > 0 && (ka == 0 || ka > h.maxKeepalive) {
		want = h.maxKeepalive
	}
	if h.minKeepalive > 0 && ka > 0 && ka < h.minKeepalive {
		want = h.minKeepalive
	}
	if want == ka {
		return nil
	}
	if cl.Properties.ProtocolVersion < 5 && (ka == 0 || want < ka) {
		if logx.Allowed(&h.lastRefusal) {
			h.log.Info("MQTT 3 client refused: its keepalive is above max_keepalive (0 means none; logged at most once a second)",
				"client", cl.ID, "remote", cl.Net.Remote, "keepalive", ka, "max_keepalive", h.maxKeepalive)
		}
		if err := h.srv.SendConnack(cl, packets.ErrClientIdentifierNotValid, false, nil); err != nil {
			return fmt.Errorf("keepalive refused: %w", err)
		}
		return fmt.Errorf("keepalive %ds above max_keepalive %ds", ka, h.maxKeepalive)
	}
	// Below min_keepalive only the broker's own timeout needs to grow.
	cl.State.Keepalive = want
	cl.State.ServerKeepalive = cl.Properties.ProtocolVersion == 5
	return nil
}

// OnConnectAuthenticate lets in the clients OnConnect let through: mochi
// refuses every client unless a hook says yes.
func (h *accessHook) OnConnectAuthenticate(*mqtt.Client, packets.Packet) bool { return true }

// OnSessionInherit lets a client resume, take over or discard (clean start)
// a session only if both connected with the same user name: the session's
// subscriptions and queued messages were granted to its owner, and a client
// id is no secret. Anonymous clients share the user name "", so they can take
// over each other's sessions, as the ACL cannot tell them apart anyway.
func (h *accessHook) OnSessionInherit(cl, existing *mqtt.Client) bool {
	if bytes.Equal(cl.Properties.Username, existing.Properties.Username) {
		return true
	}
	h.refused.add("session_owner")
	if logx.Allowed(&h.lastRefusal) {
		h.log.Info("client refused: its client id belongs to another user's session (logged at most once a second)",
			"client", cl.ID, "username", string(cl.Properties.Username), "remote", cl.Net.Remote)
	}
	return false
}

// OnACLCheck applies [[broker.acl]]. mochi asks before a publish reaches
// OnPublish, so a denied publish never reaches a rule or sink; it is
// counted here.
func (h *accessHook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if h.acl == nil || h.acl.allowed(string(cl.Properties.Username), cl.ID, topic, write) {
		return true
	}
	if write {
		if h.drain != nil {
			h.drain(cl)
		}
		h.denied.Add(1)
		if logx.Allowed(&h.lastDenial) {
			h.log.Warn("publish denied by ACL (logged at most once a second)", "client", cl.ID,
				"username", string(cl.Properties.Username), "topic", topic)
		}
	}
	return false
}

// OnPacketEncode tells MQTT 5 clients the maximum packet size, the topic
// alias maximum and whether retained messages are available, which mochi's
// CONNACK leaves out: a client told nothing may send packets of any size
// but may use no topic alias.
func (h *accessHook) OnPacketEncode(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if pk.FixedHeader.Type != packets.Connack || cl.Properties.ProtocolVersion != 5 || pk.ReasonCode >= packets.ErrUnspecifiedError.Code {
		return pk
	}
	pk.Properties.MaximumPacketSize = h.maxPacketSize
	pk.Properties.TopicAliasMaximum = h.maxTopicAlias
	if !h.retainAvailable {
		pk.Properties.RetainAvailable, pk.Properties.RetainAvailableFlag = 0, true
	}
	return pk
}
