package producer

import (
	"context"
	"fmt"
	"time"

	"github.com/mqkafka/mqkafka/connector"
)

// metadataTimeout bounds one metadata request of the sink's topic goroutines
// (metadata_request_timeout). librdkafka cannot cancel such a request, so it
// is also how long a stop may wait for a topic goroutine.
func (c *Client) metadataTimeout() time.Duration {
	if c.cfg.MetadataTimeout > 0 {
		return c.cfg.MetadataTimeout
	}
	return 5 * time.Second
}

// Ping asks Kafka for cluster metadata, which updates the client's status:
// the connector health check. It never restarts the producer nor touches a buffer.
func (c *Client) Ping(ctx context.Context) error {
	c.mu.RLock()
	p, closed := c.p, c.closed
	c.mu.RUnlock()
	if closed {
		return errClientClosed
	}
	timeout := c.metadataTimeout()
	if d, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(d))
	}
	if _, err := p.GetMetadata(nil, false, int(max(timeout, time.Millisecond)/time.Millisecond)); err != nil {
		c.setStatus(connector.Connecting)
		return fmt.Errorf("connector %s: %w", c.cfg.Connector, err)
	}
	c.setStatus(connector.Connected)
	return nil
}

// Connector is the name of the client's connector.
func (c *Client) Connector() string { return c.cfg.Connector }
