// Package bench is mqkafka's benchmark harness. It drives the bridge from
// outside, as users do, and measures it side by side with its two ceilings
// taken in the same invocation: librdkafka writing the same records straight
// into the same Kafka (kafka-raw), and the same MQTT load through the broker
// to one subscriber without Kafka (broker-raw).
//
// Everything under test runs as a child process of the bench: mqkafka
// (`serve -c <generated toml>`) and, unless --kafka names a cluster, an
// in-memory Kafka (kfake, `bench kfake`). Their CPU seconds and peak RSS
// come from /proc, apart from the load generator's own. Each run starts
// fresh children, so a run's peak RSS and buffers are its own.
package bench

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Scenario names.
const (
	ScenarioPipeline    = "pipeline"
	ScenarioKafkaRaw    = "kafka-raw"
	ScenarioBrokerRaw   = "broker-raw"
	ScenarioSource      = "source"
	ScenarioRecovery    = "recovery"
	ScenarioConnections = "connections"
	ScenarioCluster     = "cluster"
)

// DefaultScenarios is the pipeline with both its ceilings.
func DefaultScenarios() []string {
	return []string{ScenarioKafkaRaw, ScenarioBrokerRaw, ScenarioPipeline}
}

func allScenarios() []string {
	return []string{ScenarioKafkaRaw, ScenarioBrokerRaw, ScenarioPipeline, ScenarioSource, ScenarioRecovery, ScenarioConnections, ScenarioCluster}
}

// Options configure a bench invocation. Params holds the defaults of every
// run; Matrix dimensions override them, one run per combination.
type Options struct {
	Scenarios []string
	Params    Params
	// Matrix is "name=v1,v2" dimensions: buffer, fsync, qos, size, clients,
	// inflight, rate (a number or "half"), partitions, messages.
	Matrix []string

	// Broker and Kafka, when set, are existing servers to load instead of
	// the children the bench starts.
	Broker string
	Kafka  string
	// Topic is the Kafka topic an external broker (Broker) bridges into.
	Topic string

	// Backlog is the bytes the recovery scenario buffers while Kafka is down.
	Backlog int64
	// Connections is the idle connection count of the connections scenario.
	Connections int
	// Subscribers is the number of MQTT subscribers of the source scenario.
	Subscribers int

	// Out is where results.json, results.html and the children's logs go.
	Out string
	// Binary is the mqkafka executable run as the children.
	Binary string
	// Profile saves CPU, allocation and mutex profiles of mqkafka during
	// each pipeline run into Out/profiles.
	Profile        bool
	ProfileSeconds int
	// Drain bounds the wait for the last records after the last publish.
	Drain time.Duration
	// Cold starts each pipeline run's load on a sink that has not learned
	// its topic's partitions yet: no warm-up, and the sink's topic is a
	// template, which a sink opens only when the first record names it.
	Cold bool

	// Progress receives the live progress line (a terminal); nil for none.
	Progress io.Writer
	Log      *slog.Logger
	// Command is the command line, recorded in results.json.
	Command []string
}

// Params are the parameters of one run.
type Params struct {
	Buffer     string        `json:"buffer,omitempty"`
	Fsync      string        `json:"fsync,omitempty"`
	QoS        int           `json:"qos"`
	Size       int           `json:"size"`
	Clients    int           `json:"clients"`
	Inflight   int           `json:"inflight"`
	Messages   int64         `json:"messages,omitempty"`
	Duration   time.Duration `json:"-"`
	DurationS  float64       `json:"duration_s,omitempty"`
	Partitions int           `json:"partitions"`
	Linger     time.Duration `json:"-"`
	LingerMS   float64       `json:"linger_ms"`
	// Rate is the target in messages per second; 0 is as fast as it goes.
	Rate float64 `json:"rate,omitempty"`
	// HalfRate runs at half the rate this combination reached at full speed.
	HalfRate bool `json:"half_rate,omitempty"`
}

// DefaultParams are the defaults of `mqkafka bench`.
func DefaultParams() Params {
	return Params{
		Buffer: "memory", Fsync: "batch", QoS: 1, Size: 100, Clients: 100, Inflight: 8,
		Messages: 200_000, Partitions: 3, Linger: 5 * time.Millisecond,
	}
}

func (p Params) String() string {
	var b strings.Builder
	if p.Buffer != "" {
		fmt.Fprintf(&b, "buffer=%s ", p.Buffer)
		if p.Buffer != "memory" && p.Fsync != "batch" {
			fmt.Fprintf(&b, "fsync=%s ", p.Fsync)
		}
	}
	fmt.Fprintf(&b, "qos=%d size=%d clients=%d×%d parts=%d", p.QoS, p.Size, p.Clients, p.Inflight, p.Partitions)
	switch {
	case p.HalfRate:
		b.WriteString(" rate=half")
	case p.Rate > 0:
		fmt.Fprintf(&b, " rate=%.0f", p.Rate)
	}
	return b.String()
}

// applyDim sets one matrix dimension.
func (p *Params) applyDim(name, v string) error {
	atoi := func() (int, error) {
		n, err := strconv.Atoi(v)
		if err != nil {
			return 0, fmt.Errorf("%s=%q: not a number", name, v)
		}
		return n, nil
	}
	var err error
	switch name {
	case "buffer":
		if !slices.Contains([]string{"memory", "disk", "hybrid"}, v) {
			return fmt.Errorf("buffer=%q: want memory, disk or hybrid", v)
		}
		p.Buffer = v
	case "fsync":
		if !slices.Contains([]string{"batch", "interval", "never"}, v) {
			return fmt.Errorf("fsync=%q: want batch, interval or never", v)
		}
		p.Fsync = v
	case "qos":
		p.QoS, err = atoi()
		if err == nil && (p.QoS < 0 || p.QoS > 1) {
			err = fmt.Errorf("qos=%d: the bench publishes at QoS 0 or 1", p.QoS)
		}
	case "size":
		p.Size, err = atoi()
		if err == nil && p.Size < minSize {
			err = fmt.Errorf("size=%d: at least %d bytes (the message id and send time)", p.Size, minSize)
		}
	case "clients":
		p.Clients, err = atoi()
		if err == nil && p.Clients < 1 {
			err = fmt.Errorf("clients must be at least 1")
		}
	case "inflight":
		p.Inflight, err = atoi()
		if err == nil && (p.Inflight < 1 || p.Inflight > 65535) {
			err = fmt.Errorf("inflight must be 1..65535")
		}
	case "partitions":
		p.Partitions, err = atoi()
		if err == nil && p.Partitions < 1 {
			err = fmt.Errorf("partitions must be at least 1")
		}
	case "messages":
		var n int
		n, err = atoi()
		p.Messages = int64(n)
	case "rate":
		p.HalfRate, p.Rate = false, 0
		if v == "half" {
			p.HalfRate = true
			break
		}
		r, perr := strconv.ParseFloat(strings.TrimSuffix(v, "/s"), 64)
		if perr != nil || r < 0 {
			return fmt.Errorf("rate=%q: want messages per second, or \"half\"", v)
		}
		p.Rate = r
	default:
		return fmt.Errorf("unknown matrix dimension %q (buffer, fsync, qos, size, clients, inflight, rate, partitions, messages)", name)
	}
	return err
}

// expand returns every combination of the matrix, the first dimension
// varying slowest.
func expand(base Params, dims []string) ([]Params, error) {
	combos := []Params{base}
	for _, d := range dims {
		name, vals, ok := strings.Cut(d, "=")
		if !ok || vals == "" {
			return nil, fmt.Errorf("matrix dimension %q: want name=v1,v2", d)
		}
		var next []Params
		for _, c := range combos {
			for v := range strings.SplitSeq(vals, ",") {
				p := c
				if err := p.applyDim(strings.TrimSpace(name), strings.TrimSpace(v)); err != nil {
					return nil, err
				}
				next = append(next, p)
			}
		}
		combos = next
	}
	return combos, nil
}

// runner holds the state of one invocation.
type runner struct {
	o      Options
	log    *slog.Logger
	report *Report
	seq    int
	// ceilings and full-speed pipelines by their key, for ratios and for
	// rate=half.
	kafkaRaw  map[string]*Result
	brokerRaw map[string]*Result
	pipelines map[string]*Result
	once      map[string]bool // scenarios that do not vary with every dimension
}

// Run runs the scenarios over the matrix, writes results.json and
// results.html into Out and returns the report.
func Run(ctx context.Context, o Options) (*Report, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(o.Out, "logs"), 0o755); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	combos, err := expand(o.Params, o.Matrix)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	r := &runner{
		o: o, log: o.Log,
		report:    newReport(o),
		kafkaRaw:  map[string]*Result{},
		brokerRaw: map[string]*Result{},
		pipelines: map[string]*Result{},
		once:      map[string]bool{},
	}
	r.report.FileLimit = raiseFileLimit(uint64(o.Connections) + 1024)
	for _, p := range combos {
		for _, sc := range o.Scenarios {
			if ctx.Err() != nil {
				break
			}
			switch sc {
			case ScenarioKafkaRaw:
				r.ceilingKafka(ctx, p)
			case ScenarioBrokerRaw:
				r.ceilingBroker(ctx, p)
			case ScenarioPipeline:
				r.pipeline(ctx, p)
			case ScenarioSource:
				r.source(ctx, p)
			case ScenarioRecovery:
				r.recovery(ctx, p)
			case ScenarioCluster:
				r.cluster(ctx, p)
			}
		}
	}
	if slices.Contains(o.Scenarios, ScenarioConnections) && ctx.Err() == nil {
		r.connections(ctx)
	}
	r.report.finish()
	if err := r.report.write(o.Out); err != nil {
		return r.report, err
	}
	if ctx.Err() != nil {
		return r.report, ctx.Err()
	}
	return r.report, nil
}

func (o *Options) check() error {
	if len(o.Scenarios) == 0 {
		o.Scenarios = DefaultScenarios()
	}
	for _, s := range o.Scenarios {
		if !slices.Contains(allScenarios(), s) {
			return fmt.Errorf("bench: unknown scenario %q (%s)", s, strings.Join(allScenarios(), ", "))
		}
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Out == "" {
		o.Out = "bench-out"
	}
	if o.Drain <= 0 {
		o.Drain = 60 * time.Second
	}
	if o.ProfileSeconds <= 0 {
		o.ProfileSeconds = 10
	}
	if o.Subscribers <= 0 {
		o.Subscribers = 1
	}
	if o.Backlog <= 0 {
		o.Backlog = 100 << 20
	}
	if o.Binary == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("bench: finding the mqkafka binary: %w", err)
		}
		o.Binary = exe
	}
	if o.Broker != "" && o.Topic == "" && slices.Contains(o.Scenarios, ScenarioPipeline) {
		return errors.New("bench: with --broker, --topic names the Kafka topic that broker bridges bench/# into")
	}
	p := &o.Params
	if p.Size < minSize {
		return fmt.Errorf("bench: size %d: at least %d bytes (the message id and send time)", p.Size, minSize)
	}
	if p.Messages <= 0 && p.Duration <= 0 {
		return errors.New("bench: give a message count or a duration")
	}
	if p.Duration > 0 {
		p.Messages = 0
	}
	return nil
}

// next numbers runs; the number names their logs, configs and topics.
func (r *runner) next(kind string, p Params) (name string, tag uint32) {
	r.seq++
	var b [4]byte
	_, _ = rand.Read(b[:])
	tag = binary.BigEndian.Uint32(b[:])
	return fmt.Sprintf("%02d-%s", r.seq, kind), tag
}

// ceilingKey is what a ceiling depends on: not the buffer, nor the target
// rate (ceilings always run at full speed).
func ceilingKey(kind string, p Params) string {
	if kind == ScenarioKafkaRaw {
		return fmt.Sprintf("size=%d clients=%d n=%d d=%v parts=%d linger=%v", p.Size, p.Clients, p.Messages, p.Duration, p.Partitions, p.Linger)
	}
	return fmt.Sprintf("qos=%d size=%d clients=%d inflight=%d n=%d d=%v", p.QoS, p.Size, p.Clients, p.Inflight, p.Messages, p.Duration)
}

// paramsKey is Params without its String method, so that %+v prints
// every field.
type paramsKey Params

func pipelineKey(p Params) string {
	p.Rate, p.HalfRate = 0, false
	return fmt.Sprintf("%+v", paramsKey(p))
}

func (r *runner) add(res *Result) {
	r.report.Runs = append(r.report.Runs, res)
	r.report.printRun(r.o.Progress, res)
}
