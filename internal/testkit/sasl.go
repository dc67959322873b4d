package testkit

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// NewSASLKafka starts a kfake that requires SASL from user with mechanism
// (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512), plus opts; read are the options
// of the client that reads its ApiVersions (user's SASL).
//
// kfake serves SaslHandshake v1 only, but librdkafka wants brokers to list
// v0 as well (every real Kafka does, 0..1) and otherwise refuses with "SASL
// Handshake not supported by broker". The cluster's ApiVersions answer is
// therefore read once and served again with SaslHandshake from v0; what
// librdkafka then sends is v1, which kfake handles.
func NewSASLKafka(t testing.TB, mechanism, user, pass string, read []kgo.Opt, opts ...kfake.Opt) string {
	t.Helper()
	c, addr := NewKafka(t, 0, append([]kfake.Opt{kfake.EnableSASL(), kfake.Superuser(mechanism, user, pass)}, opts...)...)
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr)}, read...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := kmsg.NewPtrApiVersionsRequest().RequestWith(ctx, cl)
	if err != nil {
		t.Fatalf("ApiVersions: %v", err)
	}
	maxVersion := int16(-1)
	for i, k := range resp.ApiKeys {
		switch k.ApiKey {
		case int16(kmsg.SASLHandshake):
			resp.ApiKeys[i].MinVersion = 0
		case int16(kmsg.ApiVersions):
			maxVersion = k.MaxVersion
		}
	}
	c.ControlKey(int16(kmsg.ApiVersions), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if kreq.GetVersion() > maxVersion {
			return nil, nil, false
		}
		r := *resp
		r.SetVersion(kreq.GetVersion())
		return &r, nil, true
	})
	return addr
}
