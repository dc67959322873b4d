package producer

import "time"

// metadataTimeout bounds one metadata request of the sink's topic goroutines
// (metadata_request_timeout). librdkafka cannot cancel such a request, so it
// is also how long a stop may wait for a topic goroutine.
func (c *Client) metadataTimeout() time.Duration {
	if c.cfg.MetadataTimeout > 0 {
		return c.cfg.MetadataTimeout
	}
	return 5 * time.Second
}
