package helmchart

import (
	"strings"
	"testing"
)

// TestBadValuesFailWithAClearMessage: a value the chart cannot honour stops
// `helm install` with a message naming it; nothing is silently ignored.
func TestBadValuesFailWithAClearMessage(t *testing.T) {
	t.Parallel()
	custom := "inferenceExtension:\n  pluginsConfigFile: mine.yaml\n  pluginsCustomConfig:\n    mine.yaml: |\n" +
		"      apiVersion: inference.networking.x-k8s.io/v1alpha1\n      kind: EndpointPickerConfig\n"
	for _, tc := range []struct {
		name  string
		files []string
		set   []string
		want  string
	}{
		{name: "unsupported provider", set: []string{modelApp, "provider.name=kgateway"},
			want: `provider.name="kgateway" is not supported: use none, gke or istio`},
		{name: "discovered and additional pools", set: []string{modelApp, "openepp.discoverPools=true", "openepp.additionalPools={qwen}"},
			want: "openepp.discoverPools serves every pool whose endpointPickerRef names this release's Service: leave openepp.additionalPools empty"},
		{name: "additional pool is the release's", set: []string{modelApp, "openepp.additionalPools={qwen," + release + "}"},
			want: `openepp.additionalPools[1]="` + release + `" is the release's own pool or listed twice`},
		{name: "missing matchLabels", set: []string{"provider.name=none"},
			want: "inferencePool.modelServers.matchLabels is required"},
		{name: "unknown modelServerType", set: []string{modelApp, "inferencePool.modelServerType=tgi"},
			want: `inferencePool.modelServerType="tgi" is not one of vllm, sglang, triton-tensorrt-llm, trtllm-serve`},
		{name: "grpc model servers", set: []string{modelApp, "inferencePool.modelServerProtocol=grpc"},
			want: "inferencePool.modelServerProtocol=grpc is not supported"},
		{name: "vLLM gRPC parser", set: []string{modelApp, "inferencePool.parser=vllmgrpc-parser"},
			want: `inferencePool.parser="vllmgrpc-parser" is not one of`},
		{name: "latency predictor sidecars", set: []string{modelApp, "inferenceExtension.latencyPredictor.enabled=true", "inferenceExtension.latencyPredictor.trainingServer.port=8000"},
			want: "inferenceExtension.latencyPredictor.trainingServer: OpenEPP predicts latency in process"},
		{name: "both default profiles", set: []string{modelApp, "inferenceExtension.latencyPredictor.enabled=true", precise},
			want: "inferenceExtension.latencyPredictor.enabled and openepp.precisePrefixCache.enabled are both set"},
		{name: "precise port out of range (schema)", set: []string{modelApp, precise, "openepp.precisePrefixCache.port=70000"},
			want: "at '/openepp/precisePrefixCache/port': maximum"},
		{name: "precise port not a number (schema)", set: []string{modelApp, precise, "openepp.precisePrefixCache.port=zmq"},
			want: "at '/openepp/precisePrefixCache/port': got string, want integer"},
		{name: "precise port the EPP's own", set: []string{modelApp, precise, "openepp.precisePrefixCache.port=9090"},
			want: "openepp.precisePrefixCache.port=9090 is the EPP's metrics port (--metrics-port); pick another"},
		{name: "precise port also an extra port", set: []string{modelApp, precise, "inferenceExtension.extraServicePorts[0].name=kv-events",
			"inferenceExtension.extraServicePorts[0].port=5557", "inferenceExtension.extraServicePorts[0].targetPort=kv-events"},
			want: "inferenceExtension.extraServicePorts[0] is the kv-events port 5557 that precisePrefixCache.enabled adds; remove it"},
		{name: "precise with SGLang", set: []string{modelApp, precise, "inferencePool.modelServerType=sglang"},
			want: "precise prefix-cache routing reads vLLM's KV events and /tokenize; it needs vllm"},
		{name: "precise with a config that does not bind the port", files: []string{custom}, set: []string{modelApp, precise},
			want: `pluginsConfigFile="mine.yaml": the toggle writes only the chart's own default-plugins.yaml; the chart still exposes the kv-events port 5557, which that file must bind itself`},
		{name: "precise bind with active-active", set: []string{modelApp, precise, activeActive, "openepp.precisePrefixCache.mode=bind"},
			want: "openepp.precisePrefixCache.mode=bind with openepp.activeActive.enabled: through the EPP Service each vLLM would publish its KV events to one replica only, yet every replica routes; set openepp.precisePrefixCache.mode=discoverPods"},
		{name: "precise mode unknown (schema)", set: []string{modelApp, precise, "openepp.precisePrefixCache.mode=central"},
			want: "at '/openepp/precisePrefixCache/mode': value must be one of '', 'bind', 'discoverPods'"},
		{name: "precise discoverPods with a config that binds", files: []string{ownPreciseConfig("{zmqEndpoint: \"tcp://*:5557\"}")},
			set:  []string{modelApp, precise, activeActive},
			want: `pluginsConfigFile="mine.yaml" in discoverPods mode (openepp.precisePrefixCache.mode, the default with openepp.activeActive.enabled): the toggle writes only the chart's own default-plugins.yaml and exposes no kv-events port`},
		{name: "precise discoverPods with a config on another port", files: []string{ownPreciseConfig("{discoverPods: true}")},
			set:  []string{modelApp, precise, discoverPods, "openepp.precisePrefixCache.port=5600"},
			want: "add a precise-prefix-cache-producer with kvEventsConfig {discoverPods: true, podDiscoveryConfig: {socketPort: 5600}}"},
		{name: "precise bind with a config that discovers pods", files: []string{ownPreciseConfig("{discoverPods: true}")}, set: []string{modelApp, precise},
			want: `the chart still exposes the kv-events port 5557, which that file must bind itself`},
		{name: "precise setting OpenEPP lacks (schema)", set: []string{modelApp, precise, "openepp.precisePrefixCache.zmqEndpoint=tcp://*:1"},
			want: "additional properties 'zmqEndpoint' not allowed"},
		{name: "old pool API", set: []string{modelApp, "inferencePool.apiVersion=inference.networking.x-k8s.io/v1alpha2"},
			want: "only inference.networking.k8s.io/v1 is supported"},
		{name: "old targetPortNumber", set: []string{modelApp, "inferencePool.targetPortNumber=8000"},
			want: "inferencePool.targetPortNumber was replaced by inferencePool.targetPorts"},
		{name: "old image hub", set: []string{modelApp, "inferenceExtension.image.hub=example.com"},
			want: "inferenceExtension.image.hub and .name were replaced by .registry and .repository"},
		{name: "old monitoring secret", set: []string{modelApp, "inferenceExtension.monitoring.secret.name=s"},
			want: "replaced by inferenceExtension.monitoring.prometheus.auth.secretName"},
		{name: "standalone mode", set: []string{modelApp, "inferenceExtension.endpointsServer.createInferencePool=false"},
			want: "inferenceExtension.endpointsServer (an EPP without an InferencePool"},
		{name: "GKE monitoring", set: []string{modelApp, "provider.name=gke", "inferenceExtension.monitoring.prometheus.enabled=true"},
			want: "GKE managed Prometheus (PodMonitoring) is not rendered"},
		{name: "config file not in the ConfigMap", set: []string{modelApp, "inferenceExtension.pluginsConfigFile=mine.yaml"},
			want: `inferenceExtension.pluginsConfigFile="mine.yaml" is neither default-plugins.yaml nor a key`},
		{name: "custom config replacing the default", set: []string{modelApp, "inferenceExtension.pluginsCustomConfig.default-plugins\\.yaml=x"},
			want: `pluginsCustomConfig["default-plugins.yaml"]: that file is the chart's own`},
		{name: "custom config without the engine", files: []string{custom}, set: []string{modelApp, "inferencePool.modelServerType=sglang"},
			want: "add `- type: core-metrics-extractor` with `parameters: {defaultEngine: sglang}`"},
		{name: "flag the chart owns", set: []string{modelApp, "inferenceExtension.flags.pool-name=other"},
			want: "inferenceExtension.flags.pool-name: the chart sets this from the release name"},
		{name: "another pool group", set: []string{modelApp, "inferenceExtension.flags.pool-group=inference.networking.x-k8s.io"},
			want: "the chart's InferencePool is inference.networking.k8s.io"},
		{name: "env the chart owns", set: []string{modelApp, "inferenceExtension.env[0].name=POOL_NAME", "inferenceExtension.env[0].value=x"},
			want: "inferenceExtension.env: POOL_NAME is set by the chart"},
		{name: "failure mode", set: []string{modelApp, "inferenceExtension.failureMode=Sometimes"},
			want: `inferenceExtension.failureMode="Sometimes" is not one of FailOpen, FailClose`},
		{name: "memory limit GOMEMLIMIT cannot follow", set: []string{modelApp, "inferenceExtension.resources.limits.memory=1.5Gi"},
			want: `limits.memory="1.5Gi": cannot derive GOMEMLIMIT from it; set openepp.goMemLimit`},
		{name: "sidecar without an image", set: []string{modelApp, "inferenceExtension.sidecar.enabled=true", "inferenceExtension.sidecar.name=x"},
			want: "inferenceExtension.sidecar.enabled=true needs inferenceExtension.sidecar.name and .image"},
		{name: "misspelt value (schema)", set: []string{modelApp, "inferenceExtension.replica=2"},
			want: "additional properties 'replica' not allowed"},
		{name: "wrong type (schema)", set: []string{modelApp, "inferenceExtension.replicas=two"},
			want: "replicas"},
		{name: "objective without a name (schema)", set: []string{modelApp, "inferenceObjectives[0].priority=1"},
			want: "missing property 'name'"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := renderErr(t, install{name: release, namespace: "ns", files: tc.files, set: tc.set})
			if err == nil {
				t.Fatalf("rendered; want an error containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error does not say %q:\n%v", tc.want, err)
			}
		})
	}
}
