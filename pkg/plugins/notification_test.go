package plugins_test

import (
	"strings"
	"testing"

	"github.com/openepp/openepp/pkg/config"
	"github.com/openepp/openepp/pkg/plugins"
)

// llmdEndpointExtractors pairs llm-d's endpoint-notification-source with
// the plugins llm-d attaches to it, as llm-d's P2P and topology guides
// write their configs.
const llmdEndpointExtractors = `apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: token-producer
  parameters:
    modelName: m
- type: endpoint-notification-source
- name: precise-cache
  type: precise-prefix-cache-producer
  parameters:
    kvEventsConfig:
      discoverPods: true
- type: topology-extractor
- type: p2p-source-producer
  parameters:
    prefixMatchInfoProducerName: precise-cache
- type: queue-scorer
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: queue-scorer
dataLayer:
  sources:
  - pluginRef: endpoint-notification-source
    extractors:
    - pluginRef: precise-cache
    - pluginRef: topology-extractor
`

func buildText(t *testing.T, text string) error {
	t.Helper()
	reg, err := plugins.InTree()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load([]byte(text))
	if err != nil {
		return err
	}
	_, err = config.BuildWith(cfg, config.BuildOptions{Registry: reg})
	return err
}

// TestEndpointNotificationSourceLoads: llm-d's endpoint lifecycle source
// loads with the extractors llm-d pairs it with, and refuses a plugin that
// does not follow endpoints.
func TestEndpointNotificationSourceLoads(t *testing.T) {
	t.Parallel()
	if err := buildText(t, llmdEndpointExtractors); err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(llmdEndpointExtractors, "    - pluginRef: topology-extractor\n", "    - pluginRef: queue-scorer\n", 1)
	err := buildText(t, bad)
	if err == nil || !strings.Contains(err.Error(), "does not follow endpoints") {
		t.Fatalf("pairing queue-scorer with the source: %v", err)
	}
}
