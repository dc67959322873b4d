package producer

import (
	"sync/atomic"

	"github.com/mqkafka/mqkafka/buffer"
	"github.com/mqkafka/mqkafka/internal/tally"
)

// Counters are one sink's counters, named as EMQX's action metrics.
// Success counts records Kafka acknowledged, Failed records that failed to
// enter the buffer.
type Counters struct {
	tally.Counters[buffer.Reason]
	Matched atomic.Int64 // records handed to the sink by rules
	Retried atomic.Int64 // records sent again after a failure or restart
}
