package broker

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
	mqtt "github.com/mqkafka/mqkafka/third_party/mochi"
	"github.com/mqkafka/mqkafka/third_party/mochi/listeners"

	"github.com/mqkafka/mqkafka/conf"
	"github.com/mqkafka/mqkafka/internal/logx"
)

// newListener builds one configured listener; a nil cr accepts at any rate.
func newListener(id string, l conf.Listener, p *pending, cr *connRate, rates *clientRates, acceptErrors *atomic.Int64, log *slog.Logger) (*listener, error) {
	var tc *tls.Config
	if l.TLS() {
		var err error
		if tc, err = tlsConfig(l); err != nil {
			return nil, err
		}
	}
	w := &listener{pending: p, rates: rates, acceptErrors: acceptErrors, log: log.With("listener", id)}
	var throttle func(<-chan struct{}) bool
	if cr != nil {
		throttle = cr.throttle
	}
	if l.WebSocket() {
		w.Listener = &wsListener{id: id, address: l.Address, path: l.Path, tls: tc, pending: p, rates: rates,
			onAcceptError: w.acceptError, throttle: throttle}
	} else {
		w.Listener = listeners.NewTCP(listeners.Config{ID: id, Address: l.Address, TLSConfig: tc,
			OnAcceptError: w.acceptError, Throttle: throttle})
	}
	return w, nil
}

// failingFor is how long after its last failed accept a listener counts as
// unable to accept: its retries come at least once a second while accepts
// fail, and with no connection waiting it has nothing to fail on.
const failingFor = 2 * time.Second

// listener is a configured listener as the broker serves it: connections
// wait for CONNECT in pending, and what keeps it from accepting is counted,
// logged and reported by Healthy.
type listener struct {
	listeners.Listener
	pending      *pending
	rates        *clientRates
	acceptErrors *atomic.Int64
	log          *slog.Logger

	closing, stopped atomic.Bool
	failed           atomic.Pointer[acceptFailure] // the last failed accept; nil once one succeeds
	// unix ns of the last failure and recovery logged: near the limit,
	// accepts can fail and succeed by turns
	lastLog, lastRecovery atomic.Int64
}

type acceptFailure struct {
	at  time.Time
	err error
}

// Serve serves until Close; returning before is a stopped listener.
func (l *listener) Serve(establish listeners.EstablishFn) {
	l.Listener.Serve(func(id string, c net.Conn) error {
		l.pending.add(c)
		err := establish(id, l.rates.wrap(c))
		// Anyone can open a socket, or send a wrong password: one line each
		// (mochi's listener logs what it is returned) would let them fill the
		// log. Refusals are counted and logged, rate-limited, where made.
		if l.pending.done(c) && err != nil {
			l.log.Debug("connection closed before CONNECT", "remote", c.RemoteAddr().String(), "err", err)
		} else if err != nil {
			l.log.Debug("client ended", "remote", c.RemoteAddr().String(), "err", err)
		}
		return nil
	})
	if !l.closing.Load() {
		l.stopped.Store(true)
		l.log.Error("MQTT listener stopped accepting connections")
	}
}

// Close stops the listener.
func (l *listener) Close(closeClients listeners.CloseFn) {
	l.closing.Store(true)
	l.Listener.Close(closeClients)
}

// acceptError is told of each failed accept, which the listener retries,
// and with nil of the success after them.
func (l *listener) acceptError(err error) {
	if err == nil {
		l.failed.Store(nil)
		if logx.Allowed(&l.lastRecovery) {
			l.log.Info("MQTT listener accepts connections again (logged at most once a second)")
		}
		return
	}
	l.acceptErrors.Add(1)
	l.failed.Store(&acceptFailure{at: time.Now(), err: err})
	if logx.Allowed(&l.lastLog) {
		l.log.Warn("MQTT listener cannot accept connections, retrying (logged at most once a second)", "err", err)
	}
}

// health reports why the listener does not accept connections, if so.
func (l *listener) health() (bool, string) {
	if l.stopped.Load() {
		return false, fmt.Sprintf("listener %s stopped accepting connections", l.ID())
	}
	if f := l.failed.Load(); f != nil && time.Since(f.at) < failingFor {
		why := f.err
		var errno syscall.Errno
		if errors.As(why, &errno) {
			why = errno // "too many open files", without the address around it
		}
		return false, fmt.Sprintf("listener %s cannot accept: %v", l.ID(), why)
	}
	return true, ""
}

// tlsConfig is a listener's TLS server side, with EMQX's ssl_options meaning:
// verify_peer checks a client certificate against cacertfile when one is
// given, and fail_if_no_peer_cert also refuses clients without one.
func tlsConfig(l conf.Listener) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(l.CertFile, l.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("certfile %s, keyfile %s: %w", l.CertFile, l.KeyFile, err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if l.Verify == "verify_peer" {
		if tc.ClientCAs, err = conf.LoadCertPool(l.CACertFile); err != nil {
			return nil, fmt.Errorf("cacertfile: %w", err)
		}
		tc.ClientAuth = tls.VerifyClientCertIfGiven
		if l.FailIfNoPeerCert {
			tc.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
	return tc, nil
}

// wsListener serves MQTT over WebSocket on one path. mochi's own listener
// answers on every path and binds only once serving, so that a taken port
// is a log line instead of an error at start, and ":0" cannot be learnt.
type wsListener struct {
	id, address, path string
	tls               *tls.Config
	pending           *pending
	rates             *clientRates
	onAcceptError     func(error)
	throttle          func(done <-chan struct{}) bool // nil: no max_conn_rate

	ln        net.Listener
	srv       *http.Server
	establish listeners.EstablishFn
	log       *slog.Logger

	closeOnce sync.Once
}

func (l *wsListener) ID() string { return l.id }

func (l *wsListener) Address() string {
	if l.ln != nil {
		return l.ln.Addr().String()
	}
	return l.address
}

func (l *wsListener) Protocol() string {
	if l.tls != nil {
		return "wss"
	}
	return "ws"
}

// Init binds the address.
func (l *wsListener) Init(log *slog.Logger) error {
	l.log = log
	ln, err := net.Listen("tcp", l.address)
	if err != nil {
		return err
	}
	if l.tls != nil {
		ln = tls.NewListener(ln, l.tls)
	}
	l.ln = &retryListener{Listener: ln, done: make(chan struct{}), pending: l.pending, onError: l.onAcceptError, throttle: l.throttle}
	// Made here, not in Serve, so that Close never races with Serve.
	mux := http.NewServeMux()
	mux.HandleFunc(l.path, l.upgrade)
	// No ReadHeaderTimeout: idle_timeout closes a connection that has not
	// sent CONNECT, the HTTP request and upgrade included, and is counted.
	l.srv = &http.Server{Handler: mux, ErrorLog: stdlog.New(&httpErrorLog{log: l.log}, "", 0),
		ConnState: func(c net.Conn, s http.ConnState) {
			if s == http.StateClosed {
				l.pending.done(c) // never upgraded; an upgraded one waits for CONNECT
			}
		}}
	return nil
}

// httpErrorLog logs the HTTP server's errors, which are mostly anyone's to
// cause (failed TLS handshakes, malformed requests), at most once a second.
type httpErrorLog struct {
	log  *slog.Logger
	last atomic.Int64
}

func (w *httpErrorLog) Write(p []byte) (int, error) {
	if logx.Allowed(&w.last) {
		w.log.Warn("websocket listener: "+strings.TrimSpace(string(p)), "note", "logged at most once a second")
	}
	return len(p), nil
}

// retryListener retries failed accepts as mochi's TCP listener does:
// http.Server retries only those it deems temporary (not ENOBUFS or
// ENOMEM), logs each and stops for good on the others. Each connection
// waits for CONNECT from its accept, so that the HTTP request and upgrade
// count against idle_timeout.
type retryListener struct {
	net.Listener
	done      chan struct{}
	closeOnce sync.Once
	pending   *pending
	onError   func(error)
	throttle  func(done <-chan struct{}) bool
}

func (l *retryListener) Accept() (net.Conn, error) {
	c, err := listeners.Accept(l.Listener, l.done, l.onError)
	if err != nil {
		return nil, err
	}
	if l.throttle != nil && !l.throttle(l.done) {
		_ = c.Close()
		return nil, net.ErrClosed
	}
	l.pending.add(c)
	return c, nil
}

func (l *retryListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// Serve accepts WebSocket upgrades until Close.
func (l *wsListener) Serve(establish listeners.EstablishFn) {
	// Set before the server starts the goroutines that read it.
	l.establish = establish
	if err := l.srv.Serve(l.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		l.log.Error("websocket listener stopped", "err", err)
	}
}

func (l *wsListener) upgrade(w http.ResponseWriter, r *http.Request) {
	up := &websocket.Upgrader{
		Subprotocols: []string{"mqtt"},
		// Browsers on any origin are MQTT clients like any other; they
		// authenticate in CONNECT.
		CheckOrigin: func(*http.Request) bool { return true },
	}
	c, err := up.Upgrade(w, r, nil)
	if err != nil {
		return // Upgrade has answered the request
	}
	defer c.Close()
	if err := l.establish(l.id, l.rates.wrap(&wsConn{Conn: c.NetConn(), c: c})); err != nil {
		l.log.Debug("websocket client ended", "err", err)
	}
}

// Close stops accepting and disconnects the listener's clients, whose
// connections the HTTP server no longer tracks once upgraded.
func (l *wsListener) Close(closeClients listeners.CloseFn) {
	l.closeOnce.Do(func() {
		if l.srv != nil {
			_ = l.srv.Close()
		}
		// Also when Serve never ran; a second close is harmless.
		if l.ln != nil {
			_ = l.ln.Close()
		}
		closeClients(l.id)
	})
}

// wsConn carries MQTT bytes in binary WebSocket messages; deadlines and
// addresses are the underlying connection's.
type wsConn struct {
	net.Conn
	c   *websocket.Conn
	r   io.Reader // the message being read, if any
	wmu sync.Mutex
}

func (ws *wsConn) Read(p []byte) (int, error) {
	for {
		if ws.r == nil {
			op, r, err := ws.c.NextReader()
			if err != nil {
				return 0, err
			}
			if op != websocket.BinaryMessage {
				return 0, errors.New("websocket: MQTT needs binary messages")
			}
			ws.r = r
		}
		n, err := ws.r.Read(p)
		if errors.Is(err, io.EOF) {
			ws.r = nil
			err = nil
			if n == 0 {
				continue // an empty message or the end of one
			}
		}
		return n, err
	}
}

// CloseWrite sends a close frame and closes the writing side of the
// connection under it, so that mochi's last packet reaches the client
// before the connection closes (mqtt.CloseWrite).
func (ws *wsConn) CloseWrite() error {
	ws.wmu.Lock()
	err := ws.c.WriteControl(websocket.CloseMessage,
		websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	ws.wmu.Unlock()
	if err != nil {
		return fmt.Errorf("websocket close frame: %w", err)
	}
	if !mqtt.CloseWrite(ws.Conn) {
		return errors.New("websocket: cannot close the writing side")
	}
	return nil
}

// Write sends p as one binary message. gorilla/websocket allows one writer
// at a time; mochi writes under its own lock, but a client (the tests')
// may not.
func (ws *wsConn) Write(p []byte) (int, error) {
	ws.wmu.Lock()
	defer ws.wmu.Unlock()
	if err := ws.c.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}
