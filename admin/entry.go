package admin

import (
	"errors"
	"net/http"
	"strings"

	"github.com/mqkafka/mqkafka/conf"
)

// redacted stands for a secret in an entry the API shows; sent back
// unchanged in a PUT it means "keep the current secret", so that an edit
// form can round-trip an entry without ever holding the secret.
const redacted = "******"

// secretKey reports whether a key's value is a secret: mqkafka's own
// password, and librdkafka properties such as "sasl.password",
// "ssl.key.password", "ssl.key.pem" or "sasl.oauthbearer.config".
func secretKey(k string) bool {
	k = strings.ToLower(k)
	return strings.Contains(k, "password") || strings.Contains(k, "secret") ||
		k == "ssl.key.pem" || k == "sasl.oauthbearer.config"
}

// redact returns a copy of v with every secret replaced; the entry it
// comes from may be shared with the running overlay, so it is not changed.
func redact(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			if _, isStr := e.(string); isStr && secretKey(k) {
				out[k] = redacted
				continue
			}
			out[k] = redact(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = redact(e)
		}
		return out
	case []map[string]any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = redact(e)
		}
		return out
	}
	return v
}

// restoreSecrets puts the current value back wherever entry holds the
// redacted placeholder for a secret that cur has.
func restoreSecrets(entry, cur map[string]any) {
	for k, v := range entry {
		switch x := v.(type) {
		case string:
			if x == redacted && secretKey(k) {
				if old, ok := cur[k].(string); ok {
					entry[k] = old
				}
			}
		case map[string]any:
			if sub, ok := cur[k].(map[string]any); ok {
				restoreSecrets(x, sub)
			}
		}
	}
}

// placeholderSecret returns the key path of a secret that still holds the
// redacted placeholder, or "". Taken literally it would become the password
// (a GET copied into a POST), so such a body is refused instead.
func placeholderSecret(entry map[string]any) string {
	for k, v := range entry {
		switch x := v.(type) {
		case string:
			if x == redacted && secretKey(k) {
				return k
			}
		case map[string]any:
			if p := placeholderSecret(x); p != "" {
				return k + "." + p
			}
		}
	}
	return ""
}

// entry answers GET /api/v1/{kind}/{name}/entry: the entry as written, in
// the file or through the API, as an edit form needs it (GET
// /api/v1/{kind}/{name} shows it with every default filled in).
func (s *Server) entry(w http.ResponseWriter, r *http.Request) {
	kind, name := r.PathValue("kind"), r.PathValue("name")
	if _, ok := conf.KindKey(kind); !ok {
		writeJSON(w, http.StatusNotFound, apiError{Code: "NOT_FOUND", Message: conf.ErrKind.Error()})
		return
	}
	e, err := s.rt.Entry(kind, name)
	switch {
	case errors.Is(err, conf.ErrNotFound):
		notFound(w, kind, name)
	case err != nil:
		writeJSON(w, http.StatusInternalServerError, apiError{Code: "INTERNAL", Message: err.Error()})
	default:
		writeJSON(w, http.StatusOK, redact(e))
	}
}

// keepSecrets lets a PUT carry "******" for an unchanged secret.
func (s *Server) keepSecrets(kind, name string, entry map[string]any) {
	if cur, err := s.rt.Entry(kind, name); err == nil {
		restoreSecrets(entry, cur)
	}
}

// redactedConfig is the effective configuration as the API shows it: the
// typed secrets print themselves as "******"; librdkafka properties that
// hold secrets are masked here.
func redactedConfig(cfg *conf.Config) *conf.Config {
	c := *cfg
	c.Connectors = make([]conf.Connector, len(cfg.Connectors))
	for i, cn := range cfg.Connectors {
		props := make(map[string]string, len(cn.Properties))
		for k, v := range cn.Properties {
			if secretKey(k) {
				v = redacted
			}
			props[k] = v
		}
		cn.Properties = props
		c.Connectors[i] = cn
	}
	return &c
}
