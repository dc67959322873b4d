package consumer

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/mqkafka/mqkafka/ack"
	"github.com/mqkafka/mqkafka/conf"
	"github.com/mqkafka/mqkafka/connector"
	"github.com/mqkafka/mqkafka/internal/testkit"
	"github.com/mqkafka/mqkafka/rule"
)

// pub is one message a source handed to the broker.
type pub struct {
	topic   string
	payload string
	qos     byte
	retain  bool
	props   [][2]string
}

// fakeBroker records publishes; fail, when set, can refuse one.
type fakeBroker struct {
	mu   sync.Mutex
	pubs []pub
	fail func(n int, p pub) error
}

func (b *fakeBroker) Publish(ctx context.Context, topic string, payload []byte, retain bool, qos byte, props [][2]string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := pub{topic, string(payload), qos, retain, props}
	if b.fail != nil {
		if err := b.fail(len(b.pubs), p); err != nil {
			return err
		}
	}
	b.pubs = append(b.pubs, p)
	return nil
}

func (b *fakeBroker) WaitRoom(ctx context.Context) error { return ctx.Err() }

func (b *fakeBroker) published() []pub {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]pub(nil), b.pubs...)
}

func (b *fakeBroker) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.pubs)
}

// produce writes n records (keys k<from+i>, values v<from+i>, header h1) with a real Kafka client.
func produce(t testing.TB, addr, topic string, from, n int) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	recs := make([]*kgo.Record, n)
	for i := range recs {
		j := from + i
		recs[i] = &kgo.Record{
			Key:     fmt.Appendf(nil, "k%05d", j),
			Value:   fmt.Appendf(nil, "v%05d", j),
			Headers: []kgo.RecordHeader{{Key: "h1", Value: fmt.Appendf(nil, "x%d", j)}},
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

func sourceConfig(name, group, topic, mqttTopic, payload string) conf.Source {
	var s conf.Source
	s.SetDefaults()
	s.Name, s.Connector, s.Topic, s.GroupID = name, "k", topic, group
	s.OffsetResetPolicy = "earliest"
	s.OffsetCommitInterval = 200 * time.Millisecond
	s.MaxWaitTime = 100 * time.Millisecond
	if mqttTopic != "" {
		var m conf.TopicMapping
		m.SetDefaults()
		m.KafkaTopic, m.MQTTTopic = topic, mqttTopic
		if payload != "" {
			m.PayloadTemplate = payload
		}
		s.TopicMapping = []conf.TopicMapping{m}
	}
	return s
}

func startSource(t testing.TB, addr string, cfg conf.Source, b Broker, rules ...RuleActions) *Source {
	t.Helper()
	cn := conf.Connector{Name: "k", BootstrapHosts: addr, Properties: map[string]string{
		"reconnect.backoff.max.ms": "200",
		"heartbeat.interval.ms":    "300",
		"session.timeout.ms":       "6000",
		// Topics created during a test are found within a second.
		"topic.metadata.refresh.interval.ms": "1000",
	}}
	s, err := New(cfg, cn, Env{Broker: b, Rules: rules, Node: "test@host", Log: testkit.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	t.Cleanup(func() {
		// Bounded: a source that does not stop fails its test, not the package.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := s.Stop(ctx); err != nil {
			t.Error(err)
		}
	})
	return s
}

// committed returns group's committed offsets on topic, summed over its
// partitions: the topic's record count once the group has handed over,
// stored and committed every record (offsets start at 0, one a record).
func committed(t testing.TB, cl *kgo.Client, group, topic string) int64 {
	t.Helper()
	req := kmsg.NewPtrOffsetFetchRequest()
	req.Group = group
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatalf("offset fetch: %v", err)
	}
	var sum int64
	for _, g := range resp.Groups {
		for _, tp := range g.Topics {
			for _, p := range tp.Partitions {
				if tp.Topic == topic && p.Offset > 0 {
					sum += p.Offset
				}
			}
		}
	}
	return sum
}

// client is a Kafka client for the test's own requests.
func client(t testing.TB, addr string) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func stop(t testing.TB, s *Source) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestConsumerDeliversAndCommitsOnStop: every message is handed over once,
// and a graceful stop commits them all, so that the group's next consumer
// (even with offset_reset_policy = earliest) reads only newer ones.
func TestConsumerDeliversAndCommitsOnStop(t *testing.T) {
	t.Parallel()
	_, addr := testkit.NewKafka(t, 0, kfake.SeedTopics(3, "t1"))
	produce(t, addr, "t1", 0, 300)
	b := &fakeBroker{}
	s := startSource(t, addr, sourceConfig("s", "g1", "t1", "m/${.key}", "${.value}|${.headers.h1}"), b)
	testkit.WaitFor(t, 20*time.Second, "300 publishes", func() bool { return b.count() >= 300 })
	testkit.WaitFor(t, 5*time.Second, "lag 0 on 3 partitions", func() bool {
		lag := s.Counters.Lag()
		return len(lag) == 3 && lag[Partition{"t1", 0}]+lag[Partition{"t1", 1}]+lag[Partition{"t1", 2}] == 0
	})
	stop(t, s)
	seen := map[string]bool{}
	for _, p := range b.published() {
		k := strings.TrimPrefix(p.topic, "m/")
		var j int
		if _, err := fmt.Sscanf(k, "k%d", &j); err != nil || p.payload != fmt.Sprintf("v%05d|x%d", j, j) {
			t.Fatalf("topic %s payload %q", p.topic, p.payload)
		}
		if p.qos != 1 {
			t.Fatalf("qos %d, want the mapping's default 1", p.qos)
		}
		seen[k] = true
	}
	if len(seen) != 300 || b.count() != 300 {
		t.Fatalf("%d distinct of %d publishes, want 300", len(seen), b.count())
	}
	if c := &s.Counters; c.Received.Load() != 300 || c.Success.Load() != 300 {
		t.Fatalf("received %d success %d", c.Received.Load(), c.Success.Load())
	}

	produce(t, addr, "t1", 300, 100)
	b2 := &fakeBroker{}
	s2 := startSource(t, addr, sourceConfig("s", "g1", "t1", "m/${.key}", ""), b2)
	testkit.WaitFor(t, 20*time.Second, "100 publishes", func() bool { return b2.count() >= 100 })
	kc := client(t, addr)
	testkit.WaitFor(t, 20*time.Second, "all 400 committed", func() bool { return committed(t, kc, "g1", "t1") == 400 })
	if n := b2.count(); n != 100 {
		t.Fatalf("the restarted group read %d messages, want exactly the 100 new ones", n)
	}
	stop(t, s2)
}

// TestConsumerStopMidStreamLosesNothing: stopping while messages stream in
// stores no offset the broker did not take, although Close() polls and
// throws away what librdkafka had prefetched; the next consumer of the
// group continues without a gap.
func TestConsumerStopMidStreamLosesNothing(t *testing.T) {
	t.Parallel()
	_, addr := testkit.NewKafka(t, 0, kfake.SeedTopics(3, "t2"))
	const n = 3000
	produce(t, addr, "t2", 0, n)
	reached := make(chan struct{})
	var once sync.Once
	b := &fakeBroker{}
	b.fail = func(i int, _ pub) error {
		if i >= 1000 {
			once.Do(func() { close(reached) })
			// Slow hand-overs keep messages prefetched when Stop comes.
			time.Sleep(time.Millisecond)
		}
		return nil
	}
	s := startSource(t, addr, sourceConfig("s", "g2", "t2", "m", "${.key}"), b)
	<-reached
	stop(t, s)
	first := b.count()

	b2 := &fakeBroker{}
	s2 := startSource(t, addr, sourceConfig("s", "g2", "t2", "m", "${.key}"), b2)
	testkit.WaitFor(t, 30*time.Second, "the rest", func() bool { return first+b2.count() >= n })
	kc := client(t, addr)
	testkit.WaitFor(t, 20*time.Second, "all committed", func() bool { return committed(t, kc, "g2", "t2") == n })
	stop(t, s2)
	seen := map[string]int{}
	for _, p := range append(b.published(), b2.published()...) {
		seen[p.payload]++
	}
	dups := 0
	for _, c := range seen {
		dups += c - 1
	}
	if len(seen) != n {
		t.Fatalf("%d distinct messages after a restart, want %d (first run %d, second %d)", len(seen), n, first, b2.count())
	}
	if dups > 0 {
		t.Fatalf("%d duplicates after a graceful stop", dups)
	}
	t.Logf("first run %d, second run %d, duplicates %d", first, b2.count(), dups)
}

// TestConsumerRetriesWhatTheBrokerRefused: a hand-over that fails is not
// stored; the partition is read again from that message.
func TestConsumerRetriesWhatTheBrokerRefused(t *testing.T) {
	t.Parallel()
	_, addr := testkit.NewKafka(t, 0, kfake.SeedTopics(1, "t3"))
	produce(t, addr, "t3", 0, 50)
	var failed bool
	b := &fakeBroker{}
	b.fail = func(i int, p pub) error {
		if p.payload == "k00010" && !failed {
			failed = true
			return errors.New("broker busy")
		}
		return nil
	}
	s := startSource(t, addr, sourceConfig("s", "g3", "t3", "m", "${.key}"), b)
	testkit.WaitFor(t, 20*time.Second, "50 publishes", func() bool { return b.count() >= 50 })
	stop(t, s)
	got := b.published()
	if len(got) != 50 {
		t.Fatalf("%d publishes, want 50", len(got))
	}
	for i, p := range got {
		if want := fmt.Sprintf("k%05d", i); p.payload != want {
			t.Fatalf("publish %d is %s, want %s: order or completeness broken after a retry", i, p.payload, want)
		}
	}
	if s.Counters.Failed.Load() != 1 {
		t.Fatalf("failed = %d, want 1", s.Counters.Failed.Load())
	}
}

// TestConsumerDropsWhatTheBrokerCannotTake: a topic the broker refuses for
// good (over its topic limits) is a counted drop, not a retry that would
// hold the partition forever.
func TestConsumerDropsWhatTheBrokerCannotTake(t *testing.T) {
	t.Parallel()
	_, addr := testkit.NewKafka(t, 0, kfake.SeedTopics(1, "t6"))
	produce(t, addr, "t6", 0, 20)
	b := &fakeBroker{}
	b.fail = func(i int, p pub) error {
		if p.payload == "k00005" {
			return fmt.Errorf("broker: %w: over the broker's topic limits", conf.ErrInvalidTopic)
		}
		return nil
	}
	s := startSource(t, addr, sourceConfig("s", "g6", "t6", "m", "${.key}"), b)
	testkit.WaitFor(t, 20*time.Second, "19 publishes", func() bool { return b.count() >= 19 })
	stop(t, s)
	if got := b.published(); len(got) != 19 || got[5].payload != "k00006" {
		t.Fatalf("%d publishes (%v), want the 19 others in order", len(got), got)
	}
	if n := s.Counters.Dropped()[ReasonInvalidTopic]; n != 1 {
		t.Fatalf("dropped{invalid_topic} = %d, want 1", n)
	}
}

// TestConsumerOffsetResetPolicy: a new group starts at the end with
// "latest" and at the beginning with "earliest".
func TestConsumerOffsetResetPolicy(t *testing.T) {
	t.Parallel()
	c, addr := testkit.NewKafka(t, 0, kfake.SeedTopics(2, "t4"))
	produce(t, addr, "t4", 0, 40)
	// The "latest" source asks for each partition's end offset (ListOffsets,
	// timestamp -1) after its assignment. kfake answers requests one at a
	// time, so a produce sent once both were asked lands after those ends.
	var askedEnd [2]atomic.Bool
	c.ControlKey(int16(kmsg.ListOffsets), func(req kmsg.Request) (kmsg.Response, error, bool) {
		for _, tp := range req.(*kmsg.ListOffsetsRequest).Topics {
			for _, p := range tp.Partitions {
				if tp.Topic == "t4" && p.Timestamp == -1 && p.Partition >= 0 && p.Partition < 2 {
					askedEnd[p.Partition].Store(true)
				}
			}
		}
		return nil, nil, false
	})
	latest, earliest := &fakeBroker{}, &fakeBroker{}
	cl := sourceConfig("l", "g4-latest", "t4", "m", "${.key}")
	cl.OffsetResetPolicy = "latest"
	sl := startSource(t, addr, cl, latest)
	startSource(t, addr, sourceConfig("e", "g4-earliest", "t4", "m", "${.key}"), earliest)
	testkit.WaitFor(t, 20*time.Second, "assignments", func() bool {
		return sl.Counters.Assigned.Load() == 2 && earliest.count() >= 40
	})
	testkit.WaitFor(t, 20*time.Second, "the end offsets asked for", func() bool { return askedEnd[0].Load() && askedEnd[1].Load() })
	produce(t, addr, "t4", 40, 10)
	testkit.WaitFor(t, 20*time.Second, "new messages", func() bool { return latest.count() >= 10 && earliest.count() >= 50 })
	kc := client(t, addr)
	testkit.WaitFor(t, 20*time.Second, "all 50 committed", func() bool {
		return committed(t, kc, "g4-latest", "t4") == 50 && committed(t, kc, "g4-earliest", "t4") == 50
	})
	if latest.count() != 10 || earliest.count() != 50 {
		t.Fatalf("latest read %d (want 10), earliest %d (want 50)", latest.count(), earliest.count())
	}
}

// TestConsumerSourcesShareGroup: two sources in one group split the
// partitions, and together hand over every message once.
func TestConsumerSourcesShareGroup(t *testing.T) {
	t.Parallel()
	_, addr := testkit.NewKafka(t, 0, kfake.SeedTopics(4, "t5"))
	b1, b2 := &fakeBroker{}, &fakeBroker{}
	s1 := startSource(t, addr, sourceConfig("a", "shared", "t5", "a", "${.key}"), b1)
	s2 := startSource(t, addr, sourceConfig("b", "shared", "t5", "b", "${.key}"), b2)
	testkit.WaitFor(t, 30*time.Second, "partitions split", func() bool {
		a, b := s1.Counters.Assigned.Load(), s2.Counters.Assigned.Load()
		return a > 0 && b > 0 && a+b == 4
	})
	produce(t, addr, "t5", 0, 400)
	testkit.WaitFor(t, 20*time.Second, "400 publishes", func() bool { return b1.count()+b2.count() >= 400 })
	seen := map[string]bool{}
	for _, p := range append(b1.published(), b2.published()...) {
		seen[p.payload] = true
	}
	if len(seen) != 400 || b1.count() == 0 || b2.count() == 0 {
		t.Fatalf("source a %d, b %d, distinct %d: want both > 0 and 400 distinct", b1.count(), b2.count(), len(seen))
	}
}

// TestConsumerRules: rules reading the source see EMQX's record and feed
// their actions; WHERE filters.
func TestConsumerRules(t *testing.T) {
	t.Parallel()
	_, addr := testkit.NewKafka(t, 0, kfake.SeedTopics(1, "t6"))
	produce(t, addr, "t6", 0, 20)
	r, err := rule.Compile("r", `SELECT key, value, headers.h1 AS h FROM "$bridges/kafka_consumer:s" WHERE offset >= 15`, nil)
	if err != nil {
		t.Fatal(err)
	}
	act := &recordAction{tpl: rule.MustTemplate("${key}/${value}/${h}")}
	b := &fakeBroker{}
	s := startSource(t, addr, sourceConfig("s", "g6", "t6", "", ""), b, RuleActions{Rule: r, Actions: []rule.Action{act}})
	testkit.WaitFor(t, 20*time.Second, "20 messages", func() bool { return s.Counters.Success.Load() >= 20 })
	got := act.all()
	if len(got) != 5 || got[0] != "k00015/v00015/x15" {
		t.Fatalf("rule action got %q", got)
	}
	if st := r.Stats(); st.Matched != 20 || st.Passed != 5 || st.NoResult != 15 {
		t.Fatalf("rule stats %+v", st)
	}
	if b.count() != 0 {
		t.Fatalf("%d publishes without a topic mapping", b.count())
	}
}

type recordAction struct {
	tpl  *rule.Template
	mu   sync.Mutex
	recs []string
}

func (a *recordAction) Enqueue(_ context.Context, _ ack.Wait, r rule.Record) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.recs = append(a.recs, string(a.tpl.Render(nil, r)))
	return nil
}

func (a *recordAction) all() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.recs...)
}

// TestMessageRecord: the record renders as EMQX's, fields render raw,
// and the JSON form refuses bytes that are not UTF-8.
func TestMessageRecord(t *testing.T) {
	topic := "kt"
	m := &kafka.Message{
		TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: 1, Offset: 42},
		Key:            []byte("d7"),
		Value:          []byte(`{"temp":31,"arr":[1,{"x":"y"}]}`),
		Headers:        []kafka.Header{{Key: "z", Value: []byte("1")}, {Key: "h1", Value: []byte("a")}, {Key: "h1", Value: []byte("b")}},
		Timestamp:      time.UnixMilli(1700000000123),
		TimestampType:  kafka.TimestampCreateTime,
	}
	var r message
	r.reset(m, false, false)
	for _, tc := range []struct{ tpl, want string }{
		{"${.}", `{"headers":{"h1":"b","z":"1"},"key":"d7","offset":42,"topic":"kt","ts":1700000000123,"ts_type":"create","value":"{\"temp\":31,\"arr\":[1,{\"x\":\"y\"}]}"}`},
		{"${.value}", `{"temp":31,"arr":[1,{"x":"y"}]}`},
		{"${.headers.h1}|${headers.z}|${.nope}|${.headers.nope}", "b|1||"},
		{"${.value.temp} ${.value.arr[2].x} ${value.arr[-2]}", "31 y 1"},
		{"devices/${.key}/cmd", "devices/d7/cmd"},
		{"${.offset}/${.ts}/${.ts_type}/${.topic}", "42/1700000000123/create/kt"},
	} {
		if got := string(rule.MustTemplate(tc.tpl).Render(nil, &r)); got != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.tpl, got, tc.want)
		}
	}
	if r.badUTF8 {
		t.Fatal("valid text flagged")
	}

	m.Value = []byte{0xff, 0x00, 0xfe}
	r.reset(m, false, false)
	if got := rule.MustTemplate("${.value}").Render(nil, &r); string(got) != string(m.Value) || r.badUTF8 {
		t.Fatalf("raw binary value: %q bad=%v", got, r.badUTF8)
	}
	_ = rule.MustTemplate("${.}").Render(nil, &r)
	if !r.badUTF8 {
		t.Fatal("binary value in JSON not flagged")
	}
	r.reset(m, false, true)
	if got := string(rule.MustTemplate("${.value}|${.key}").Render(nil, &r)); got != "/wD+|d7" {
		t.Fatalf("base64: %q", got)
	}
	_ = rule.MustTemplate("${.}").Render(nil, &r)
	if r.badUTF8 {
		t.Fatal("base64 value flagged")
	}
}

// TestConsumerKafkaDownAndTopicMissing: a source started while Kafka is
// down, on a topic that does not exist yet, counts the errors, and reads
// the topic once Kafka is up and the topic appears.
func TestConsumerKafkaDownAndTopicMissing(t *testing.T) {
	t.Parallel()
	port := testkit.FreePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	b := &fakeBroker{}
	s := startSource(t, addr, sourceConfig("s", "g7", "t7", "m", "${.key}"), b)
	testkit.WaitFor(t, 20*time.Second, "errors while Kafka is down", func() bool { return s.Counters.KafkaErrors.Load() > 0 })
	if s.Status() != connector.Connecting {
		t.Fatalf("status %s while Kafka is down", s.Status())
	}
	testkit.NewKafka(t, port, kfake.AllowAutoTopicCreation())
	before := s.Counters.KafkaErrors.Load()
	testkit.WaitFor(t, 20*time.Second, "the missing topic reported", func() bool { return s.Counters.KafkaErrors.Load() > before })
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for i := range 10 {
		if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: "t7", Key: fmt.Appendf(nil, "k%d", i)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	testkit.WaitFor(t, 30*time.Second, "10 publishes once the topic exists", func() bool { return b.count() >= 10 })
	if s.Status() != connector.Connected {
		t.Fatalf("status %s after reading", s.Status())
	}
}

// TestConsumerStopWhileKafkaDown: stopping does not hang when Kafka went
// away: librdkafka gives up its final commit within session.timeout.ms, or
// the consumer is abandoned after closeWait.
func TestConsumerStopWhileKafkaDown(t *testing.T) {
	t.Parallel()
	c, addr := testkit.NewKafka(t, 0, kfake.SeedTopics(1, "t8"))
	produce(t, addr, "t8", 0, 10)
	b := &fakeBroker{}
	s := startSource(t, addr, sourceConfig("s", "g8", "t8", "m", "${.key}"), b)
	testkit.WaitFor(t, 20*time.Second, "10 publishes", func() bool { return b.count() >= 10 })
	c.Close()
	began := time.Now()
	stop(t, s)
	if d := time.Since(began); d > s.closeWait+5*time.Second {
		t.Fatalf("stop took %v with Kafka down", d)
	}
}

// TestConsumerStopWhileKafkaHangs: a coordinator that stops answering in
// the middle of the final commit holds librdkafka's Close indefinitely
// (it retries on every reconnect); Stop still returns after closeWait,
// reporting the consumer abandoned, and the source's goroutines end.
func TestConsumerStopWhileKafkaHangs(t *testing.T) {
	t.Parallel()
	c, addr := testkit.NewKafka(t, 0, kfake.SeedTopics(1, "t9"))
	produce(t, addr, "t9", 0, 10)
	var frozen atomic.Bool
	never := make(chan struct{})
	c.Control(func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if frozen.Load() {
			// Accepted, never answered; kfake.Close wakes it.
			c.SleepControl(func() { <-never })
		}
		return nil, nil, false
	})
	t.Cleanup(func() { close(never) }) // runs after the source's Stop
	b := &fakeBroker{}
	s := startSource(t, addr, sourceConfig("s", "g9", "t9", "m", "${.key}"), b)
	testkit.WaitFor(t, 20*time.Second, "10 publishes", func() bool { return b.count() >= 10 })
	s.closeWait = 3 * time.Second // read by the poll goroutine after Stop cancels it
	frozen.Store(true)
	began := time.Now()
	stop(t, s)
	if d := time.Since(began); d > s.closeWait+5*time.Second {
		t.Fatalf("stop took %v with Kafka hanging", d)
	}
	if n := s.Counters.AbandonedCloses.Load(); n != 1 {
		t.Fatalf("abandoned closes = %d, want 1", n)
	}
}
