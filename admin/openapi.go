package admin

import (
	_ "embed"
	"net/http"
)

// openAPI documents every route of the admin listener, as OpenAPI 3.
//
//go:embed openapi.json
var openAPI []byte

func serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(openAPI)
}
