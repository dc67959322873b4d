package broker

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mqkafka/mqkafka/third_party/mochi"
	"github.com/mqkafka/mqkafka/third_party/mochi/hooks/storage"
	"github.com/mqkafka/mqkafka/third_party/mochi/packets"
	"github.com/mqkafka/mqkafka/third_party/mochi/system"
	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/mqkafka/mqkafka/internal/logx"
)

// StoreDir is where a data dir keeps the broker's sessions, subscriptions,
// in-flight and retained messages; the sinks' buffers are elsewhere.
func StoreDir(dataDir string) string { return filepath.Join(dataDir, "mqtt") }

const (
	storeFile   = "sessions.db"
	storeBucket = "mochi"
	// maxBatch bounds the operations one bbolt transaction commits.
	maxBatch = 4096
)

// storeHook keeps mochi's session state in a bbolt file, in the records and
// keys of mochi's own bolt hook (which loses in-flight packet ids and so
// restores one message per session). Unlike that hook, it does not commit (and
// fsync) a transaction per change: changes are queued in order and a single
// writer commits whatever has accumulated in one transaction, so a QoS 1
// flow costs a share of an fsync instead of two. mochi acknowledges a
// publisher before it queues the message for subscribers anyway, so a
// synchronous commit would not close the window a crash leaves; a graceful
// stop commits everything.
type storeHook struct {
	mqtt.HookBase
	db  *bbolt.DB
	srv *mqtt.Server // set before Serve; restored state is counted from it
	log *slog.Logger

	mu     sync.RWMutex // guards closed against sends on ops
	closed bool
	ops    chan storeOp
	done   chan struct{}

	lastErr atomic.Int64 // unix ns of the last write error logged
}

// storeOp is one change: a put, a delete (val nil), everything of a client
// (client set), or a flush barrier (flushed set).
type storeOp struct {
	key     string
	val     []byte
	client  string
	flushed chan struct{}
}

// openStore opens (creating it) <dir>/sessions.db and starts its writer.
func openStore(dir string, log *slog.Logger) (*storeHook, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("session store: %w", err)
	}
	path := filepath.Join(dir, storeFile)
	// The freelist is rebuilt at open rather than written at every commit.
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second, NoFreelistSync: true, FreelistType: bbolt.FreelistMapType})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("session store %s is locked: is another mqkafka using this data_dir?", path)
	}
	if err != nil {
		return nil, fmt.Errorf("session store %s: %w", path, err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists([]byte(storeBucket))
		return err
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("session store %s: %w", path, err)
	}
	h := &storeHook{db: db, log: log, ops: make(chan storeOp, maxBatch), done: make(chan struct{})}
	go h.write()
	return h, nil
}

func (h *storeHook) ID() string { return "mqkafka-store" }

func (h *storeHook) Provides(b byte) bool {
	switch b {
	case mqtt.OnSessionEstablished, mqtt.OnDisconnect, mqtt.OnSubscribed, mqtt.OnUnsubscribed,
		mqtt.OnRetainMessage, mqtt.OnWillSent, mqtt.OnQosPublish, mqtt.OnQosComplete, mqtt.OnQosDropped,
		mqtt.OnClientExpired, mqtt.OnRetainedExpired,
		mqtt.StoredClients, mqtt.StoredSubscriptions, mqtt.StoredInflightMessages,
		mqtt.StoredRetainedMessages, mqtt.StoredSysInfo:
		return true
	}
	return false
}

// Init is a no-op: openStore did the work, so that its errors are ours.
func (h *storeHook) Init(any) error { return nil }

// Stop commits what is queued and closes the file. Changes arriving later
// (a client goroutine finishing after the broker closed) are dropped.
func (h *storeHook) Stop() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	close(h.ops)
	h.mu.Unlock()
	<-h.done
	if err := h.db.Close(); err != nil {
		return fmt.Errorf("session store: %w", err)
	}
	return nil
}

func (h *storeHook) send(op storeOp) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if h.closed {
		if op.flushed != nil {
			close(op.flushed)
		}
		return
	}
	h.ops <- op
}

// flush waits until every change queued before it is committed.
func (h *storeHook) flush() {
	ch := make(chan struct{})
	h.send(storeOp{flushed: ch})
	<-ch
}

func (h *storeHook) put(key string, v storage.Serializable) {
	data, err := v.MarshalBinary()
	if err != nil {
		h.writeFailed(key, err)
		return
	}
	h.send(storeOp{key: key, val: data})
}

func (h *storeHook) del(key string) { h.send(storeOp{key: key}) }

// write is the single writer: it commits each batch of queued changes, in
// order, in one transaction.
func (h *storeHook) write() {
	defer close(h.done)
	batch := make([]storeOp, 0, maxBatch)
	for op := range h.ops {
		batch = append(batch[:0], op)
	fill:
		for len(batch) < maxBatch {
			select {
			case op, ok := <-h.ops:
				if !ok {
					break fill
				}
				batch = append(batch, op)
			default:
				break fill
			}
		}
		if err := h.db.Update(func(tx *bbolt.Tx) error { h.apply(tx.Bucket([]byte(storeBucket)), batch); return nil }); err != nil {
			h.writeFailed(batch[0].key, err)
		}
		for _, op := range batch {
			if op.flushed != nil {
				close(op.flushed)
			}
		}
	}
}

// apply makes a batch's changes. A change bbolt refuses is logged and left
// out; it must not cost the rest of the batch.
func (h *storeHook) apply(b *bbolt.Bucket, batch []storeOp) {
	for _, op := range batch {
		var err error
		switch {
		case op.flushed != nil:
		case op.client != "":
			err = deleteClient(b, op.client)
		case op.val == nil:
			err = b.Delete([]byte(op.key))
		default:
			err = b.Put([]byte(op.key), op.val)
		}
		if err != nil {
			h.writeFailed(op.key, err)
		}
	}
}

// deleteClient removes a client's record, subscriptions and in-flight
// messages. Keys are "<kind>_<client id>:…" (or the long form, see
// storeKey) and client ids may hold ':', so each record's own client field
// decides.
func deleteClient(b *bbolt.Bucket, id string) error {
	if err := b.Delete([]byte(clientKey(id))); err != nil {
		return err
	}
	var doomed [][]byte
	for _, kind := range []string{storage.SubscriptionKey, storage.InflightKey} {
		for _, prefix := range []string{kind + "_" + id + ":", kind + "_" + longKeyMark + digest(id) + ":"} {
			c := b.Cursor()
			for k, v := c.Seek([]byte(prefix)); k != nil && bytes.HasPrefix(k, []byte(prefix)); k, v = c.Next() {
				if recordClient(kind, v) == id {
					doomed = append(doomed, bytes.Clone(k))
				}
			}
		}
	}
	for _, k := range doomed {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

func recordClient(kind string, v []byte) string {
	if kind == storage.SubscriptionKey {
		var s storage.Subscription
		if s.UnmarshalBinary(v) == nil {
			return s.Client
		}
		return ""
	}
	var m storage.Message
	if m.UnmarshalBinary(v) == nil {
		return m.Client
	}
	return ""
}

func (h *storeHook) writeFailed(key string, err error) {
	if len(key) > 100 {
		key = key[:100] + "…"
	}
	if logx.Allowed(&h.lastErr) {
		h.log.Error("session store: write failed; sessions may not survive a restart", "key", key, "err", err)
	}
}

// Keys are mochi's, "<kind>_<client id>" and "<kind>_<client id>:<filter or
// packet id>", "<kind>_<topic>", as long as bbolt takes them (32KB). A longer
// one, which MQTT allows (a client id and a filter are 64KB each), is
// "<kind>_\x00" and the SHA-256 of the client id (":" and the SHA-256 of the
// filter or the packet id follow), or of the topic: a client's records stay
// under two prefixes, and NUL, which MQTT forbids in its strings
// [MQTT-1.5.4-2], cannot clash with a mochi key. Keys stay UTF-8 text, as
// the records holding them are JSON. Records hold the full values and are
// restored by them.
const longKeyMark = "\x00"

func clientKey(id string) string { return storeKey(storage.ClientKey, id, "", "") }
func subscriptionKey(id, filter string) string {
	return storeKey(storage.SubscriptionKey, id, ":", filter)
}
func retainedKey(topic string) string { return storeKey(storage.RetainedKey, topic, "", "") }
func inflightKey(id string, pk packets.Packet) string {
	return storeKey(storage.InflightKey, id, ":", pk.FormatID())
}

func storeKey(kind, id, sep, rest string) string {
	if len(kind)+1+len(id)+len(sep)+len(rest) <= bbolt.MaxKeySize {
		return kind + "_" + id + sep + rest
	}
	if kind == storage.SubscriptionKey {
		rest = digest(rest)
	}
	return kind + "_" + longKeyMark + digest(id) + sep + rest
}

func digest(s string) string {
	d := sha256.Sum256([]byte(s))
	return hex.EncodeToString(d[:])
}

// OnSessionEstablished stores the client.
func (h *storeHook) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) { h.putClient(cl) }

// OnWillSent stores the client without its will.
func (h *storeHook) OnWillSent(cl *mqtt.Client, _ packets.Packet) { h.putClient(cl) }

func (h *storeHook) putClient(cl *mqtt.Client) {
	props := cl.Properties.Props.Copy(false)
	h.put(clientKey(cl.ID), &storage.Client{
		ID:              cl.ID,
		T:               storage.ClientKey,
		Remote:          cl.Net.Remote,
		Listener:        cl.Net.Listener,
		Username:        cl.Properties.Username,
		Clean:           cl.Properties.Clean,
		ProtocolVersion: cl.Properties.ProtocolVersion,
		Properties: storage.ClientProperties{
			SessionExpiryInterval:     props.SessionExpiryInterval,
			SessionExpiryIntervalFlag: props.SessionExpiryIntervalFlag,
			AuthenticationMethod:      props.AuthenticationMethod,
			AuthenticationData:        props.AuthenticationData,
			RequestProblemInfo:        props.RequestProblemInfo,
			RequestProblemInfoFlag:    props.RequestProblemInfoFlag,
			RequestResponseInfo:       props.RequestResponseInfo,
			ReceiveMaximum:            props.ReceiveMaximum,
			TopicAliasMaximum:         props.TopicAliasMaximum,
			User:                      props.User,
			MaximumPacketSize:         props.MaximumPacketSize,
		},
		Will: storage.ClientWill(cl.Properties.Will),
	})
}

// OnDisconnect forgets a session that ends with its connection. mochi
// clears its subscriptions and in-flight messages through the other hooks;
// a session taken over by a new connection lives on.
func (h *storeHook) OnDisconnect(cl *mqtt.Client, _ error, expire bool) {
	if !expire || cl.StopCause() == packets.ErrSessionTakenOver {
		return
	}
	h.del(clientKey(cl.ID))
}

// OnClientExpired forgets an expired session with everything it held,
// which mochi leaves behind.
func (h *storeHook) OnClientExpired(cl *mqtt.Client) { h.send(storeOp{client: cl.ID}) }

// OnSubscribed stores the granted subscriptions.
func (h *storeHook) OnSubscribed(cl *mqtt.Client, pk packets.Packet, reasonCodes []byte) {
	for i, f := range pk.Filters {
		if i >= len(reasonCodes) || reasonCodes[i] >= packets.ErrUnspecifiedError.Code {
			continue // refused: not a subscription
		}
		h.put(subscriptionKey(cl.ID, f.Filter), &storage.Subscription{
			ID:                subscriptionKey(cl.ID, f.Filter),
			T:                 storage.SubscriptionKey,
			Client:            cl.ID,
			Qos:               reasonCodes[i],
			Filter:            f.Filter,
			Identifier:        f.Identifier,
			NoLocal:           f.NoLocal,
			RetainHandling:    f.RetainHandling,
			RetainAsPublished: f.RetainAsPublished,
		})
	}
}

// OnUnsubscribed forgets subscriptions.
func (h *storeHook) OnUnsubscribed(cl *mqtt.Client, pk packets.Packet) {
	for _, f := range pk.Filters {
		h.del(subscriptionKey(cl.ID, f.Filter))
	}
}

// OnRetainMessage stores a retained message, or forgets it (r == -1).
func (h *storeHook) OnRetainMessage(cl *mqtt.Client, pk packets.Packet, r int64) {
	if r == -1 {
		h.del(retainedKey(pk.TopicName))
		return
	}
	h.put(retainedKey(pk.TopicName), message(storage.RetainedKey, retainedKey(pk.TopicName), cl.ID, pk, 0))
}

// OnRetainedExpired forgets an expired retained message.
func (h *storeHook) OnRetainedExpired(topic string) { h.del(retainedKey(topic)) }

// OnQosPublish stores an in-flight message. A PUBACK that mochi holds for
// the instant between receiving a QoS 1 publish and answering it is not
// worth a write.
func (h *storeHook) OnQosPublish(cl *mqtt.Client, pk packets.Packet, sent int64, _ int) {
	if pk.FixedHeader.Type == packets.Puback {
		return
	}
	h.put(inflightKey(cl.ID, pk), message(storage.InflightKey, inflightKey(cl.ID, pk), cl.ID, pk, sent))
}

// OnQosComplete forgets a completed in-flight message.
func (h *storeHook) OnQosComplete(cl *mqtt.Client, pk packets.Packet) { h.del(inflightKey(cl.ID, pk)) }

// OnQosDropped forgets a dropped in-flight message.
func (h *storeHook) OnQosDropped(cl *mqtt.Client, pk packets.Packet) { h.del(inflightKey(cl.ID, pk)) }

func message(kind, id, client string, pk packets.Packet, sent int64) *storage.Message {
	props := pk.Properties.Copy(false)
	return &storage.Message{
		ID:          id,
		T:           kind,
		Client:      client,
		Origin:      pk.Origin,
		FixedHeader: pk.FixedHeader,
		TopicName:   pk.TopicName,
		Payload:     pk.Payload,
		PacketID:    pk.PacketID,
		Sent:        sent,
		Created:     pk.Created,
		Properties: storage.MessageProperties{
			PayloadFormat:          props.PayloadFormat,
			PayloadFormatFlag:      props.PayloadFormatFlag,
			MessageExpiryInterval:  props.MessageExpiryInterval,
			ContentType:            props.ContentType,
			ResponseTopic:          props.ResponseTopic,
			CorrelationData:        props.CorrelationData,
			SubscriptionIdentifier: props.SubscriptionIdentifier,
			TopicAlias:             props.TopicAlias,
			User:                   props.User,
		},
	}
}

// each decodes every record of a kind, skipping (and logging) records it
// cannot read rather than refusing to start.
func each[T any, P interface {
	*T
	UnmarshalBinary([]byte) error
}](h *storeHook, kind string, visit func(*T)) error {
	prefix := []byte(kind + "_")
	bad := 0
	err := h.db.View(func(tx *bbolt.Tx) error {
		c := tx.Bucket([]byte(storeBucket)).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			var rec T
			if P(&rec).UnmarshalBinary(v) != nil {
				bad++
				continue
			}
			visit(&rec)
		}
		return nil
	})
	if bad > 0 {
		h.log.Warn("session store: unreadable records skipped", "kind", kind, "count", bad)
	}
	if err != nil {
		return fmt.Errorf("session store: %w", err)
	}
	return nil
}

// StoredClients returns the stored sessions, their expiry held to the
// max_session_expiry in force: one stored under an older, longer limit
// ("never" before max_session_expiry had a default) would stay for good.
func (h *storeHook) StoredClients() ([]storage.Client, error) {
	var out []storage.Client
	err := each(h, storage.ClientKey, func(c *storage.Client) {
		if h.srv != nil {
			c.Properties.SessionExpiryInterval = min(c.Properties.SessionExpiryInterval, h.srv.Options.Capabilities.MaximumSessionExpiryInterval)
		}
		out = append(out, *c)
	})
	return out, err
}

// StoredSubscriptions returns the stored subscriptions of stored sessions:
// mochi would otherwise revive those of sessions that ended in a crash.
func (h *storeHook) StoredSubscriptions() ([]storage.Subscription, error) {
	clients := map[string]bool{}
	if err := each(h, storage.ClientKey, func(c *storage.Client) { clients[c.ID] = true }); err != nil {
		return nil, err
	}
	var out []storage.Subscription
	var orphans []string
	err := each(h, storage.SubscriptionKey, func(s *storage.Subscription) {
		if clients[s.Client] {
			out = append(out, *s)
		} else {
			orphans = append(orphans, s.ID)
		}
	})
	// Deleted after the read transaction: a writer growing the file waits for readers.
	for _, k := range orphans {
		h.del(k)
	}
	return out, err
}

// StoredInflightMessages returns the stored in-flight messages.
func (h *storeHook) StoredInflightMessages() ([]storage.Message, error) {
	var out []storage.Message
	err := each(h, storage.InflightKey, func(m *storage.Message) {
		if m.FixedHeader.Type != packets.Puback {
			out = append(out, *m)
		}
	})
	return out, err
}

// StoredRetainedMessages returns the stored retained messages.
func (h *storeHook) StoredRetainedMessages() ([]storage.Message, error) {
	var out []storage.Message
	err := each(h, storage.RetainedKey, func(m *storage.Message) { out = append(out, *m) })
	return out, err
}

// StoredSysInfo is called last while mochi restores its state: it returns
// the gauges of what was restored, which mochi does not count itself (and
// which its bolt hook saves every second instead).
func (h *storeHook) StoredSysInfo() (storage.SystemInfo, error) {
	// mochi ignores an answer without a version.
	in := system.Info{Version: mqtt.Version}
	if h.srv != nil {
		in.Retained = int64(h.srv.Topics.Retained.Len())
		for _, cl := range h.srv.Clients.GetAll() {
			in.Subscriptions += int64(cl.State.Subscriptions.Len())
			in.Inflight += int64(cl.State.Inflight.Len())
		}
	}
	return storage.SystemInfo{ID: storage.SysInfoKey, T: storage.SysInfoKey, Info: in}, nil
}
