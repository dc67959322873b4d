package listeners

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"
)

// failingListener fails its first accepts with EMFILE, as a process out of
// file descriptors does, then hands out conns, until closed.
type failingListener struct {
	mu       sync.Mutex
	failures int // accepts still to fail
	conns    chan net.Conn
	closed   chan struct{}
	once     sync.Once
}

func newFailingListener(failures int) *failingListener {
	return &failingListener{failures: failures, conns: make(chan net.Conn, 1), closed: make(chan struct{})}
}

func (l *failingListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	fail := l.failures > 0
	l.failures--
	l.mu.Unlock()
	select {
	case <-l.closed:
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: net.ErrClosed}
	default:
	}
	if fail {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: net.ErrClosed}
	}
}

func (l *failingListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *failingListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

// TestMqkafkaTCPRetriesFailedAccepts: accepts failing with EMFILE do not
// stop the listener; the next connection is established, and each failure
// and the recovery are reported.
func TestMqkafkaTCPRetriesFailedAccepts(t *testing.T) {
	var mu sync.Mutex
	var reported []error
	l := NewTCP(Config{ID: "t1", OnAcceptError: func(err error) {
		mu.Lock()
		defer mu.Unlock()
		reported = append(reported, err)
	}})
	l.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	fl := newFailingListener(3)
	l.listen = fl
	established := make(chan net.Conn, 1)
	served := make(chan struct{})
	go func() {
		defer close(served)
		l.Serve(func(_ string, c net.Conn) error {
			established <- c
			return nil
		})
	}()
	near, far := net.Pipe()
	defer far.Close()
	fl.conns <- near
	select {
	case c := <-established:
		if c != near {
			t.Fatal("established another conn")
		}
	case <-served:
		t.Fatal("Serve returned after a failed accept")
	case <-time.After(10 * time.Second):
		t.Fatal("no connection established after failed accepts")
	}
	mu.Lock()
	if len(reported) != 4 || !errors.Is(reported[0], syscall.EMFILE) || reported[3] != nil {
		t.Errorf("reported %v, want 3 EMFILE failures then nil", reported)
	}
	mu.Unlock()
	l.Close(func(string) {})
	select {
	case <-served:
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after Close")
	}
}

// TestMqkafkaTCPCloseStopsRetrying: Close ends a Serve that is waiting to
// retry a failing accept.
func TestMqkafkaTCPCloseStopsRetrying(t *testing.T) {
	failed := make(chan struct{}, 1)
	l := NewTCP(Config{ID: "t1", OnAcceptError: func(error) {
		select {
		case failed <- struct{}{}:
		default:
		}
	}})
	l.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	l.listen = stuckListener{}
	served := make(chan struct{})
	go func() {
		defer close(served)
		l.Serve(func(string, net.Conn) error { return nil })
	}()
	select {
	case <-failed:
	case <-time.After(10 * time.Second):
		t.Fatal("no accept failure reported")
	}
	l.Close(func(string) {})
	select {
	case <-served:
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after Close")
	}
}

// stuckListener fails even after Close, so only the listener's own done
// signal can end the retries.
type stuckListener struct{}

func (stuckListener) Accept() (net.Conn, error) {
	return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
}
func (stuckListener) Close() error   { return nil }
func (stuckListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

// TestMqkafkaTCPThrottle: an accepted connection is handed over only once
// Throttle returns; Close ends a wait in it, and closes that connection.
func TestMqkafkaTCPThrottle(t *testing.T) {
	asked, allow := make(chan struct{}, 1), make(chan struct{})
	l := NewTCP(Config{ID: "t1", Throttle: func(done <-chan struct{}) bool {
		asked <- struct{}{}
		select {
		case <-allow:
			return true
		case <-done:
			return false
		}
	}})
	l.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	fl := newFailingListener(0)
	l.listen = fl
	established := make(chan net.Conn, 2)
	served := make(chan struct{})
	go func() {
		defer close(served)
		l.Serve(func(_ string, c net.Conn) error {
			established <- c
			return nil
		})
	}()
	wait := func(c <-chan struct{}, what string) {
		t.Helper()
		select {
		case <-c:
		case <-time.After(10 * time.Second):
			t.Fatal(what)
		}
	}
	near, far := net.Pipe()
	defer far.Close()
	fl.conns <- near
	wait(asked, "Throttle not called for an accepted connection")
	if len(established) != 0 {
		t.Fatal("a connection was handed over before Throttle returned")
	}
	allow <- struct{}{}
	if c := <-established; c != near {
		t.Fatal("established another conn")
	}
	near2, far2 := net.Pipe()
	fl.conns <- near2
	wait(asked, "Throttle not called for the second connection")
	l.Close(func(string) {})
	wait(served, "Serve did not return after Close")
	if _, err := far2.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("the throttled connection was not closed: %v", err)
	}
	if len(established) != 0 {
		t.Fatal("the throttled connection was handed over after Close")
	}
}
