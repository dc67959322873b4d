// SPDX-License-Identifier: MIT
// mqkafka patch: see MQKAFKA_PATCHES.md.

package listeners

import (
	"errors"
	"net"
	"time"
)

// Accept backoff bounds: net/http's Server waits as long between retries.
const (
	minAcceptDelay = 5 * time.Millisecond
	maxAcceptDelay = time.Second
)

// Accept waits for a connection on ln. A failed accept (EMFILE, ENFILE,
// ENOBUFS, ENOMEM, ...) does not end it: the listener is still open and
// accepts again once the shortage passes, so it retries after 5ms, doubling
// to 1s, telling onError (if set) of each failure and, with nil, of the
// success that follows. It returns an error only once ln or done is closed.
func Accept(ln net.Listener, done <-chan struct{}, onError func(error)) (net.Conn, error) {
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err == nil {
			if delay > 0 && onError != nil {
				onError(nil)
			}
			return c, nil
		}
		if errors.Is(err, net.ErrClosed) {
			return nil, err
		}
		delay = min(max(2*delay, minAcceptDelay), maxAcceptDelay)
		if onError != nil {
			onError(err)
		}
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-done:
			t.Stop()
			return nil, net.ErrClosed
		}
	}
}
