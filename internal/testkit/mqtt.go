package testkit

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

// MQTTSession opens an MQTT 5 session with cp over conn, disconnected when
// the test ends; a refused CONNECT returns the CONNACK and an error. Over TLS
// or WebSocket leave cp.KeepAlive at 0: paho's pinger writes from its own
// goroutine while paho writes a packet in several Writes, which only a TCP
// connection's writev keeps together.
func MQTTSession(t testing.TB, conn net.Conn, cp *paho.Connect, onMsg func(*paho.Publish)) (*paho.Client, *paho.Connack, error) {
	t.Helper()
	cc := paho.ClientConfig{ClientID: cp.ClientID, Conn: conn}
	if onMsg != nil {
		cc.OnPublishReceived = []func(paho.PublishReceived) (bool, error){
			func(pr paho.PublishReceived) (bool, error) { onMsg(pr.Packet); return true, nil },
		}
	}
	c := paho.NewClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ca, err := c.Connect(ctx, cp)
	if err != nil {
		return nil, ca, err
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	return c, ca, nil
}

// MQTTClient connects a clean MQTT 5 session over TCP to addr; onMsg, when
// set, receives the publishes. The test fails if the broker refuses it.
func MQTTClient(t testing.TB, addr, clientID string, onMsg func(*paho.Publish)) *paho.Client {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial mqtt: %v", err)
	}
	c, ca, err := MQTTSession(t, conn, &paho.Connect{ClientID: clientID, CleanStart: true, KeepAlive: 30}, onMsg)
	if err != nil {
		t.Fatalf("mqtt connect %s: %v (connack %+v)", clientID, err, ca)
	}
	return c
}
