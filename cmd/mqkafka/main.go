// Command mqkafka is an MQTT broker with a durable, bi-directional Kafka bridge.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/mqkafka/mqkafka/app"
	"github.com/mqkafka/mqkafka/conf"
	"github.com/mqkafka/mqkafka/internal/logx"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = ""

const usage = `mqkafka: an MQTT broker with a durable Kafka bridge

usage:
  mqkafka serve -c FILE     run the broker and every configured bridge until SIGINT/SIGTERM
  mqkafka check -c FILE     validate a config file (exit 2 and FILE:LINE: messages if it is invalid)
  mqkafka rule test …       run a test publish through rule SQL (and a sink's templates); see 'mqkafka rule'
  mqkafka passwd [USER]     print a bcrypt hash of a password (read from the terminal or stdin) for [broker.auth]
  mqkafka bench …           benchmark the bridge against its ceilings; see 'mqkafka bench -h'
  mqkafka version           print the version
`

// exitInvalidConfig is the exit code for a config that does not validate.
const exitInvalidConfig = 2

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitInvalidConfig
	}
	switch args[0] {
	case "serve":
		return cmdServe(args[1:], stderr)
	case "check":
		return cmdCheck(args[1:], stdout, stderr)
	case "bench":
		return cmdBench(args[1:], stdout, stderr)
	case "rule":
		return cmdRule(args[1:], stdout, stderr)
	case "passwd":
		return cmdPasswd(args[1:], os.Stdin, stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, "mqkafka", buildVersion())
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "mqkafka: unknown command %q\n\n%s", args[0], usage)
		return exitInvalidConfig
	}
}

func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

// configFlag parses the -c flag that serve and check share.
func configFlag(name string, args []string, stderr io.Writer) (string, bool) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("c", "mqkafka.toml", "config file")
	if err := fs.Parse(args); err != nil {
		return "", false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "mqkafka %s: unexpected argument %q\n", name, fs.Arg(0))
		return "", false
	}
	return *path, true
}

func cmdCheck(args []string, stdout, stderr io.Writer) int {
	path, ok := configFlag("check", args, stderr)
	if !ok {
		return exitInvalidConfig
	}
	if _, err := app.LoadConfig(path); err != nil {
		fmt.Fprintln(stderr, err)
		return exitInvalidConfig
	}
	fmt.Fprintf(stdout, "%s: ok\n", path)
	return 0
}

func cmdServe(args []string, stderr io.Writer) int {
	path, ok := configFlag("serve", args, stderr)
	if !ok {
		return exitInvalidConfig
	}
	cfg, err := app.LoadConfig(path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		var ce *conf.Error
		if errors.As(err, &ce) {
			return exitInvalidConfig
		}
		return 1
	}
	log := newLogger(cfg.Log, stderr)
	defer startPprof(log)()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	a, err := app.Start(path, cfg, buildVersion(), log)
	if err != nil {
		log.Error("starting", "err", err)
		return 1
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-hup:
			log.Info("SIGHUP: reloading the configuration", "file", path)
			if err := a.Reload(); err != nil {
				log.Error("reload refused; the running configuration stays", "err", err)
			}
		}
	}
	log.Info("stopping: no new connections; draining buffers to Kafka", "timeout", cfg.ShutdownTimeout)
	if err := a.Stop(); err != nil {
		log.Error("stopped with records still buffered", "err", err)
	}
	log.Info("stopped")
	return 0
}

// newLogger is the process's logger: whatever a caller or a client passes,
// no line is longer than logx.MaxLine, and one message is logged at most in
// a burst of 20 lines, then 10 a second; the next line written says how
// many were left out.
func newLogger(c conf.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewTextHandler(w, opts)
	if c.Format == "json" {
		h = slog.NewJSONHandler(w, opts)
	}
	return slog.New(logx.NewHandler(h, logx.Options{PerSecond: 10, Burst: 20}))
}
