package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/mqkafka/mqkafka/conf"
	"github.com/mqkafka/mqkafka/producer"
	"github.com/mqkafka/mqkafka/rule"
)

const ruleUsage = `usage: mqkafka rule test --sql SQL --topic TOPIC [--payload P] [--clientid C] [--username U] [--qos N]
                       [--user-property k=v ...] [-c FILE --sink NAME [--partitions N]]

Runs one publish through the rule and prints the selected record; with a sink,
also the Kafka topic, key, value, timestamp, headers and partition it renders.
`

// kvFlags collects repeated k=v flags.
type kvFlags [][2]string

func (f *kvFlags) String() string { return fmt.Sprint(*f) }
func (f *kvFlags) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok {
		return fmt.Errorf("%q: want key=value", s)
	}
	*f = append(*f, [2]string{k, v})
	return nil
}

func cmdRule(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "test" {
		fmt.Fprint(stderr, ruleUsage)
		return exitInvalidConfig
	}
	fs := flag.NewFlagSet("rule test", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sql := fs.String("sql", "", "rule SQL")
	topic := fs.String("topic", "", "MQTT topic of the test publish")
	payload := fs.String("payload", "", "payload of the test publish")
	clientID := fs.String("clientid", "test-client", "client id of the publisher")
	username := fs.String("username", "", "username of the publisher")
	qos := fs.Int("qos", 1, "QoS of the publish")
	cfgPath := fs.String("c", "", "config file, for --sink")
	sinkName := fs.String("sink", "", "render the record with this sink of the config")
	partitions := fs.Int("partitions", 0, "partition count of the Kafka topic, to show key_dispatch's choice")
	var props kvFlags
	fs.Var(&props, "user-property", "MQTT 5 User-Property key=value (repeatable)")
	if err := fs.Parse(args[1:]); err != nil {
		return exitInvalidConfig
	}
	if *sql == "" || *topic == "" {
		fmt.Fprint(stderr, ruleUsage)
		return exitInvalidConfig
	}
	r, err := rule.Compile("test", *sql, nil)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitInvalidConfig
	}
	now := time.Now().UnixMilli()
	ev := &rule.Event{
		ClientID: *clientID, Username: *username, Topic: *topic, Payload: []byte(*payload),
		QoS: byte(*qos), UserProps: props, PeerHost: "127.0.0.1", Timestamp: now, PublishReceivedAt: now,
		Node: "mqkafka@" + hostname(),
	}
	if !r.Matches(*topic) {
		fmt.Fprintf(stdout, "no match: the rule reads %s, not %q\n", strings.Join(r.Stmt.From, ", "), *topic)
		return 1
	}
	rec, ok, err := r.Eval(ev)
	if err != nil {
		fmt.Fprintf(stdout, "failed: %v\n", err)
		return 1
	}
	if !ok {
		fmt.Fprintln(stdout, "no result: WHERE is false for this publish")
		return 1
	}
	fmt.Fprintf(stdout, "record: %s\n", rec.AppendJSON(nil))
	if *sinkName == "" {
		return 0
	}
	if *cfgPath == "" {
		fmt.Fprintln(stderr, "--sink needs -c FILE")
		return exitInvalidConfig
	}
	cfg, err := conf.Load(*cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitInvalidConfig
	}
	for _, s := range cfg.Sinks {
		if s.Name != *sinkName {
			continue
		}
		pv, err := producer.Render(s, rec, *partitions)
		if err != nil {
			fmt.Fprintf(stdout, "render_failed: %v\n", err)
			return 1
		}
		out, _ := json.MarshalIndent(pv, "", "  ")
		fmt.Fprintf(stdout, "kafka: %s\n", out)
		return 0
	}
	fmt.Fprintf(stderr, "%s: no sink named %q\n", *cfgPath, *sinkName)
	return exitInvalidConfig
}
