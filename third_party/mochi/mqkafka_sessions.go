package mqtt

import "github.com/mqkafka/mqkafka/third_party/mochi/packets"

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
