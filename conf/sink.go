package conf

import (
	"fmt"
	"strings"
	"time"

	"github.com/mqkafka/mqkafka/rule"
)

// Sink is a Kafka producer action; names and defaults follow EMQX's Kafka producer.
type Sink struct {
	Name      string `toml:"name,required"`
	Connector string `toml:"connector,required"`
	// Topic is a template: "device-${payload.device}" picks the topic per record.
	Topic     string `toml:"topic,required"`
	Key       string `toml:"key"`
	Value     string `toml:"value"`
	Timestamp string `toml:"timestamp"`
	// KafkaHeaders is a placeholder yielding a JSON object or a
	// [{"key":…,"value":…}] list, e.g. "${pub_props.User-Property}".
	KafkaHeaders string `toml:"kafka_headers"`
	// KafkaExtHeaders are extra headers, each a key and a value template.
	KafkaExtHeaders []ExtHeader `toml:"kafka_ext_headers"`
	// KafkaHeaderValueEncodeMode is "none" (text as it is) or "json".
	KafkaHeaderValueEncodeMode string `toml:"kafka_header_value_encode_mode"`
	// UserPropertiesAsHeaders copies the record's MQTT 5 User-Property pairs into headers.
	UserPropertiesAsHeaders bool `toml:"user_properties_as_headers"`
	// MQTTTopicFilters is RMQTT's shorthand for a rule `SELECT * FROM` these filters.
	MQTTTopicFilters []string `toml:"mqtt_topic_filters"`

	PartitionStrategy string `toml:"partition_strategy"`
	// Partition is the partition of partition_strategy = "fixed".
	Partition                     int           `toml:"partition"`
	PartitionCountRefreshInterval time.Duration `toml:"partition_count_refresh_interval"`
	RequiredAcks                  string        `toml:"required_acks"`
	Compression                   string        `toml:"compression"`
	MaxInflight                   int           `toml:"max_inflight"`
	MaxBatchBytes                 ByteSize      `toml:"max_batch_bytes"`
	MaxLingerTime                 time.Duration `toml:"max_linger_time"`
	QueryMode                     string        `toml:"query_mode"`
	SyncQueryTimeout              time.Duration `toml:"sync_query_timeout"`
	// MaxInflightBytes bounds the bytes of records the sink's partitions
	// together have handed to librdkafka and Kafka has not acknowledged.
	MaxInflightBytes ByteSize `toml:"max_inflight_bytes"`
	// MaxBatchAge drops records older than this instead of sending them (0: no limit).
	MaxBatchAge time.Duration `toml:"max_batch_age"`
	// MaxRetries drops records sent this many times without success (0: no limit).
	MaxRetries int        `toml:"max_retries"`
	Buffer     SinkBuffer `toml:"buffer"`
}

// MinInflightBytes is the least max_inflight_bytes: room for a few batches.
const MinInflightBytes = 64 * KB

// ExtHeader is one entry of kafka_ext_headers.
type ExtHeader struct {
	Key   string `toml:"kafka_ext_header_key,required"`
	Value string `toml:"kafka_ext_header_value,required"`
}

// SinkBuffer configures a sink's per-partition queues.
type SinkBuffer struct {
	Mode              string   `toml:"mode"`
	PerPartitionLimit ByteSize `toml:"per_partition_limit"`
	SegmentBytes      ByteSize `toml:"segment_bytes"`
	// MemoryLimit is what a hybrid queue keeps in memory before it spills
	// to disk; 0 means segment_bytes.
	MemoryLimit   ByteSize      `toml:"memory_limit"`
	Overflow      string        `toml:"overflow"`
	BlockTimeout  time.Duration `toml:"block_timeout"`
	Fsync         string        `toml:"fsync"`
	FsyncInterval time.Duration `toml:"fsync_interval"`
	// MemoryOverloadProtection drops the oldest records of memory queues
	// while system memory use is above sysmon.os.sysmem_high_watermark.
	MemoryOverloadProtection bool `toml:"memory_overload_protection"`
}

// SetDefaults fills a sink's defaults, as EMQX's Kafka producer has them.
func (s *Sink) SetDefaults() {
	s.Key = "${clientid}"
	s.Value = "${.}"
	s.Timestamp = "${.timestamp}"
	s.KafkaHeaderValueEncodeMode = "none"
	s.PartitionStrategy = "random"
	s.PartitionCountRefreshInterval = 60 * time.Second
	s.RequiredAcks = "all_isr"
	s.Compression = "no_compression"
	s.MaxInflight = 10
	s.MaxBatchBytes = 896 * KB
	s.MaxInflightBytes = 24 * MB
	s.MaxLingerTime = 5 * time.Millisecond
	s.QueryMode = "async"
	s.SyncQueryTimeout = 5 * time.Second
	s.Buffer = SinkBuffer{
		Mode:              "memory",
		PerPartitionLimit: 256 * MB,
		SegmentBytes:      10 * MB,
		Overflow:          "drop_oldest",
		BlockTimeout:      10 * time.Second,
		Fsync:             "batch",
		FsyncInterval:     100 * time.Millisecond,
	}
}

// validateSinks checks every sink and returns the set of sink names.
func (c *Config) validateSinks(bad func(path, format string, args ...any), enum func(path, v string, allowed ...string)) map[string]bool {
	connectors := map[string]bool{}
	for _, cn := range c.Connectors {
		connectors[cn.Name] = true
	}
	sinks := map[string]bool{}
	template := func(path, src string) {
		if _, err := rule.CompileTemplate(src); err != nil {
			bad(path, "%v", err)
		}
	}
	for i := range c.Sinks {
		s := &c.Sinks[i]
		p := fmt.Sprintf("sinks[%d]", i)
		if sinks[s.Name] {
			bad(p+".name", "duplicate sink name %q", s.Name)
		}
		sinks[s.Name] = true
		if !connectors[s.Connector] {
			bad(p+".connector", "no connector named %q", s.Connector)
		}
		template(p+".key", s.Key)
		template(p+".value", s.Value)
		template(p+".timestamp", s.Timestamp)
		template(p+".kafka_headers", s.KafkaHeaders)
		for j, h := range s.KafkaExtHeaders {
			template(fmt.Sprintf("%s.kafka_ext_headers[%d].kafka_ext_header_key", p, j), h.Key)
			template(fmt.Sprintf("%s.kafka_ext_headers[%d].kafka_ext_header_value", p, j), h.Value)
		}
		if tpl, err := rule.CompileTemplate(s.Topic); err != nil {
			bad(p+".topic", "%v", err)
		} else if tpl.IsStatic() {
			if err := ValidTopicName(s.Topic); err != nil {
				bad(p+".topic", "%v", err)
			}
		}
		for j, f := range s.MQTTTopicFilters {
			if err := rule.ValidFilter(f); err != nil {
				bad(fmt.Sprintf("%s.mqtt_topic_filters[%d]", p, j), "%v", err)
			}
		}
		enum(p+".kafka_header_value_encode_mode", s.KafkaHeaderValueEncodeMode, "none", "json")
		enum(p+".partition_strategy", s.PartitionStrategy, "random", "key_dispatch", "fixed")
		if s.Partition < 0 {
			bad(p+".partition", "must not be negative")
		}
		if s.PartitionStrategy != "fixed" && s.Partition != 0 {
			bad(p+".partition", "is used only with partition_strategy = \"fixed\"")
		}
		if s.PartitionCountRefreshInterval < time.Second {
			bad(p+".partition_count_refresh_interval", "must be at least 1s")
		}
		enum(p+".required_acks", s.RequiredAcks, "all_isr", "leader_only", "none")
		enum(p+".compression", s.Compression, "no_compression", "gzip", "snappy", "lz4", "zstd")
		enum(p+".query_mode", s.QueryMode, "async", "sync")
		if s.SyncQueryTimeout <= 0 {
			bad(p+".sync_query_timeout", "must be positive")
		}
		if s.MaxInflight < 1 {
			bad(p+".max_inflight", "must be at least 1")
		}
		if s.MaxBatchBytes < 1 {
			bad(p+".max_batch_bytes", "must be positive")
		}
		if s.MaxInflightBytes < MinInflightBytes {
			bad(p+".max_inflight_bytes", "must be at least 64KB")
		}
		if s.MaxLingerTime < 0 {
			bad(p+".max_linger_time", "must not be negative")
		}
		// The age is librdkafka's message.timeout.ms, which must be
		// longer than linger.ms and fit its range.
		if s.MaxBatchAge < 0 || s.MaxBatchAge > (1<<31-1)*time.Millisecond {
			bad(p+".max_batch_age", "must be between 0 (no limit) and 596h")
		} else if ms := s.MaxBatchAge / time.Millisecond; s.MaxBatchAge > 0 && (ms < 1 || ms <= s.MaxLingerTime/time.Millisecond) {
			bad(p+".max_batch_age", "must be longer than max_linger_time and at least 1ms")
		}
		if s.MaxRetries < 0 {
			bad(p+".max_retries", "must not be negative")
		}
		c.validateBuffer(p+".buffer", &s.Buffer, bad, enum)
	}
	return sinks
}

func (c *Config) validateBuffer(b string, sb *SinkBuffer, bad func(path, format string, args ...any), enum func(path, v string, allowed ...string)) {
	enum(b+".mode", sb.Mode, "memory", "disk", "hybrid")
	enum(b+".overflow", sb.Overflow, "drop_oldest", "drop_new", "block")
	enum(b+".fsync", sb.Fsync, "batch", "interval", "never")
	if sb.PerPartitionLimit < 1 {
		bad(b+".per_partition_limit", "must be positive")
	}
	if sb.SegmentBytes < 1 {
		bad(b+".segment_bytes", "must be positive")
	}
	if sb.Fsync == "interval" && sb.FsyncInterval <= 0 {
		bad(b+".fsync_interval", "must be positive with fsync = \"interval\"")
	}
	if sb.MemoryLimit < 0 {
		bad(b+".memory_limit", "must not be negative")
	}
	if sb.MemoryOverloadProtection && sb.Mode != "memory" {
		bad(b+".memory_overload_protection", "applies to mode = \"memory\" only")
	}
	if sb.Overflow == "block" && sb.BlockTimeout <= 0 {
		bad(b+".block_timeout", "must be positive with overflow = \"block\"")
	}
}

// ActionName is how rules name a sink in their actions.
func ActionName(sink string) string { return "kafka_producer:" + sink }

// parseAction splits "kafka_producer:<sink>".
func parseAction(a string) (sink string, ok bool) {
	kind, name, ok := strings.Cut(a, ":")
	return name, ok && kind == "kafka_producer"
}
