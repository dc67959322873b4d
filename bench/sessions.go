package bench

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// movingSessions is how many persistent sessions the cluster scenario
// moves off a killed node.
const movingSessions = 1000

// sessionDialers bounds the connections the bench opens at once.
const sessionDialers = 50

// moveSessions connects movingSessions persistent sessions to from, each
// subscribed to its own topic, kills from (SIGKILL), reconnects each to
// one of to in turn and measures, from the kill, until each has its
// session back (CONNACK session present = 1); then one publish on to[0]
// per session checks that its subscription moved with it.
func (r *runner) moveSessions(ctx context.Context, tag uint32, from *mqSide, to []*mqSide, res *Result) error {
	if from.ch == nil {
		return errors.New("moving sessions needs a node the bench started")
	}
	id := func(i int) string { return fmt.Sprintf("move-%08x-%d", tag, i) }
	topic := func(i int) string { return fmt.Sprintf("move/%08x/%d", tag, i) }
	olds := make([]*mqttConn, movingSessions)
	if err := each(ctx, func(i int) error {
		c, _, err := dialSession(ctx, from.addr, nil, id(i), 0, 600)
		if err != nil {
			return err
		}
		olds[i] = c
		return c.subscribe(topic(i), 1)
	}); err != nil {
		return fmt.Errorf("sessions on %s: %w", from.addr, err)
	}
	killed := time.Now()
	from.ch.kill()
	for _, c := range olds {
		_ = c.nc.Close()
	}
	news := make([]*mqttConn, movingSessions)
	took := make([]time.Duration, movingSessions)
	var absent atomic.Int64
	err := each(ctx, func(i int) error {
		c, present, err := dialSession(ctx, to[i%len(to)].addr, nil, id(i), 0, 600)
		if err != nil {
			return err
		}
		took[i] = time.Since(killed)
		if !present {
			absent.Add(1)
		}
		news[i] = c
		return nil
	})
	defer func() {
		for _, c := range news {
			if c != nil {
				c.disconnect()
			}
		}
	}()
	if err != nil {
		return fmt.Errorf("sessions resumed: %w", err)
	}
	all := time.Since(killed)
	got, err := r.publishToEach(ctx, to[0].addr, tag, news, topic)
	if err != nil {
		return err
	}
	sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	if res.Extra == nil {
		res.Extra = map[string]any{}
	}
	res.Extra["moved_sessions"] = movingSessions
	res.Extra["moved_session_present"] = movingSessions - absent.Load()
	res.Extra["moved_all_seconds"] = all.Seconds()
	res.Extra["moved_p50_ms"] = ms(took[len(took)/2])
	res.Extra["moved_p99_ms"] = ms(took[len(took)*99/100])
	res.Extra["moved_subscriptions_delivered"] = got
	return nil
}

// publishToEach publishes one QoS 1 message on addr to each session's
// topic and counts the sessions that receive it.
func (r *runner) publishToEach(ctx context.Context, addr string, tag uint32, conns []*mqttConn, topic func(int) string) (int64, error) {
	pub, err := dialMQTT(ctx, addr, nil, fmt.Sprintf("move-pub-%08x", tag), 0)
	if err != nil {
		return 0, err
	}
	defer pub.disconnect()
	for i := range conns {
		if err := pub.writePublish(topic(i), 1, uint16(i%65535+1), []byte("moved")); err != nil {
			return 0, err
		}
	}
	if err := pub.flush(); err != nil {
		return 0, err
	}
	var got atomic.Int64
	_ = each(ctx, func(i int) error {
		c := conns[i]
		_ = c.nc.SetReadDeadline(time.Now().Add(30 * time.Second))
		for {
			typ, _, _, err := c.readPacket()
			if err != nil {
				return nil
			}
			if typ == pktPublish {
				got.Add(1)
				return nil
			}
		}
	})
	return got.Load(), nil
}

// each runs f for 0..movingSessions-1 on sessionDialers goroutines and
// returns the first error.
func each(ctx context.Context, f func(i int) error) error {
	var (
		next    atomic.Int64
		wg      sync.WaitGroup
		errOnce sync.Once
		first   error
	)
	for range sessionDialers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= movingSessions {
					return
				}
				if err := f(i); err != nil {
					errOnce.Do(func() { first = err })
					return
				}
			}
		}()
	}
	wg.Wait()
	return first
}
