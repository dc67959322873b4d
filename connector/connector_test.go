package connector

import (
	"testing"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/mqkafka/mqkafka/conf"
)

// TestConfigMapOrder: a client's own settings yield to the connector's, and
// [connectors.properties] override both.
func TestConfigMapOrder(t *testing.T) {
	var cn conf.Connector
	cn.SetDefaults()
	cn.BootstrapHosts = "h:9092"
	cn.Authentication = &conf.ConnectorAuth{Mechanism: "plain", Username: "u", Password: "p"}
	cn.Properties = map[string]string{"linger.ms": "7", "client.id": "mine"}
	cm := Settings(cn).ConfigMap("id", kafka.ConfigMap{"linger.ms": 1, "security.protocol": "ssl", "acks": "all"})
	for k, want := range map[string]any{
		"bootstrap.servers": "h:9092", "linger.ms": "7", "client.id": "mine", "acks": "all",
		"security.protocol": "sasl_plaintext", "sasl.mechanisms": "PLAIN", "sasl.password": "p",
	} {
		if cm[k] != want {
			t.Errorf("%s = %v, want %v", k, cm[k], want)
		}
	}
}

func TestClientIDs(t *testing.T) {
	for _, tc := range []struct{ prefix, egress, ingress string }{
		{"", "k:egress:n1:2:1", "k:ingress:n1:src"},
		{"p", "p:k:egress:n1:2:1", "p:k:ingress:n1:src"},
	} {
		c := Config{ClientIDPrefix: tc.prefix}
		if id := c.EgressID("k", "n1", 2, 1); id != tc.egress {
			t.Errorf("egress %q, want %q", id, tc.egress)
		}
		if id := c.IngressID("k", "n1", "src"); id != tc.ingress {
			t.Errorf("ingress %q, want %q", id, tc.ingress)
		}
	}
}
