package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/mqkafka/mqkafka/admin"
	"github.com/mqkafka/mqkafka/conf"
)

const ruleUsage = `usage: mqkafka rule test --sql SQL --topic TOPIC [--payload P] [--clientid C] [--username U] [--qos N]
                       [--user-property k=v ...] [-c FILE --sink NAME [--partitions N]]

Runs one publish through the rule and prints the selected record; with a sink,
also the Kafka topic, key, value, timestamp, headers and partition it renders.
Exit 0: a record; 1: no match, no result or a failure on this publish; 2: bad SQL or usage.
`

// kvFlags collects repeated k=v flags.
type kvFlags map[string]string

func (f kvFlags) String() string { return fmt.Sprint(map[string]string(f)) }
func (f kvFlags) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok {
		return fmt.Errorf("%q: want key=value", s)
	}
	f[k] = v
	return nil
}

func cmdRule(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "test" {
		fmt.Fprint(stderr, ruleUsage)
		return exitInvalidConfig
	}
	fs := flag.NewFlagSet("rule test", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var t admin.RuleTest
	t.UserProperties = kvFlags{}
	fs.StringVar(&t.SQL, "sql", "", "rule SQL")
	fs.StringVar(&t.Topic, "topic", "", "MQTT topic of the test publish")
	fs.StringVar(&t.Payload, "payload", "", "payload of the test publish")
	fs.StringVar(&t.ClientID, "clientid", "test-client", "client id of the publisher")
	fs.StringVar(&t.Username, "username", "", "username of the publisher")
	fs.IntVar(&t.QoS, "qos", 1, "QoS of the publish")
	fs.StringVar(&t.Sink, "sink", "", "render the record with this sink of the config")
	fs.IntVar(&t.Partitions, "partitions", 0, "partition count of the Kafka topic, to show key_dispatch's choice")
	fs.Var(kvFlags(t.UserProperties), "user-property", "MQTT 5 User-Property key=value (repeatable)")
	cfgPath := fs.String("c", "", "config file, for --sink")
	if err := fs.Parse(args[1:]); err != nil {
		return exitInvalidConfig
	}
	if t.SQL == "" || t.Topic == "" || t.Sink != "" && *cfgPath == "" {
		fmt.Fprint(stderr, ruleUsage)
		return exitInvalidConfig
	}
	cfg := conf.Defaults()
	if *cfgPath != "" {
		var err error
		if cfg, err = conf.Load(*cfgPath); err != nil {
			fmt.Fprintln(stderr, err)
			return exitInvalidConfig
		}
	}
	res, err := t.Run(cfg)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitInvalidConfig
	}
	if res.Outcome != "ok" {
		fmt.Fprintf(stdout, "%s: %s\n", strings.ReplaceAll(res.Outcome, "_", " "), res.Reason)
		return 1
	}
	fmt.Fprintf(stdout, "record: %s\n", res.Record)
	if res.Kafka != nil {
		out, _ := json.MarshalIndent(res.Kafka, "", "  ")
		fmt.Fprintf(stdout, "kafka: %s\n", out)
	}
	return 0
}
