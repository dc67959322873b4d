package mqtt

import (
	"time"

	"github.com/mqkafka/mqkafka/third_party/mochi/packets"
)

// PublishToClient delivers pk to cl alone, as cl's subscription sub would
// (mqkafka patch: a session resumed from another node gets what was queued
// for it there).
func (s *Server) PublishToClient(cl *Client, sub packets.Subscription, pk packets.Packet) error {
	_, err := s.publishToClient(cl, sub, pk)
	return err
}

// CancelDelayedWill drops the will of client id waiting for its Will Delay
// Interval (mqkafka patch: the session continues on another node
// [MQTT-3.1.3-9]).
func (s *Server) CancelDelayedWill(id string) { s.loop.willDelayed.Delete(id) }

// PublishWill publishes pk as the will of client id, now due, as sendLWT
// would (mqkafka patch: a will the cluster kept in the session's record is
// published by the node responsible for the session, which may not be the
// one its connection was on).
func (s *Server) PublishWill(id string, pk packets.Packet) {
	pk.Origin, pk.Created = id, time.Now().Unix()
	pk.Expiry = s.willExpiry(pk, pk.Created)
	if pk.FixedHeader.Retain {
		s.retainMessage(s.inlineClient, pk)
	}
	s.publishToSubscribers(pk) // [MQTT-3.1.2-8]
}
