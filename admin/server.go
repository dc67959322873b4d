package admin

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mqkafka/mqkafka/conf"
	"github.com/mqkafka/mqkafka/rule"
)

// Server is the admin HTTP listener.
type Server struct {
	rt    Runtime
	token string
	log   *slog.Logger
	rates rates

	ln     net.Listener
	srv    *http.Server
	cancel context.CancelFunc
	done   chan struct{}
}

// New listens on addr; Serve answers until Close. An empty token means no
// authentication, which conf allows only on loopback addresses.
func New(addr, token string, rt Runtime, log *slog.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	s := &Server{rt: rt, token: token, log: log.With("component", "admin"), ln: ln, done: make(chan struct{})}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collector{snap: rt.Snapshot})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, 200, map[string]string{"status": "ok"}) })
	auth := func(pattern string, h http.HandlerFunc) { mux.Handle(pattern, s.authorized(h)) }
	auth("GET /readyz", s.readyz)
	auth("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP)
	auth("GET /api/v1/status", s.status)
	auth("GET /api/v1/cluster", s.cluster)
	auth("GET /api/v1/config", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, 200, redactedConfig(rt.Config())) })
	auth("GET /api/v1/{kind}", s.list)
	auth("GET /api/v1/{kind}/{name}", s.get)
	auth("GET /api/v1/{kind}/{name}/entry", s.entry)
	auth("POST /api/v1/rules/test", s.testRule)
	auth("POST /api/v1/connectors/{name}/test", s.testConnector)
	auth("POST /api/v1/{kind}", s.change(true))
	auth("PUT /api/v1/{kind}/{name}", s.change(false))
	auth("DELETE /api/v1/{kind}/{name}", s.remove)
	mux.Handle("GET /", uiHandler())
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	return s, nil
}

// Addr is the bound address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Start serves requests and samples rates until Close.
func (s *Server) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go func() {
		defer close(s.done)
		go s.rates.run(ctx, s.rt.Snapshot)
		if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("admin listener", "err", err)
		}
		<-ctx.Done()
	}()
}

// Close stops the listener and waits for its goroutines.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if s.cancel != nil {
		s.cancel()
		<-s.done
	}
	return err
}

func (s *Server) authorized(next http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.token != "" {
			got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(s.token)) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="mqkafka"`)
				writeJSON(w, http.StatusUnauthorized, apiError{Code: "UNAUTHORIZED", Message: "a valid Authorization: Bearer <token> header is required"})
				return
			}
		}
		next(w, r)
	})
}

// apiError is the body of every error answer.
type apiError struct {
	Code     string   `json:"code"`
	Message  string   `json:"message"`
	Problems []string `json:"problems,omitempty"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func (s *Server) snapshot() Snapshot {
	snap := s.rt.Snapshot()
	s.rates.fill(&snap)
	return snap
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	if ok, why := s.rt.Ready(); !ok {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready", "reason": why})
		return
	}
	writeJSON(w, 200, map[string]string{"status": "ready"})
}

func (s *Server) status(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, 200, s.snapshot())
}

// cluster answers the nodes of the cluster, as this node sees them.
func (s *Server) cluster(w http.ResponseWriter, _ *http.Request) {
	c := s.rt.Snapshot().Cluster
	if c == nil {
		writeJSON(w, http.StatusNotFound, apiError{Code: "NOT_FOUND", Message: "this node is in no cluster: [cluster] is not set"})
		return
	}
	writeJSON(w, 200, c)
}

// entries returns a snapshot's entries of kind, keyed by name.
func entriesOf(snap Snapshot, kind string) (map[string]any, []any, bool) {
	byName := map[string]any{}
	var list []any
	add := func(name string, v any) {
		byName[name] = v
		list = append(list, v)
	}
	switch kind {
	case "sinks":
		for _, e := range snap.Sinks {
			add(e.Name, e)
		}
	case "sources":
		for _, e := range snap.Sources {
			add(e.Name, e)
		}
	case "connectors":
		for _, e := range snap.Connectors {
			add(e.Name, e)
		}
	case "rules":
		for _, e := range snap.Rules {
			add(e.ID, e)
		}
	default:
		return nil, nil, false
	}
	if list == nil {
		list = []any{}
	}
	return byName, list, true
}

func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	_, list, ok := entriesOf(s.snapshot(), r.PathValue("kind"))
	if !ok {
		writeJSON(w, http.StatusNotFound, apiError{Code: "NOT_FOUND", Message: conf.ErrKind.Error()})
		return
	}
	writeJSON(w, 200, list)
}

func (s *Server) get(w http.ResponseWriter, r *http.Request) {
	byName, _, ok := entriesOf(s.snapshot(), r.PathValue("kind"))
	e, found := byName[r.PathValue("name")]
	if !ok || !found {
		writeJSON(w, http.StatusNotFound, apiError{Code: "NOT_FOUND", Message: fmt.Sprintf("no %s named %q", r.PathValue("kind"), r.PathValue("name"))})
		return
	}
	writeJSON(w, 200, e)
}

// Limits of request bodies, checked before they are decoded. A
// configuration entry nests a few tables deep; the rule test's payload is
// a string, so its depth does not count here.
const (
	maxBodyBytes = 1 << 20
	maxBodyDepth = 32
)

// decodeBody reads a JSON object; integral numbers stay integers so that
// they validate as TOML integers would. It answers the errors itself and
// returns false then.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, maxBodyBytes)); err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			writeJSON(w, http.StatusRequestEntityTooLarge, apiError{Code: "TOO_LARGE", Message: fmt.Sprintf("the body is larger than %d bytes", maxBodyBytes)})
		} else {
			writeJSON(w, http.StatusBadRequest, apiError{Code: "BAD_REQUEST", Message: fmt.Sprint("reading the body: ", err)})
		}
		return false
	}
	if !rule.JSONNestsAtMost(buf.String(), maxBodyDepth) {
		writeJSON(w, http.StatusBadRequest, apiError{Code: "BAD_REQUEST", Message: fmt.Sprintf("the body nests deeper than %d levels", maxBodyDepth)})
		return false
	}
	dec := json.NewDecoder(&buf)
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		writeJSON(w, http.StatusBadRequest, apiError{Code: "BAD_REQUEST", Message: fmt.Sprint("the body must be a JSON object: ", err)})
		return false
	}
	return true
}

func normalize(v any) any {
	switch x := v.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
		f, _ := x.Float64()
		return f
	case map[string]any:
		for k, e := range x {
			x[k] = normalize(e)
		}
	case []any:
		for i, e := range x {
			x[i] = normalize(e)
		}
	}
	return v
}

func (s *Server) change(create bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		kind := r.PathValue("kind")
		key, ok := conf.KindKey(kind)
		if !ok {
			writeJSON(w, http.StatusNotFound, apiError{Code: "NOT_FOUND", Message: conf.ErrKind.Error()})
			return
		}
		var entry map[string]any
		if !decodeBody(w, r, &entry) {
			return
		}
		if entry == nil {
			writeJSON(w, http.StatusBadRequest, apiError{Code: "BAD_REQUEST", Message: "the body must be a JSON object, not null"})
			return
		}
		normalize(entry)
		name, _ := entry[key].(string)
		if !create {
			if name != "" && name != r.PathValue("name") {
				writeJSON(w, http.StatusBadRequest, apiError{Code: "BAD_REQUEST", Message: fmt.Sprintf("%s %q in the body does not match the path", key, name)})
				return
			}
			name = r.PathValue("name")
			if _, set := entry[key]; !set {
				entry[key] = name
			}
			s.keepSecrets(kind, name, entry)
		}
		// Without a name the entry cannot be merged into the configuration
		// to be validated there; checked alone, a name of the wrong type
		// and the entry's other bad keys are reported as such.
		if _, isString := entry[key].(string); !isString {
			if ps := conf.CheckEntry(kind, entry); len(ps) > 0 {
				writeJSON(w, http.StatusBadRequest, badConfig(ps))
				return
			}
		}
		if name == "" {
			writeJSON(w, http.StatusBadRequest, apiError{Code: "BAD_REQUEST", Message: fmt.Sprintf("%q must not be empty", key)})
			return
		}
		code := http.StatusOK
		if create {
			code = http.StatusCreated
		}
		s.apply(w, r, conf.Change{Kind: kind, Name: name, Entry: entry, Create: create}, code)
	}
}

func (s *Server) remove(w http.ResponseWriter, r *http.Request) {
	s.apply(w, r, conf.Change{Kind: r.PathValue("kind"), Name: r.PathValue("name")}, http.StatusNoContent)
}

func (s *Server) apply(w http.ResponseWriter, r *http.Request, ch conf.Change, okCode int) {
	err := s.rt.Change(r.Context(), ch)
	var ce *conf.Error
	switch {
	case err == nil:
		s.log.Info("configuration changed through the API", "kind", ch.Kind, "name", ch.Name, "deleted", ch.Entry == nil)
		if okCode == http.StatusNoContent {
			w.WriteHeader(okCode)
			return
		}
		byName, _, _ := entriesOf(s.snapshot(), ch.Kind)
		writeJSON(w, okCode, byName[ch.Name])
	case errors.As(err, &ce):
		writeJSON(w, http.StatusBadRequest, badConfig(ce.Problems))
	case errors.Is(err, conf.ErrNotFound), errors.Is(err, conf.ErrKind):
		writeJSON(w, http.StatusNotFound, apiError{Code: "NOT_FOUND", Message: err.Error()})
	case errors.Is(err, conf.ErrExists):
		writeJSON(w, http.StatusConflict, apiError{Code: "ALREADY_EXISTS", Message: err.Error()})
	default:
		writeJSON(w, http.StatusInternalServerError, apiError{Code: "INTERNAL", Message: err.Error()})
	}
}

func badConfig(problems []conf.Problem) apiError {
	var ps []string
	for _, p := range problems {
		ps = append(ps, p.Msg)
	}
	return apiError{Code: "BAD_CONFIG", Message: "the configuration does not validate", Problems: ps}
}

func (s *Server) testConnector(w http.ResponseWriter, r *http.Request) {
	for _, cn := range s.rt.Config().Connectors {
		if cn.Name != r.PathValue("name") {
			continue
		}
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		defer cancel()
		if err := s.rt.TestConnector(ctx, cn); err != nil {
			writeJSON(w, http.StatusBadGateway, apiError{Code: "CONNECT_FAILED", Message: err.Error()})
			return
		}
		writeJSON(w, 200, map[string]string{"status": "connected"})
		return
	}
	writeJSON(w, http.StatusNotFound, apiError{Code: "NOT_FOUND", Message: fmt.Sprintf("no connector named %q", r.PathValue("name"))})
}

func (s *Server) testRule(w http.ResponseWriter, r *http.Request) {
	var req RuleTest
	if !decodeBody(w, r, &req) {
		return
	}
	// Rules take such a payload for no JSON at all; a test of it would
	// show nothing the caller meant to see.
	if !rule.JSONNestsAtMost(req.Payload, rule.MaxJSONDepth) {
		writeJSON(w, http.StatusBadRequest, apiError{Code: "BAD_PAYLOAD", Message: fmt.Sprintf("payload: JSON nested deeper than %d levels, which rules treat as not JSON", rule.MaxJSONDepth)})
		return
	}
	res, err := req.Run(s.rt.Config())
	if err != nil {
		writeJSON(w, http.StatusBadRequest, apiError{Code: "BAD_SQL", Message: err.Error()})
		return
	}
	writeJSON(w, 200, res)
}
