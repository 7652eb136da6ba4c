{{/*
Names. The EPP's objects are "<release>-epp", the pool is "<release>", as in
GIE's inferencepool chart, so a release can move between the two charts.
*/}}
{{- define "openepp.fullname" -}}
{{- .Release.Name | lower | trim | trunc 40 | trimSuffix "-" }}-epp
{{- end -}}

{{- define "openepp.poolName" -}}
{{- .Release.Name -}}
{{- end -}}

{{/* The pools the EPP serves: the release's, then openepp.additionalPools. */}}
{{- define "openepp.poolNames" -}}
{{- prepend (.Values.openepp.additionalPools | default list) (include "openepp.poolName" .) | join "," -}}
{{- end -}}

{{/*
Cluster-scoped objects carry the namespace: one release per namespace may
share a release name. Names are cut to 40 characters each; a cut one gets a
hash of both in full, or releases in namespaces alike in their first 40
would share (and overwrite) one binding.
*/}}
{{- define "openepp.clusterName" -}}
{{- $release := .Release.Name | lower | trim -}}
{{- $ns := .Release.Namespace | lower | trim -}}
{{- $name := printf "%s-%s" ($release | trunc 40 | trimSuffix "-") ($ns | trunc 40 | trimSuffix "-") -}}
{{- if or (gt (len $release) 40) (gt (len $ns) 40) -}}
{{- $name = printf "%s-%s" $name (printf "%s/%s" $release $ns | sha256sum | trunc 8) -}}
{{- end -}}
{{- printf "%s-epp" $name -}}
{{- end -}}

{{- define "openepp.labels" -}}
app.kubernetes.io/name: {{ include "openepp.fullname" . }}
app.kubernetes.io/component: endpoint-picker
app.kubernetes.io/part-of: openepp
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/*
The Deployment's selector: upstream's label, kept so that `helm upgrade` from
the inferencepool chart keeps the (immutable) selector.
*/}}
{{- define "openepp.selectorLabels" -}}
inferencepool: {{ include "openepp.fullname" . }}
{{- end -}}

{{/* The EPP's listening ports: its defaults unless flags move them. */}}
{{- define "openepp.grpcPort" -}}
{{- index (.Values.inferenceExtension.flags | default dict) "grpc-port" | default 9002 | int -}}
{{- end -}}
{{- define "openepp.healthPort" -}}
{{- index (.Values.inferenceExtension.flags | default dict) "grpc-health-port" | default 9003 | int -}}
{{- end -}}
{{- define "openepp.metricsPort" -}}
{{- index (.Values.inferenceExtension.flags | default dict) "metrics-port" | default 9090 | int -}}
{{- end -}}

{{/* openepp.precisePrefixCache: "true" when enabled, and the port its KV events arrive on. */}}
{{- define "openepp.precisePrefixCache" -}}
{{- if (.Values.openepp.precisePrefixCache | default dict).enabled }}true{{ end -}}
{{- end -}}
{{- define "openepp.kvEventsPort" -}}
{{- (.Values.openepp.precisePrefixCache | default dict).port | default 5557 | int -}}
{{- end -}}

{{/*
openepp.kvEventsMode: how KV events reach the EPP. "bind": the EPP binds the
port and every vLLM publishes to its Service, which reaches one replica;
"discoverPods": each EPP replica connects to every model server, which
binds the port. Unset, active-active (every replica routes, so every replica
must hear every server) gets discoverPods.
*/}}
{{- define "openepp.kvEventsMode" -}}
{{- $mode := toString ((.Values.openepp.precisePrefixCache | default dict).mode | default "") -}}
{{- if $mode }}{{ $mode }}{{ else if .Values.openepp.activeActive.enabled }}discoverPods{{ else }}bind{{ end -}}
{{- end -}}

{{/* "true" when the EPP binds the kv-events port, which its container and Service then expose. */}}
{{- define "openepp.eppBindsKVEvents" -}}
{{- if and (include "openepp.precisePrefixCache" .) (eq (include "openepp.kvEventsMode" .) "bind") }}true{{ end -}}
{{- end -}}

{{- define "openepp.image" -}}
{{- $img := .Values.inferenceExtension.image -}}
{{- $ref := printf "%s:%s" $img.repository (toString $img.tag) -}}
{{- if $img.registry }}{{ $ref = printf "%s/%s" (trimSuffix "/" $img.registry) $ref }}{{ end -}}
{{- $ref -}}
{{- end -}}

{{/*
A string as a plain YAML scalar when that is unambiguous, else JSON-quoted, so
the default config reads exactly as config/default.yaml.
*/}}
{{- define "openepp.scalar" -}}
{{- $s := toString . -}}
{{- if and (regexMatch "^[A-Za-z/][A-Za-z0-9/_.-]*$" $s) (not (has (lower $s) (list "true" "false" "yes" "no" "on" "off" "null" "y" "n"))) -}}
{{- $s -}}
{{- else -}}
{{- toJson $s -}}
{{- end -}}
{{- end -}}

{{/*
GOMEMLIMIT: three quarters of the container's memory limit, so the Go runtime
collects harder before the kernel kills it. "" when there is no limit.
*/}}
{{- define "openepp.goMemLimit" -}}
{{- if .Values.openepp.goMemLimit -}}
{{- .Values.openepp.goMemLimit -}}
{{- else -}}
{{- $limit := "" -}}
{{- with .Values.inferenceExtension.resources }}{{ with .limits }}{{ $limit = toString (.memory | default "") }}{{ end }}{{ end -}}
{{- if $limit -}}
{{- $m := regexFindAll "^([0-9]+)(Ki|Mi|Gi|Ti|k|M|G|T)?$" $limit -1 -}}
{{- if not $m -}}
{{- fail (printf "inferenceExtension.resources.limits.memory=%q: cannot derive GOMEMLIMIT from it; set openepp.goMemLimit (e.g. 3GiB)" $limit) -}}
{{- end -}}
{{- $num := regexFind "^[0-9]+" $limit | int64 -}}
{{- $unit := regexFind "[A-Za-z]+$" $limit -}}
{{- $mult := get (dict "" 1 "k" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776) $unit -}}
{{- $bytes := div (mul $num $mult 3) 4 -}}
{{- if eq (mod $bytes 1073741824) 0 -}}
{{- printf "%dGiB" (div $bytes 1073741824) -}}
{{- else -}}
{{- printf "%dMiB" (div $bytes 1048576) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* A flag value as the EPP expects it: whole numbers without an exponent. */}}
{{- define "openepp.flagValue" -}}
{{- if and (kindIs "float64" .) (eq (floor .) .) -}}
{{- int64 . -}}
{{- else -}}
{{- toString . -}}
{{- end -}}
{{- end -}}

{{/* The user's env as a list of EnvVar: upstream takes a list; older charts took a map of name: value. */}}
{{- define "openepp.userEnv" -}}
{{- $env := .Values.inferenceExtension.env | default list -}}
{{- if kindIs "map" $env -}}
{{- $list := list -}}
{{- range $k := keys $env | sortAlpha }}{{ $list = append $list (dict "name" $k "value" (include "openepp.flagValue" (get $env $k))) }}{{ end -}}
{{- $env = $list -}}
{{- end -}}
{{- toYaml (dict "env" $env) -}}
{{- end -}}

{{/* Whether the EPP runs leader election: more than one replica, not active-active (as upstream). */}}
{{- define "openepp.leaderElection" -}}
{{- if and (gt (.Values.inferenceExtension.replicas | int) 1) (not .Values.openepp.activeActive.enabled) }}true{{ end -}}
{{- end -}}

{{- define "openepp.replicaSyncSecret" -}}
{{- .Values.openepp.activeActive.tokenSecretName | default (printf "%s-replica-sync" (include "openepp.fullname" .)) -}}
{{- end -}}
