package admin

import (
	"embed"
	"io/fs"
	"net/http"
	"path"
)

// uiFiles is the dashboard: plain HTML, CSS and ES modules, so that building
// mqkafka needs no Node toolchain.
//
//go:embed ui
var uiFiles embed.FS

// uiType is set explicitly because mime.TypeByExtension also reads the
// host's mime.types, and a browser refuses a module script served with a
// type other than JavaScript.
func uiType(ext string) string {
	switch ext {
	case ".html":
		return "text/html; charset=utf-8"
	case ".js":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case ".png":
		return "image/png"
	}
	return ""
}

// uiCSP allows nothing outside the admin listener: the dashboard must work
// on a host without Internet access and must not leak the token to a third
// party even if a template renders hostile text.
const uiCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"

// uiHandler serves the dashboard. Its files need no token: they hold no
// data, and the browser sends the token with every API call instead.
func uiHandler() http.Handler {
	root, err := fs.Sub(uiFiles, "ui")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files := http.FileServerFS(root)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ext := path.Ext(r.URL.Path)
		if r.URL.Path == "/" {
			ext = ".html"
		}
		h := w.Header()
		if ct := uiType(ext); ct != "" {
			h.Set("Content-Type", ct)
		}
		// no-cache rather than a long max-age: assets are not fingerprinted,
		// and an upgrade must not run an old app.js against a new API.
		h.Set("Cache-Control", "no-cache")
		h.Set("Content-Security-Policy", uiCSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		files.ServeHTTP(w, r)
	})
}
