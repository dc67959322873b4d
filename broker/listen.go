package broker

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/mochi-mqtt/server/v2/listeners"

	"github.com/mqkafka/mqkafka/conf"
)

// newListener builds one configured listener.
func newListener(id string, l conf.Listener) (listeners.Listener, error) {
	var tc *tls.Config
	if l.TLS() {
		var err error
		if tc, err = tlsConfig(l); err != nil {
			return nil, err
		}
	}
	if l.WebSocket() {
		return &wsListener{id: id, address: l.Address, path: l.Path, tls: tc}, nil
	}
	return listeners.NewTCP(listeners.Config{ID: id, Address: l.Address, TLSConfig: tc}), nil
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
	l.ln = ln
	// Made here, not in Serve, so that Close never races with Serve.
	mux := http.NewServeMux()
	mux.HandleFunc(l.path, l.upgrade)
	l.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	return nil
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
	if err := l.establish(l.id, &wsConn{Conn: c.NetConn(), c: c}); err != nil {
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
