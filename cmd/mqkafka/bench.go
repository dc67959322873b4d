package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os/signal"
	"strings"
	"syscall"

	"github.com/mqkafka/mqkafka/bench"
	"github.com/mqkafka/mqkafka/conf"
)

const benchUsage = `usage: mqkafka bench [flags] [dimension=v1,v2 ...]

Runs MQTT → mqkafka → Kafka (pipeline) next to its ceilings measured in the
same invocation: librdkafka straight into the same Kafka (kafka-raw) and the
same MQTT load to one subscriber without Kafka (broker-raw). mqkafka and an
in-memory Kafka run as child processes; results go to --out as results.json
and results.html.

examples:
  mqkafka bench --matrix buffer=memory,disk,hybrid qos=0,1 size=100,1024
  mqkafka bench --matrix buffer=disk rate=0,half
  mqkafka bench --scenarios kafka-raw,recovery --buffer disk --backlog 100MB
  mqkafka bench --connections 100000
  mqkafka bench --scenarios cluster       # three nodes, publish on one, subscribe on another

flags:
`

// cmdBench is `mqkafka bench`; `mqkafka bench kfake` is the in-memory Kafka
// the bench runs as a child process.
func cmdBench(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "kfake" {
		return cmdBenchKfake(args[1:], stdout, stderr)
	}
	o := bench.Options{Params: bench.DefaultParams()}
	p := &o.Params
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, benchUsage)
		fs.PrintDefaults()
	}
	scenarios := fs.String("scenarios", strings.Join(bench.DefaultScenarios(), ","), "comma-separated: pipeline, kafka-raw, broker-raw, source, recovery, connections, cluster")
	var matrix []string
	fs.Func("matrix", "a dimension name=v1,v2 (buffer, fsync, qos, size, clients, inflight, rate, partitions, messages); more may follow as arguments", func(s string) error {
		matrix = append(matrix, strings.Fields(s)...)
		return nil
	})
	fs.IntVar(&p.Clients, "clients", p.Clients, "MQTT publishers (kafka-raw: producing goroutines)")
	fs.IntVar(&p.Inflight, "inflight", p.Inflight, "unacknowledged QoS 1 publishes per client")
	fs.Int64Var(&p.Messages, "messages", p.Messages, "messages per run, over all clients")
	fs.DurationVar(&p.Duration, "duration", 0, "publish for this long instead of --messages")
	rate := fs.String("rate", "0", `target rate in messages/s (0: as fast as acknowledged; "half": half of this combination's full-speed rate)`)
	fs.IntVar(&p.Size, "size", p.Size, "message size in bytes (at least 40)")
	fs.IntVar(&p.QoS, "qos", p.QoS, "MQTT QoS, 0 or 1")
	fs.StringVar(&p.Buffer, "buffer", p.Buffer, "sink buffer mode: memory, disk or hybrid")
	fs.StringVar(&p.Fsync, "fsync", p.Fsync, "disk and hybrid fsync policy: batch, interval or never")
	fs.IntVar(&p.Partitions, "partitions", p.Partitions, "partitions of the Kafka topic")
	fs.DurationVar(&p.Linger, "linger", p.Linger, "librdkafka linger (the sink's max_linger_time, and kafka-raw's)")
	fs.StringVar(&o.Broker, "broker", "", "host:port of an existing MQTT broker to load instead of mqkafka")
	fs.StringVar(&o.Kafka, "kafka", "", "host:port of an existing Kafka instead of the in-memory one")
	fs.StringVar(&o.Topic, "topic", "", "with --broker: the Kafka topic that broker bridges bench/# into")
	backlog := conf.ByteSize(100 * conf.MB)
	fs.Func("backlog", "recovery: bytes buffered while Kafka is down (default 100MB)", func(s string) error {
		return backlog.UnmarshalText([]byte(s))
	})
	fs.IntVar(&o.Connections, "connections", 0, "idle MQTT connections to open (the connections scenario)")
	fs.IntVar(&o.Subscribers, "subscribers", 1, "source: MQTT subscribers")
	fs.StringVar(&o.Out, "out", "bench-out", "directory for results.json, results.html, logs and profiles")
	fs.StringVar(&o.Binary, "mqkafka", "", "mqkafka binary to run as the children (default: this one)")
	fs.BoolVar(&o.Profile, "profile", false, "save CPU, allocation and mutex profiles of mqkafka during each pipeline run")
	fs.IntVar(&o.ProfileSeconds, "profile-seconds", 10, "length of each profile")
	fs.DurationVar(&o.Drain, "drain", 0, "longest wait for acknowledgements after the last publish (default 60s)")
	fs.BoolVar(&o.Cold, "cold", false, "pipeline: load a sink that has not learned its topic's partitions yet (no warm-up; the first records wait in its holding queue)")
	quiet := fs.Bool("quiet", false, "no live progress line")

	// Dimensions may follow --matrix as separate arguments, and flags may
	// follow them: parse flags, take name=value arguments, parse again.
	rest := args
	for {
		if err := fs.Parse(rest); err != nil {
			return exitInvalidConfig
		}
		rest = fs.Args()
		if len(rest) == 0 {
			break
		}
		if !strings.Contains(rest[0], "=") || strings.HasPrefix(rest[0], "-") {
			fmt.Fprintf(stderr, "mqkafka bench: unexpected argument %q\n", rest[0])
			return exitInvalidConfig
		}
		matrix = append(matrix, rest[0])
		rest = rest[1:]
	}
	explicit := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { explicit[f.Name] = true })
	o.Scenarios = strings.Split(*scenarios, ",")
	if o.Connections > 0 && !explicit["scenarios"] {
		o.Scenarios = []string{bench.ScenarioConnections}
	}
	if *rate != "0" {
		matrix = append([]string{"rate=" + *rate}, matrix...)
	}
	o.Matrix = matrix
	o.Backlog = int64(backlog)
	o.Log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if !*quiet {
		o.Progress = stderr
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	o.Command = append([]string{"mqkafka", "bench"}, args...)
	rep, err := bench.Run(ctx, o)
	if rep != nil {
		rep.Table(stdout)
		fmt.Fprintf(stdout, "\nresults: %s/results.json, %s/results.html\n", o.Out, o.Out)
	}
	if err != nil {
		fmt.Fprintln(stderr, "mqkafka bench:", err)
		if errors.Is(err, context.Canceled) {
			return 130
		}
		return 1
	}
	return 0
}

// cmdBenchKfake serves an in-memory Kafka until SIGINT/SIGTERM.
func cmdBenchKfake(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench kfake", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:9092", "address to listen on")
	partitions := fs.Int("partitions", 3, "partitions of topics created without a count")
	if err := fs.Parse(args); err != nil {
		return exitInvalidConfig
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := bench.ServeKafka(ctx, *listen, *partitions, stdout); err != nil {
		fmt.Fprintln(stderr, "mqkafka bench kfake:", err)
		return 1
	}
	return 0
}
