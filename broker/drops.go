package broker

// Drops counts, by reason, the publishes the broker did not deliver:
// not_authorized (publishes an ACL rule denied; they never reach a rule or a
// sink), not_authorized_delivery (messages not delivered to a subscriber an
// ACL rule denies the topic), max_inflight (QoS 1/2 messages for a subscriber that already held
// max_inflight unacknowledged or queued ones), max_mqueue_len (QoS 1/2
// messages for a session, offline or out of send quota, that already held
// max_mqueue_len waiting ones), max_mqueue_bytes (likewise, for one that held
// max_mqueue_bytes of payload) and max_client_writes_pending (messages for a
// connected subscriber whose write queue was full).
func (b *Broker) Drops() map[string]int64 {
	in := b.srv.Info.Clone()
	return map[string]int64{
		"not_authorized":            b.access.denied.Load(),
		"not_authorized_delivery":   b.srv.DeliveriesDenied(),
		"max_inflight":              in.InflightDropped,
		"max_client_writes_pending": in.MessagesDropped,
		reasonMqueueLen:             b.queue.dropped.Load(),
		reasonMqueueBytes:           b.queue.droppedBytes.Load(),
	}
}
