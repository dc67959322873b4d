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
	"slices"
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
	mux := http.NewServeMux()
	for _, rt := range s.routes() {
		h := rt.handler
		if !rt.open {
			h = s.authorized(h)
		}
		mux.Handle(rt.pattern, h)
	}
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	return s, nil
}

// route is one pattern the admin listener answers.
type route struct {
	pattern string
	handler http.Handler
	open    bool // answered without a token
}

// routes are every endpoint; /healthz and the dashboard's files need no
// token. openapi.json documents each of them (TestOpenAPICoversRoutes).
func (s *Server) routes() []route {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collector{snap: s.rt.Snapshot})
	fn := func(pattern string, h http.HandlerFunc) route { return route{pattern: pattern, handler: h} }
	return []route{
		{pattern: "GET /healthz", handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, 200, map[string]string{"status": "ok"}) }), open: true},
		fn("GET /readyz", s.readyz),
		{pattern: "GET /metrics", handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{})},
		fn("GET /api/v1/openapi.json", serveOpenAPI),
		fn("GET /api/v1/status", s.status),
		fn("GET /api/v1/cluster", s.cluster),
		fn("GET /api/v1/rates", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, 200, s.rates.history()) }),
		fn("GET /api/v1/config", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, 200, redactedConfig(s.rt.Config())) }),
		fn("GET /api/v1/{kind}", s.list),
		fn("GET /api/v1/{kind}/{name}", s.get),
		fn("GET /api/v1/{kind}/{name}/entry", s.entry),
		fn("GET /api/v1/{kind}/{name}/status", s.entryStatus),
		fn("POST /api/v1/rules/test", s.testRule),
		fn("POST /api/v1/connectors/{name}/test", s.testConnector),
		fn("POST /api/v1/{kind}", s.change(true)),
		fn("PUT /api/v1/{kind}/{name}", s.change(false)),
		fn("DELETE /api/v1/{kind}/{name}", s.remove),
		{pattern: "GET /", handler: uiHandler(), open: true},
	}
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

func (s *Server) authorized(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.token != "" {
			got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(s.token)) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="mqkafka"`)
				writeJSON(w, http.StatusUnauthorized, apiError{Code: "UNAUTHORIZED", Message: "a valid Authorization: Bearer <token> header is required"})
				return
			}
		}
		next.ServeHTTP(w, r)
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

// statusesOf returns a snapshot's statuses of kind, keyed by name.
func statusesOf(snap Snapshot, kind string) (map[string]any, bool) {
	byName := map[string]any{}
	switch kind {
	case "sinks":
		for _, e := range snap.Sinks {
			byName[e.Name] = e
		}
	case "sources":
		for _, e := range snap.Sources {
			byName[e.Name] = e
		}
	case "connectors":
		for _, e := range snap.Connectors {
			byName[e.Name] = e
		}
	case "rules":
		for _, e := range snap.Rules {
			byName[e.ID] = e
		}
	default:
		return nil, false
	}
	return byName, true
}

// entriesOf returns the configuration's entries of kind in their file form,
// with every default filled in and secrets redacted: what a PUT takes back.
func entriesOf(cfg *conf.Config, kind string) (names []string, forms []any, ok bool) {
	add := func(name string, v any) {
		names = append(names, name)
		forms = append(forms, redact(conf.Form(v)))
	}
	switch kind {
	case "sinks":
		for _, e := range cfg.Sinks {
			add(e.Name, e)
		}
	case "sources":
		for _, e := range cfg.Sources {
			add(e.Name, e)
		}
	case "connectors":
		for _, e := range cfg.Connectors {
			add(e.Name, e)
		}
	case "rules":
		for _, e := range cfg.Rules {
			add(e.ID, e)
		}
	default:
		return nil, nil, false
	}
	if forms == nil {
		forms = []any{}
	}
	return names, forms, true
}

// effectiveEntry is one entry of the configuration in its file form.
func effectiveEntry(cfg *conf.Config, kind, name string) (any, bool) {
	names, forms, _ := entriesOf(cfg, kind)
	if i := slices.Index(names, name); i >= 0 {
		return forms[i], true
	}
	return nil, false
}

func notFound(w http.ResponseWriter, kind, name string) {
	writeJSON(w, http.StatusNotFound, apiError{Code: "NOT_FOUND", Message: fmt.Sprintf("no %s named %q", kind, name)})
}

func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	_, forms, ok := entriesOf(s.rt.Config(), r.PathValue("kind"))
	if !ok {
		writeJSON(w, http.StatusNotFound, apiError{Code: "NOT_FOUND", Message: conf.ErrKind.Error()})
		return
	}
	writeJSON(w, 200, forms)
}

func (s *Server) get(w http.ResponseWriter, r *http.Request) {
	e, ok := effectiveEntry(s.rt.Config(), r.PathValue("kind"), r.PathValue("name"))
	if !ok {
		notFound(w, r.PathValue("kind"), r.PathValue("name"))
		return
	}
	writeJSON(w, 200, e)
}

// entryStatus answers one entry's status, counters and rates; a rule's
// status also exists for the rules sinks' mqtt_topic_filters make
// ("sink:<name>"), which have no entry.
func (s *Server) entryStatus(w http.ResponseWriter, r *http.Request) {
	byName, _ := statusesOf(s.snapshot(), r.PathValue("kind"))
	e, found := byName[r.PathValue("name")]
	if !found {
		notFound(w, r.PathValue("kind"), r.PathValue("name"))
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
		conf.JSONNumbers(entry)
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
		if k := placeholderSecret(entry); k != "" {
			writeJSON(w, http.StatusBadRequest, apiError{Code: "BAD_REQUEST", Message: fmt.Sprintf("%s: %q is how the API shows a secret; send the secret itself", k, redacted)})
			return
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
		e, _ := effectiveEntry(s.rt.Config(), ch.Kind, ch.Name)
		writeJSON(w, okCode, e)
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
	notFound(w, "connectors", r.PathValue("name"))
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
