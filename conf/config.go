// Package conf is mqkafka's single source of settings: the TOML schema, its
// defaults and its validation. Every problem is reported with its line.
package conf

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/mqkafka/mqkafka/rule"
)

// Config is the whole configuration file.
type Config struct {
	Broker        Broker        `toml:"broker"`
	Log           Log           `toml:"log"`
	Admin         Admin         `toml:"admin"`
	EmbeddedKafka EmbeddedKafka `toml:"embedded_kafka"`
	Connectors    []Connector   `toml:"connectors"`
	Rules         []Rule        `toml:"rules"`
	Sinks         []Sink        `toml:"sinks"`
	Sources       []Source      `toml:"sources"`
	Sysmon        Sysmon        `toml:"sysmon"`
	Buffer        Buffer        `toml:"buffer"`
	// Cluster is nil when the node stands alone.
	Cluster         *Cluster      `toml:"cluster"`
	ShutdownTimeout time.Duration `toml:"shutdown_timeout"`
	// StatsInterval is how often a one-line summary per sink is logged while
	// there is traffic.
	StatsInterval time.Duration `toml:"stats_interval"`

	pos Positions
}

// Admin configures the REST API, /metrics and health endpoints.
type Admin struct {
	// Listen is the admin address; "" turns the listener off.
	Listen string `toml:"listen"`
	// Token is required as "Authorization: Bearer <token>" on every
	// endpoint but /healthz; TokenFile reads it from a file instead.
	Token     Secret `toml:"token"`
	TokenFile string `toml:"token_file"`
}

// Log configures logging.
type Log struct {
	Level  string `toml:"level"`
	Format string `toml:"format"`
}

// EmbeddedKafka is the in-memory Kafka for trying things out.
type EmbeddedKafka struct {
	Enabled    bool     `toml:"enabled"`
	Listen     string   `toml:"listen"`
	Partitions int      `toml:"partitions"`
	Topics     []string `toml:"topics"`
}

// Rule routes publishes to sinks.
type Rule struct {
	ID      string   `toml:"id,required"`
	SQL     string   `toml:"sql,required"`
	Actions []string `toml:"actions"`
	// Republish are EMQX's republish actions of the rule (source.go).
	Republish []Republish `toml:"republish"`
}

// Buffer holds the settings shared by every sink's buffer.
type Buffer struct {
	// ReadCache is the memory all disk queues of all sinks together keep
	// their newest records in, so that a partition drained as fast as it
	// fills is read from memory; older records are read from the files.
	ReadCache ByteSize `toml:"read_cache"`
}

// Sysmon configures system monitoring, as EMQX's sysmon.
type Sysmon struct {
	OS SysmonOS `toml:"os"`
}

// SysmonOS holds the operating-system watermarks.
type SysmonOS struct {
	SysmemHighWatermark Percent       `toml:"sysmem_high_watermark"`
	CheckInterval       time.Duration `toml:"mem_check_interval"`
}

// Defaults returns a config with every default filled in.
func Defaults() *Config {
	return &Config{
		Broker:          DefaultBroker(),
		Log:             Log{Level: "info", Format: "text"},
		Admin:           Admin{Listen: "127.0.0.1:18083"},
		EmbeddedKafka:   EmbeddedKafka{Listen: "127.0.0.1:9092", Partitions: 3},
		ShutdownTimeout: 10 * time.Second,
		StatsInterval:   60 * time.Second,
		Sysmon:          Sysmon{OS: SysmonOS{SysmemHighWatermark: 70, CheckInterval: time.Second}},
		Buffer:          Buffer{ReadCache: 8 * MB},
	}
}

// Error lists every problem of a config file.
type Error struct {
	File     string
	Problems []Problem
}

func (e *Error) Error() string {
	var b strings.Builder
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteByte('\n')
		}
		if p.Line > 0 {
			fmt.Fprintf(&b, "%s:%d: %s", e.File, p.Line, p.Msg)
		} else {
			fmt.Fprintf(&b, "%s: %s", e.File, p.Msg)
		}
	}
	return b.String()
}

// Load reads, decodes and validates a config file.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(path, data)
}

// Parse decodes and validates config text; name is used in messages.
func Parse(name string, data []byte) (*Config, error) {
	cfg := Defaults()
	pos, problems := decode(data, cfg)
	cfg.pos = pos
	if len(problems) == 0 {
		problems = cfg.validate()
	}
	if len(problems) > 0 {
		sort.SliceStable(problems, func(i, j int) bool { return problems[i].Line < problems[j].Line })
		return nil, &Error{File: name, Problems: problems}
	}
	return cfg, nil
}

// Line returns the line where the key at path is set, or 0.
func (c *Config) Line(path string) int {
	for path != "" {
		if l, ok := c.pos[path]; ok {
			return l
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return 0
}

// Problemf makes a problem located at the key path.
func (c *Config) Problemf(path, format string, args ...any) Problem {
	return Problem{Line: c.Line(path), Path: path, Msg: path + ": " + fmt.Sprintf(format, args...)}
}

func oneOf(v string, allowed ...string) bool {
	for _, a := range allowed {
		if v == a {
			return true
		}
	}
	return false
}

func (c *Config) validate() []Problem {
	var ps []Problem
	bad := func(path, format string, args ...any) { ps = append(ps, c.Problemf(path, format, args...)) }
	enum := func(path, v string, allowed ...string) {
		if !oneOf(v, allowed...) {
			bad(path, "%q is not one of %s", v, strings.Join(allowed, ", "))
		}
	}
	c.validateBroker(bad, enum)
	c.validateAdmin(bad)
	enum("log.level", c.Log.Level, "debug", "info", "warn", "error")
	enum("log.format", c.Log.Format, "text", "json")
	if c.EmbeddedKafka.Enabled && (c.EmbeddedKafka.Partitions < 1 || c.EmbeddedKafka.Partitions > 1000) {
		bad("embedded_kafka.partitions", "must be between 1 and 1000")
	}
	if c.ShutdownTimeout < 0 {
		bad("shutdown_timeout", "must not be negative")
	}
	if c.StatsInterval <= 0 {
		bad("stats_interval", "must be positive")
	}
	if w := c.Sysmon.OS.SysmemHighWatermark; w <= 0 || w > 100 {
		bad("sysmon.os.sysmem_high_watermark", "must be between 0%% and 100%%")
	}
	if c.Sysmon.OS.CheckInterval <= 0 {
		bad("sysmon.os.mem_check_interval", "must be positive")
	}
	if c.Buffer.ReadCache < 0 {
		bad("buffer.read_cache", "must not be negative")
	}

	c.validateConnectors(bad, enum)
	sinks := c.validateSinks(bad, enum)
	c.validateSources(bad, enum)
	c.validateCluster(bad)
	rules := map[string]bool{}
	for i, r := range c.Rules {
		p := fmt.Sprintf("rules[%d]", i)
		if rules[r.ID] {
			bad(p+".id", "duplicate rule id %q", r.ID)
		}
		rules[r.ID] = true
		if _, err := rule.Parse(r.SQL); err != nil {
			var se *rule.SyntaxError
			if errors.As(err, &se) {
				pr := c.Problemf(p+".sql", "%v", err)
				// The SQL's line 1 is the key's line, or the next one when
				// a newline follows a multi-line string's opening quotes.
				if l, ok := c.pos[TextLineKey(p+".sql")]; ok {
					pr.Line = l
				}
				if pr.Line > 0 {
					pr.Line += se.Line - 1
				}
				ps = append(ps, pr)
			} else {
				bad(p+".sql", "%v", err)
			}
		}
		if len(r.Actions) == 0 && len(r.Republish) == 0 {
			bad(p+".actions", "at least one action is needed")
		}
		for j, a := range r.Actions {
			name, ok := parseAction(a)
			ap := fmt.Sprintf("%s.actions[%d]", p, j)
			switch {
			case !ok:
				bad(ap, "%q: an action is written \"kafka_producer:<sink name>\"", a)
			case !sinks[name]:
				bad(ap, "no sink named %q", name)
			}
		}
	}
	return ps
}

// ValidTopicName checks a Kafka topic name as Kafka does.
func ValidTopicName(t string) error {
	if t == "" || t == "." || t == ".." {
		return fmt.Errorf("invalid Kafka topic name %q", t)
	}
	if len(t) > 249 {
		return errors.New("invalid Kafka topic name: longer than 249 characters")
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("invalid Kafka topic name %q: only letters, digits, '.', '_' and '-' are allowed", t)
		}
	}
	return nil
}

// ByteSize is a size in bytes written as "256MB", "896KB", "1GB" or a plain number.
// Units are binary, as EMQX reads them (1KB = 1024 bytes).
type ByteSize int64

// Byte size units.
const (
	KB ByteSize = 1 << 10
	MB ByteSize = 1 << 20
	GB ByteSize = 1 << 30
)

// UnmarshalText implements encoding.TextUnmarshaler.
func (b *ByteSize) UnmarshalText(text []byte) error {
	s := strings.ToUpper(strings.TrimSpace(string(text)))
	mult := ByteSize(1)
	for _, u := range []struct {
		suffix string
		mult   ByteSize
	}{{"KB", KB}, {"MB", MB}, {"GB", GB}, {"K", KB}, {"M", MB}, {"G", GB}, {"B", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return fmt.Errorf("invalid size %q (write e.g. \"256MB\", \"896KB\" or a number of bytes)", string(text))
	}
	*b = ByteSize(n) * mult
	return nil
}

// Rate is an amount per second, written as EMQX writes rates: "1000/s",
// "500/10s", "60/m", "1MB/s" (bytes, binary units), a plain number (per
// second) or "infinity" (0: no limit).
type Rate float64

// UnmarshalText implements encoding.TextUnmarshaler.
func (r *Rate) UnmarshalText(text []byte) error {
	bad := fmt.Errorf("invalid rate %q (write e.g. \"1000/s\", \"500/10s\", \"1MB/s\" or \"infinity\")", string(text))
	s := strings.TrimSpace(string(text))
	if strings.EqualFold(s, "infinity") {
		*r = 0
		return nil
	}
	amount, period, slash := strings.Cut(s, "/")
	if slash && strings.TrimSpace(period) == "" {
		return bad
	}
	var n ByteSize
	if err := n.UnmarshalText([]byte(amount)); err != nil {
		return bad
	}
	seconds := 1.0
	if period = strings.TrimSpace(period); period != "" {
		unit := period[len(period)-1:]
		mult, ok := map[string]float64{"s": 1, "m": 60, "h": 3600}[unit]
		if !ok {
			return bad
		}
		count := 1.0
		if num := period[:len(period)-1]; num != "" {
			c, err := strconv.ParseFloat(num, 64)
			if err != nil || c <= 0 {
				return bad
			}
			count = c
		}
		seconds = count * mult
	}
	*r = Rate(float64(n) / seconds)
	return nil
}

// Percent is a percentage written as "70%" (or a plain number).
type Percent float64

// UnmarshalText implements encoding.TextUnmarshaler.
func (p *Percent) UnmarshalText(text []byte) error {
	s := strings.TrimSuffix(strings.TrimSpace(string(text)), "%")
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil {
		return fmt.Errorf("invalid percentage %q (write e.g. \"70%%\")", string(text))
	}
	*p = Percent(f)
	return nil
}
