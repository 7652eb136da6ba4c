{{/*
OpenTelemetry settings of the EPP when inferenceExtension.tracing.enabled, with
upstream's meaning: OTLP/gRPC to otelExporterEndpoint, the given sampler, and
the pod's namespace, node and name as resource attributes. Names the user's
env sets (dict key "skip") are left to it.
*/}}
{{- define "openepp.tracingEnv" -}}
{{- $t := .tracing -}}
{{- $vars := list
  (dict "name" "OTEL_SERVICE_NAME" "value" "gateway-api-inference-extension/epp")
  (dict "name" "OTEL_EXPORTER_OTLP_ENDPOINT" "value" (toString $t.otelExporterEndpoint))
  (dict "name" "OTEL_TRACES_EXPORTER" "value" "otlp")
  (dict "name" "OPENEPP_NODE_NAME" "valueFrom" (dict "fieldRef" (dict "fieldPath" "spec.nodeName")))
  (dict "name" "OPENEPP_POD_NAME" "valueFrom" (dict "fieldRef" (dict "fieldPath" "metadata.name")))
  (dict "name" "OTEL_RESOURCE_ATTRIBUTES" "value" "k8s.namespace.name=$(POOL_NAMESPACE),k8s.node.name=$(OPENEPP_NODE_NAME),k8s.pod.name=$(OPENEPP_POD_NAME)")
  (dict "name" "OTEL_TRACES_SAMPLER" "value" (toString $t.sampling.sampler))
  (dict "name" "OTEL_TRACES_SAMPLER_ARG" "value" (include "openepp.flagValue" $t.sampling.samplerArg))
-}}
{{- range $vars }}
{{- if not (has .name $.skip) }}
- {{ toYaml . | nindent 2 | trim }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
The sidecar container of inferenceExtension.sidecar, with upstream's fields.
It runs under the pod's security context (non-root, UID 65532) and
openepp.sidecarSecurityContext.
*/}}
{{- define "openepp.sidecar" -}}
{{- $s := .Values.inferenceExtension.sidecar -}}
- name: {{ $s.name }}
  image: {{ $s.image | quote }}
  imagePullPolicy: {{ $s.imagePullPolicy | default "IfNotPresent" }}
  {{- with $s.command }}
  command:
  {{- if kindIs "slice" . }}
  {{- toYaml . | nindent 2 }}
  {{- else }}
  - {{ . | quote }}
  {{- end }}
  {{- end }}
  {{- with $s.args }}
  args:
  {{- range . }}
  - {{ toString . | quote }}
  {{- end }}
  {{- end }}
  {{- with $s.env }}
  env:
  {{- toYaml . | nindent 2 }}
  {{- end }}
  {{- with $s.ports }}
  ports:
  {{- toYaml . | nindent 2 }}
  {{- end }}
  {{- with $s.livenessProbe }}
  livenessProbe:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $s.readinessProbe }}
  readinessProbe:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $s.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $s.volumeMounts }}
  volumeMounts:
  {{- toYaml . | nindent 2 }}
  {{- end }}
  {{- with .Values.openepp.sidecarSecurityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}

{{/*
default-plugins.yaml: upstream's default profile (queue 2, KV cache 2, prefix
3) reading the engine of inferencePool.modelServerType; for vLLM with the
default metricsDataSource it is config/default.yaml byte for byte. With
inferenceExtension.latencyPredictor.enabled it is upstream's latency
profile instead (affinity filters gated by predicted TTFT, the headroom
tier filter, latency-scorer, weighted random picking, the SLO admitter),
on OpenEPP's in-process predictor: no sidecars. With
openepp.precisePrefixCache.enabled it is the default profile on
llm-d's precise pipeline (token-producer tokenizing on the candidates'
/tokenize, precise-prefix-cache-producer binding precisePrefixCache.port for
the servers' KV events, prefix-cache-scorer reading it): for vLLM with the
default metricsDataSource and port, config/precise-prefix-cache.yaml but its
comments. In discoverPods mode (openepp.kvEventsMode) the producer connects
to every model server at that port instead of binding it. openepp.validate
refuses both profiles at once.
*/}}
{{- define "openepp.defaultConfig" -}}
{{- $mds := .Values.inferenceExtension.metricsDataSource | default dict -}}
{{- $type := toString .Values.inferencePool.modelServerType -}}
{{- $parser := toString (.Values.inferencePool.parser | default "") -}}
{{- $latency := (.Values.inferenceExtension.latencyPredictor | default dict).enabled -}}
{{- $precise := include "openepp.precisePrefixCache" . -}}
apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
{{- if $latency }}
- type: predicted-latency-producer
- name: strict-affinity-filter
  type: prefix-cache-affinity-filter
  parameters:
    affinityThreshold: 0.99
    ttftSource: latencyPredictor
- name: loose-affinity-filter
  type: prefix-cache-affinity-filter
  parameters:
    affinityThreshold: 0.8
    ttftSource: latencyPredictor
- type: slo-headroom-tier-filter
- type: latency-scorer
- type: weighted-random-picker
- type: latency-slo-admitter
{{- else }}
{{- if $precise }}
- type: token-producer
  parameters:
    backend: vllm
    vllm:
      endpointDiscovery: {}
- type: precise-prefix-cache-producer
  parameters:
    speculativeIndexing: true
    kvEventsConfig:
{{- if eq (include "openepp.kvEventsMode" .) "discoverPods" }}
      discoverPods: true
      podDiscoveryConfig:
        socketPort: {{ include "openepp.kvEventsPort" . }}
{{- else }}
      zmqEndpoint: tcp://*:{{ include "openepp.kvEventsPort" . }}
{{- end }}
{{- end }}
- type: queue-scorer
- type: kv-cache-utilization-scorer
- type: prefix-cache-scorer
{{- if $precise }}
  parameters:
    prefixMatchInfoProducerName: precise-prefix-cache-producer
{{- end }}
{{- end }}
- type: metrics-data-source
  parameters:
    scheme: {{ include "openepp.scalar" ($mds.scheme | default "http") }}
    path: {{ include "openepp.scalar" ($mds.path | default "/metrics") }}
    insecureSkipVerify: {{ if hasKey $mds "insecureSkipVerify" }}{{ $mds.insecureSkipVerify }}{{ else }}true{{ end }}
- type: core-metrics-extractor
{{- if ne $type "vllm" }}
  parameters:
    defaultEngine: {{ $type }}
{{- end }}
{{- if $parser }}
- type: {{ $parser }}
{{- end }}
schedulingProfiles:
- name: default
  plugins:
{{- if $latency }}
  - pluginRef: strict-affinity-filter
  - pluginRef: slo-headroom-tier-filter
  - pluginRef: loose-affinity-filter
  - pluginRef: latency-scorer
  - pluginRef: weighted-random-picker
{{- else }}
  - pluginRef: queue-scorer
    weight: 2
  - pluginRef: kv-cache-utilization-scorer
    weight: 2
  - pluginRef: prefix-cache-scorer
    weight: 3
{{- end }}
{{- if $parser }}
parser:
  pluginRef: {{ $parser }}
{{- end }}
dataLayer:
  sources:
  - pluginRef: metrics-data-source
    extractors:
    - pluginRef: core-metrics-extractor
{{ end -}}
