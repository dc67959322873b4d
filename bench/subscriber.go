package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// subscriberQoS is the subscriptions' QoS; publishers still use the run's.
// The ceiling measures the broker's ingest path: one QoS 1 subscriber fed by
// 100 publishers would measure its own round trips instead, and once it is
// max_inflight messages behind the broker drops the rest for it by design.
// (It used to stall for good after ~9,200 messages: a send-quota bug in
// mochi, fixed in third_party/mochi, see broker/fanin_test.go.)
const subscriberQoS = 0

// subscriber is one MQTT subscriber at the far end of broker-raw and source.
type subscriber struct {
	c    *mqttConn
	done chan error
	once sync.Once
	err  error
}

// subscribe connects, subscribes to filter and starts reading into rec
// until close. It asks for the largest Receive Maximum so that the broker's
// own in-flight limit, not the client's, bounds what it sends.
func subscribe(ctx context.Context, addr, clientID, filter string, qos byte, rec *recorder) (*subscriber, error) {
	c, err := dialMQTT(ctx, addr, nil, clientID, 65535)
	if err != nil {
		return nil, err
	}
	if err := c.subscribe(filter, qos); err != nil {
		c.disconnect()
		return nil, err
	}
	s := &subscriber{c: c, done: make(chan error, 1)}
	go func() { s.done <- s.read(rec) }()
	return s, nil
}

// read acknowledges QoS 1 publishes in batches: PUBACKs are flushed when
// nothing more is buffered to read, so a burst costs one write.
func (s *subscriber) read(rec *recorder) error {
	for {
		if s.c.br.Buffered() == 0 {
			if err := s.c.flush(); err != nil {
				return err
			}
		}
		typ, flags, body, err := s.c.readPacket()
		if err != nil {
			return err
		}
		switch typ {
		case pktPublish:
			pid, qos, payload, ok := parsePublish(flags, body)
			if !ok {
				return errors.New("malformed PUBLISH")
			}
			rec.record(payload, time.Now().UnixNano())
			if qos > 0 {
				if err := s.c.writePuback(pid); err != nil {
					return err
				}
			}
		case pktDisconnect:
			return fmt.Errorf("broker sent DISCONNECT")
		}
	}
}

// close disconnects and returns the reading error, if it was not the
// close; after it the recorder is no longer written. Closing again is a
// no-op.
func (s *subscriber) close() error {
	s.once.Do(func() {
		s.c.disconnect()
		if err := <-s.done; !isClosedErr(err) {
			s.err = err
		}
	})
	return s.err
}

func isClosedErr(err error) bool {
	return err == nil || errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF)
}
