package config

// DefaultText is the configuration used when neither --config-file nor
// --config-text is given. Its content is upstream's default (GIE v1.5.0's
// built-in default, the Helm chart's default-plugins.yaml and llm-d's
// agree); config/default.yaml is a byte-identical copy, checked by a test.
// Implicit in it, and added by defaulting: single-profile-handler,
// max-score-picker, openai-parser, utilization-detector and
// approx-prefix-cache-producer.
const DefaultText = `apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: queue-scorer
- type: kv-cache-utilization-scorer
- type: prefix-cache-scorer
- type: metrics-data-source
  parameters:
    scheme: http
    path: /metrics
    insecureSkipVerify: true
- type: core-metrics-extractor
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: queue-scorer
    weight: 2
  - pluginRef: kv-cache-utilization-scorer
    weight: 2
  - pluginRef: prefix-cache-scorer
    weight: 3
dataLayer:
  sources:
  - pluginRef: metrics-data-source
    extractors:
    - pluginRef: core-metrics-extractor
`
