{{/*
Every value this chart cannot honour fails the render with a message naming
it, so that nothing set for GIE's inferencepool chart is silently dropped.
values.schema.json rejects unknown keys and wrong types; this checks meaning.
*/}}
{{- define "openepp.validate" -}}
{{- $ie := .Values.inferenceExtension -}}
{{- $pool := .Values.inferencePool -}}
{{- /* Values of older upstream charts, renamed since. */ -}}
{{- if hasKey $pool "targetPortNumber" -}}
{{- fail "inferencePool.targetPortNumber was replaced by inferencePool.targetPorts (a list of {number: 8000}); set that instead" -}}
{{- end -}}
{{- if or (hasKey $ie.image "hub") (hasKey $ie.image "name") -}}
{{- fail "inferenceExtension.image.hub and .name were replaced by .registry and .repository (image = registry/repository:tag); set those instead" -}}
{{- end -}}
{{- if hasKey $ie.monitoring "secret" -}}
{{- fail "inferenceExtension.monitoring.secret.name was replaced by inferenceExtension.monitoring.prometheus.auth.secretName; set that instead" -}}
{{- end -}}
{{- if hasKey $ie.monitoring "gke" -}}
{{- fail "inferenceExtension.monitoring.gke is deprecated upstream and not supported: use provider.name=gke (GKE managed Prometheus scraping is not rendered by this chart; see its README)" -}}
{{- end -}}
{{- if hasKey $ie "endpointsServer" -}}
{{- fail "inferenceExtension.endpointsServer (an EPP without an InferencePool, upstream's standalone chart) is not supported by this chart: run the EPP with --endpoint-selector from your own manifests" -}}
{{- end -}}
{{- /* What OpenEPP does not have. */ -}}
{{- range $key, $_ := ($ie.latencyPredictor | default dict) -}}
{{- if ne $key "enabled" -}}
{{- fail (printf "inferenceExtension.latencyPredictor.%s: OpenEPP predicts latency in process, with no training or prediction sidecars to configure; keep only latencyPredictor.enabled" $key) -}}
{{- end -}}
{{- end -}}
{{- if and .Values.openepp.discoverPools .Values.openepp.additionalPools -}}
{{- fail "openepp.discoverPools serves every pool whose endpointPickerRef names this release's Service: leave openepp.additionalPools empty" -}}
{{- end -}}
{{- $seen := list (include "openepp.poolName" .) -}}
{{- range $i, $p := (.Values.openepp.additionalPools | default list) -}}
{{- if has $p $seen -}}
{{- fail (printf "openepp.additionalPools[%d]=%q is the release's own pool or listed twice" $i $p) -}}
{{- end -}}
{{- $seen = append $seen $p -}}
{{- end -}}
{{- if ne (toString $pool.apiVersion) "inference.networking.k8s.io/v1" -}}
{{- fail (printf "inferencePool.apiVersion=%q: only inference.networking.k8s.io/v1 is supported" (toString $pool.apiVersion)) -}}
{{- end -}}
{{- if or (not $pool.modelServers) (not $pool.modelServers.matchLabels) -}}
{{- fail "inferencePool.modelServers.matchLabels is required: the labels of the model-server pods (e.g. --set inferencePool.modelServers.matchLabels.app=vllm-llama3-8b-instruct)" -}}
{{- end -}}
{{- if not $pool.targetPorts -}}
{{- fail "inferencePool.targetPorts is required: a list of 1 to 8 {number: <port>} entries" -}}
{{- end -}}
{{- range $i, $p := $pool.targetPorts -}}
{{- if not (and (kindIs "map" $p) $p.number) -}}
{{- fail (printf "inferencePool.targetPorts[%d] must be {number: <port>}" $i) -}}
{{- end -}}
{{- end -}}
{{- $types := list "vllm" "sglang" "triton-tensorrt-llm" "trtllm-serve" -}}
{{- if not (has (toString $pool.modelServerType) $types) -}}
{{- fail (printf "inferencePool.modelServerType=%q is not one of %s" (toString $pool.modelServerType) (join ", " $types)) -}}
{{- end -}}
{{- if eq (toString $pool.modelServerProtocol) "grpc" -}}
{{- fail "inferencePool.modelServerProtocol=grpc is not supported: OpenEPP has no vllmgrpc-parser, so it cannot read gRPC request bodies; use http" -}}
{{- else if ne (toString $pool.modelServerProtocol) "http" -}}
{{- fail (printf "inferencePool.modelServerProtocol=%q is not one of http, grpc" (toString $pool.modelServerProtocol)) -}}
{{- end -}}
{{- $parsers := list "openai-parser" "anthropic-parser" "vllmhttp-parser" "sglanghttp-parser" "passthrough-parser" -}}
{{- if and $pool.parser (not (has (toString $pool.parser) $parsers)) -}}
{{- fail (printf "inferencePool.parser=%q is not one of %s (OpenEPP has no vllmgrpc-parser)" (toString $pool.parser) (join ", " $parsers)) -}}
{{- end -}}
{{- if not (has (toString $ie.failureMode) (list "FailOpen" "FailClose")) -}}
{{- fail (printf "inferenceExtension.failureMode=%q is not one of FailOpen, FailClose" (toString $ie.failureMode)) -}}
{{- end -}}
{{- $provider := lower (toString .Values.provider.name) -}}
{{- if not (has $provider (list "none" "gke" "istio")) -}}
{{- fail (printf "provider.name=%q is not supported: use none, gke or istio (for other gateways, such as kgateway, agentgateway or Envoy Gateway, use none; see docs/deploy.md)" (toString .Values.provider.name)) -}}
{{- end -}}
{{- if and (eq $provider "gke") $ie.monitoring.prometheus.enabled -}}
{{- fail "inferenceExtension.monitoring.prometheus.enabled=true with provider.name=gke: GKE managed Prometheus (PodMonitoring) is not rendered by this chart; scrape the EPP as docs/deploy.md describes" -}}
{{- end -}}
{{- if and $ie.sidecar.enabled (not (and $ie.sidecar.name $ie.sidecar.image)) -}}
{{- fail "inferenceExtension.sidecar.enabled=true needs inferenceExtension.sidecar.name and .image" -}}
{{- end -}}
{{- include "openepp.validateFlags" . -}}
{{- include "openepp.validateConfig" . -}}
{{- include "openepp.validatePrecise" . -}}
{{- include "openepp.validateEnv" . -}}
{{- range $i, $o := .Values.inferenceObjectives -}}
{{- if not (and (kindIs "map" $o) $o.name) -}}
{{- fail (printf "inferenceObjectives[%d] needs a name ({name: ..., priority: ...})" $i) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Flags the chart sets itself from other values. */}}
{{- define "openepp.validateFlags" -}}
{{- $flags := .Values.inferenceExtension.flags | default dict -}}
{{- $owned := dict "pool-name" "the release name" "pool-namespace" "the release namespace" "config-file" "inferenceExtension.pluginsConfigFile" "config-text" "inferenceExtension.pluginsConfigFile" "endpoint-selector" "inferencePool.modelServers.matchLabels" "endpoint-target-ports" "inferencePool.targetPorts" "endpoints" "the InferencePool" "endpoints-file" "the InferencePool" "kubeconfig" "the pod's service account" -}}
{{- range $flag := keys $owned | sortAlpha -}}
{{- if hasKey $flags $flag -}}
{{- fail (printf "inferenceExtension.flags.%s: the chart sets this from %s; remove the flag" $flag (get $owned $flag)) -}}
{{- end -}}
{{- end -}}
{{- $group := index $flags "pool-group" -}}
{{- if and $group (ne (toString $group) "inference.networking.k8s.io") -}}
{{- fail (printf "inferenceExtension.flags.pool-group=%q: the chart's InferencePool is inference.networking.k8s.io" (toString $group)) -}}
{{- end -}}
{{- end -}}

{{/* The config file must be one the chart mounts; a custom one must name the model servers' engine. */}}
{{- define "openepp.validateConfig" -}}
{{- $ie := .Values.inferenceExtension -}}
{{- $custom := $ie.pluginsCustomConfig | default dict -}}
{{- $file := toString $ie.pluginsConfigFile -}}
{{- if hasKey $custom "default-plugins.yaml" -}}
{{- fail "inferenceExtension.pluginsCustomConfig[\"default-plugins.yaml\"]: that file is the chart's own; give your config another name and set pluginsConfigFile to it" -}}
{{- end -}}
{{- if and (ne $file "default-plugins.yaml") (not (hasKey $custom $file)) -}}
{{- fail (printf "inferenceExtension.pluginsConfigFile=%q is neither default-plugins.yaml nor a key of inferenceExtension.pluginsCustomConfig (%s)" $file (join ", " (keys $custom | sortAlpha))) -}}
{{- end -}}
{{- $type := toString .Values.inferencePool.modelServerType -}}
{{- if and (ne $file "default-plugins.yaml") (ne $type "vllm") -}}
{{- $cfg := fromYaml (toString (get $custom $file)) -}}
{{- if hasKey $cfg "Error" -}}
{{- fail (printf "inferenceExtension.pluginsCustomConfig[%q] is not YAML: %s" $file $cfg.Error) -}}
{{- end -}}
{{- $engine := "" -}}
{{- range $cfg.plugins -}}
{{- if and (kindIs "map" .) (eq (toString .type) "core-metrics-extractor") (kindIs "map" .parameters) -}}
{{- $engine = toString (.parameters.defaultEngine | default "") -}}
{{- end -}}
{{- end -}}
{{- if not $engine -}}
{{- fail (printf "inferencePool.modelServerType=%s with pluginsConfigFile=%q: OpenEPP takes the engine's metric names from the config, not from flags; add `- type: core-metrics-extractor` with `parameters: {defaultEngine: %s}` to that file" $type $file $type) -}}
{{- else if ne $engine $type -}}
{{- fail (printf "inferencePool.modelServerType=%s, but pluginsCustomConfig[%q] sets core-metrics-extractor defaultEngine %s; make them agree" $type $file $engine) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
precisePrefixCache: one default profile at a time, vLLM servers (whose KV
events and /tokenize it reads), no central socket when every replica routes,
and a config file of the user's that receives the events as the mode says
(the chart writes only its own file). In bind mode the port must be one no
other one of the EPP's takes; in discoverPods mode it is on the model servers.
*/}}
{{- define "openepp.validatePrecise" -}}
{{- $ie := .Values.inferenceExtension -}}
{{- if include "openepp.precisePrefixCache" . -}}
{{- $port := include "openepp.kvEventsPort" . | int -}}
{{- if ($ie.latencyPredictor | default dict).enabled -}}
{{- fail "inferenceExtension.latencyPredictor.enabled and openepp.precisePrefixCache.enabled are both set: each makes default-plugins.yaml a different profile; enable one" -}}
{{- end -}}
{{- $type := toString .Values.inferencePool.modelServerType -}}
{{- if ne $type "vllm" -}}
{{- fail (printf "openepp.precisePrefixCache.enabled with inferencePool.modelServerType=%s: precise prefix-cache routing reads vLLM's KV events and /tokenize; it needs vllm" $type) -}}
{{- end -}}
{{- if and (eq (include "openepp.kvEventsMode" .) "bind") .Values.openepp.activeActive.enabled -}}
{{- fail "openepp.precisePrefixCache.mode=bind with openepp.activeActive.enabled: through the EPP Service each vLLM would publish its KV events to one replica only, yet every replica routes; set openepp.precisePrefixCache.mode=discoverPods (or leave it empty, which picks discoverPods with activeActive) and start vLLM binding the port" -}}
{{- end -}}
{{- if include "openepp.eppBindsKVEvents" . -}}
{{- $taken := dict -}}
{{- $_ := set $taken (toString ($ie.extProcPort | default 9002 | int)) "Service's ext_proc port (inferenceExtension.extProcPort)" -}}
{{- $_ = set $taken "9003" "Service's grpc-health port" -}}
{{- $_ = set $taken (toString ($ie.metricsPort | default 9090 | int)) "Service's metrics port (inferenceExtension.metricsPort)" -}}
{{- $_ = set $taken (include "openepp.grpcPort" .) "ext_proc port (--grpc-port)" -}}
{{- $_ = set $taken (include "openepp.healthPort" .) "gRPC health port (--grpc-health-port)" -}}
{{- $_ = set $taken (include "openepp.metricsPort" .) "metrics port (--metrics-port)" -}}
{{- if .Values.openepp.activeActive.enabled -}}
{{- $_ = set $taken (toString (.Values.openepp.activeActive.port | int)) "replica-sync port (openepp.activeActive.port)" -}}
{{- end -}}
{{- with get $taken (toString $port) -}}
{{- fail (printf "openepp.precisePrefixCache.port=%d is the EPP's %s; pick another" $port .) -}}
{{- end -}}
{{- range $i, $p := $ie.extraContainerPorts -}}
{{- if and (kindIs "map" $p) (or (eq (toString $p.name) "kv-events") (eq ($p.containerPort | int) $port)) -}}
{{- fail (printf "inferenceExtension.extraContainerPorts[%d] is the kv-events port %d that precisePrefixCache.enabled adds; remove it" $i $port) -}}
{{- end -}}
{{- end -}}
{{- range $i, $p := $ie.extraServicePorts -}}
{{- if and (kindIs "map" $p) (or (eq (toString $p.name) "kv-events") (eq ($p.port | int) $port)) -}}
{{- fail (printf "inferenceExtension.extraServicePorts[%d] is the kv-events port %d that precisePrefixCache.enabled adds; remove it" $i $port) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- include "openepp.validatePreciseConfig" . -}}
{{- end -}}
{{- end -}}

{{/*
A config file of the user's must bind the kv-events port the chart exposes
(bind mode), or connect to the model servers at that port (discoverPods
mode), as the chart's own file would.
*/}}
{{- define "openepp.validatePreciseConfig" -}}
{{- $ie := .Values.inferenceExtension -}}
{{- $port := include "openepp.kvEventsPort" . | int -}}
{{- $discover := eq (include "openepp.kvEventsMode" .) "discoverPods" -}}
{{- $file := toString $ie.pluginsConfigFile -}}
{{- if ne $file "default-plugins.yaml" -}}
{{- $cfg := fromYaml (toString (get ($ie.pluginsCustomConfig | default dict) $file)) -}}
{{- if hasKey $cfg "Error" -}}
{{- fail (printf "inferenceExtension.pluginsCustomConfig[%q] is not YAML: %s" $file $cfg.Error) -}}
{{- end -}}
{{- $binds := false -}}
{{- $connects := false -}}
{{- range $cfg.plugins -}}
{{- if and (kindIs "map" .) (eq (toString .type) "precise-prefix-cache-producer") -}}
{{- $kv := (.parameters | default dict).kvEventsConfig | default dict -}}
{{- if and (not $kv.discoverPods) (hasSuffix (printf ":%d" $port) (toString ($kv.zmqEndpoint | default "tcp://*:5557"))) -}}
{{- $binds = true -}}
{{- end -}}
{{- /* socketPort defaults to 5557 when absent; an explicit 0 is not absent. */ -}}
{{- $discovery := $kv.podDiscoveryConfig | default dict -}}
{{- $socketPort := 5557 -}}
{{- if hasKey $discovery "socketPort" }}{{ $socketPort = $discovery.socketPort | int }}{{ end -}}
{{- if and $kv.discoverPods (eq $socketPort $port) -}}
{{- $connects = true -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and $discover (not $connects) -}}
{{- fail (printf "openepp.precisePrefixCache.enabled with pluginsConfigFile=%q in discoverPods mode (openepp.precisePrefixCache.mode, the default with openepp.activeActive.enabled): the toggle writes only the chart's own default-plugins.yaml and exposes no kv-events port, since each EPP replica connects to every model server; that file must do so itself: add a precise-prefix-cache-producer with kvEventsConfig {discoverPods: true, podDiscoveryConfig: {socketPort: %d}}, or use default-plugins.yaml" $file $port) -}}
{{- else if and (not $discover) (not $binds) -}}
{{- fail (printf "openepp.precisePrefixCache.enabled with pluginsConfigFile=%q: the toggle writes only the chart's own default-plugins.yaml; the chart still exposes the kv-events port %d, which that file must bind itself: add a precise-prefix-cache-producer with kvEventsConfig.zmqEndpoint \"tcp://*:%d\" (and no discoverPods), or use default-plugins.yaml" $file $port $port) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "openepp.validateEnv" -}}
{{- range (include "openepp.userEnv" . | fromYaml).env -}}
{{- if has (toString .name) (list "POOL_NAME" "POOL_NAMESPACE") -}}
{{- fail (printf "inferenceExtension.env: %s is set by the chart (the EPP's pool comes from the downward API); remove it" .name) -}}
{{- end -}}
{{- end -}}
{{- end -}}
