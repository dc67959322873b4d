package producer

import (
	"fmt"
	"time"

	"github.com/mqkafka/mqkafka/buffer"
	"github.com/mqkafka/mqkafka/conf"
	"github.com/mqkafka/mqkafka/rule"
)

// Preview is a record rendered by a sink's templates, as it would be sent:
// what EMQX's "Enable Test" shows.
type Preview struct {
	Topic     string          `json:"topic"`
	Key       string          `json:"key"`
	Value     string          `json:"value"`
	Timestamp int64           `json:"timestamp"`
	Headers   []PreviewHeader `json:"headers,omitempty"`
	// Partition is the partition chosen among Partitions; -1 when the
	// strategy is random or the count is unknown.
	Partition         int    `json:"partition"`
	Partitions        int    `json:"partitions,omitempty"`
	PartitionStrategy string `json:"partition_strategy"`
}

// PreviewHeader is one rendered Kafka header.
type PreviewHeader struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// Render renders rec with a sink's templates without sending it. With
// partitions > 0, key_dispatch and fixed partitions are resolved too.
func Render(cfg conf.Sink, rec rule.Record, partitions int) (Preview, error) {
	r, err := newRenderer(cfg)
	if err != nil {
		return Preview{}, err
	}
	var out buffer.Record
	topic, _, err := r.render(rec, nil, time.Now().UnixMilli(), &out)
	if err != nil {
		return Preview{}, err
	}
	pv := Preview{
		Topic: topic, Key: string(out.Key), Value: string(out.Value), Timestamp: out.Time,
		Partition: -1, Partitions: partitions, PartitionStrategy: cfg.PartitionStrategy,
	}
	for _, h := range out.Headers {
		pv.Headers = append(pv.Headers, PreviewHeader{Key: h.Key, Value: string(h.Value)})
	}
	switch {
	case cfg.PartitionStrategy == "fixed":
		pv.Partition = cfg.Partition
		if partitions > 0 && cfg.Partition >= partitions {
			return pv, fmt.Errorf("partition %d does not exist: the topic has %d", cfg.Partition, partitions)
		}
	case cfg.PartitionStrategy == "key_dispatch" && partitions > 0 && len(out.Key) > 0:
		pv.Partition = keyPartition(out.Key, partitions)
	}
	return pv, nil
}
