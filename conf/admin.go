package conf

import (
	"net"
	"os"
	"strings"
)

// validateAdmin reads token_file and refuses an unauthenticated admin
// listener anywhere but loopback.
func (c *Config) validateAdmin(bad func(path, format string, args ...any)) {
	a := &c.Admin
	if a.TokenFile != "" {
		if a.Token != "" {
			bad("admin.token_file", "set token or token_file, not both")
		}
		data, err := os.ReadFile(a.TokenFile)
		if err != nil {
			bad("admin.token_file", "%v", err)
		} else if a.Token = Secret(strings.TrimSpace(string(data))); a.Token == "" {
			bad("admin.token_file", "%s is empty", a.TokenFile)
		}
	}
	if a.Listen == "" {
		return
	}
	host, _, err := net.SplitHostPort(a.Listen)
	if err != nil {
		bad("admin.listen", "%q: %v", a.Listen, err)
		return
	}
	if a.Token == "" && !isLoopback(host) {
		bad("admin.listen", "%q is not a loopback address: set admin.token (or token_file) so that the API is not open to the network", a.Listen)
	}
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
