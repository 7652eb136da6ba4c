package helmchart

// A custom EndpointPickerConfig as users pass it through
// pluginsCustomConfig (upstream's README shape), for SGLang servers.
const customConfig = `inferenceExtension:
  pluginsConfigFile: custom-plugins.yaml
  pluginsCustomConfig:
    custom-plugins.yaml: |
      apiVersion: inference.networking.x-k8s.io/v1alpha1
      kind: EndpointPickerConfig
      plugins:
      - type: queue-scorer
      - type: prefix-cache-scorer
      - type: core-metrics-extractor
        parameters:
          defaultEngine: sglang
      schedulingProfiles:
      - name: default
        plugins:
        - pluginRef: queue-scorer
          weight: 1
        - pluginRef: prefix-cache-scorer
          weight: 2
  flags:
    v: 2
    refresh-metrics-interval: 100ms
    max-request-body-bytes: 16777216
    enable-pprof: false
  env:
  - name: OTEL_SERVICE_NAME
    value: my-epp
  tracing:
    enabled: true
inferencePool:
  modelServerType: sglang
  targetPorts:
  - number: 8000
provider:
  name: istio
  istio:
    destinationRule:
      trafficPolicy:
        connectionPool:
          http:
            maxRequestsPerConnection: 256000
experimentalHttpRoute:
  enabled: true
inferenceObjectives:
- name: critical
  priority: 10
- name: batch
  priority: -1
`

// everything turns on every optional object at once.
const everything = `inferenceExtension:
  replicas: 3
  extraContainerPorts:
  - {name: zmq, containerPort: 5557, protocol: TCP}
  extraServicePorts:
  - {name: zmq, port: 5557, protocol: TCP, targetPort: zmq}
  volumes:
  - {name: scratch, emptyDir: {}}
  volumeMounts:
  - {name: scratch, mountPath: /scratch}
  affinity:
    nodeAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
        nodeSelectorTerms:
        - matchExpressions:
          - {key: kubernetes.io/os, operator: In, values: [linux]}
  tolerations:
  - {key: dedicated, operator: Equal, value: epp, effect: NoSchedule}
  sidecar:
    enabled: true
    name: helper
    image: busybox:1.36
    args: [sleep, "3600"]
    configMap:
      name: helper-config
      data: {mode: test}
    volumes:
    - {name: helper-config, configMap: {name: helper-config}}
    volumeMounts:
    - {name: helper-config, mountPath: /etc/helper}
  monitoring:
    prometheus:
      enabled: true
      extraLabels: {release: kube-prometheus-stack}
  metricsDataSource:
    scheme: https
    insecureSkipVerify: false
openepp:
  activeActive:
    enabled: true
  tls:
    secretName: epp-tls
  monitoring:
    grafanaDashboard: true
    prometheusRule: true
    prometheusRuleLabels: {release: kube-prometheus-stack}
`

// scenario is one install the tests render, apply and run.
type scenario struct {
	name string
	in   install
}

// scenarios are the installs every object of which must pass the API
// server's validation: the defaults, upstream's getting-started line, a
// realistic upstream-style values file, HA, every option at once, precise
// prefix-cache routing behind Istio and with active-active replicas, GKE.
func scenarios(ns string) []scenario {
	return []scenario{
		{"defaults", install{name: release, namespace: ns, set: []string{modelApp}}},
		{"upstream-line", install{name: release, namespace: ns, set: upstreamLine}},
		{"custom-config-istio", install{name: release, namespace: ns, files: []string{customConfig}, set: []string{modelApp}}},
		{"ha", install{name: release, namespace: ns, set: []string{modelApp, "inferenceExtension.replicas=2"}}},
		{"everything", install{name: release, namespace: ns, files: []string{everything}, set: []string{modelApp}}},
		{"precise-prefix-cache-istio", install{name: release, namespace: ns, set: []string{modelApp, precise,
			"openepp.precisePrefixCache.port=5600", "provider.name=istio"}}},
		{"precise-prefix-cache-active-active", install{name: release, namespace: ns, set: []string{modelApp, precise,
			activeActive, "inferenceExtension.replicas=3"}}},
		{"gke-trtllm", install{name: release, namespace: ns, set: []string{modelApp, "provider.name=gke",
			"inferencePool.modelServerType=trtllm-serve", "inferencePool.parser=openai-parser", "experimentalHttpRoute.enabled=true"}}},
	}
}
