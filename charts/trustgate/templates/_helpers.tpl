{{/* Name of the chart, or nameOverride. */}}
{{- define "trustgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release-chart unless the release name already contains the chart name. */}}
{{- define "trustgate.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "trustgate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "trustgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "trustgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "trustgate.labels" -}}
helm.sh/chart: {{ include "trustgate.chart" . }}
{{ include "trustgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "trustgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "trustgate.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The webhook image reference: repository, tag (default appVersion), optional digest. */}}
{{- define "trustgate.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* The Secret holding tls.crt and tls.key that the server serves. */}}
{{- define "trustgate.tlsSecretName" -}}
{{- if eq .Values.tls.mode "secret" }}
{{- required "tls.secret.name is required when tls.mode is secret" .Values.tls.secret.name }}
{{- else }}
{{- printf "%s-tls" (include "trustgate.fullname" .) }}
{{- end }}
{{- end }}

{{/* DNS names the API server uses to reach the Service. */}}
{{- define "trustgate.dnsNames" -}}
{{- $svc := include "trustgate.fullname" . }}
{{- $ns := .Release.Namespace }}
{{- list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.%s" $svc $ns .Values.tls.clusterDomain) | toJson }}
{{- end }}

{{/* The ConfigMap of policies mounted into the server. */}}
{{- define "trustgate.policiesConfigMap" -}}
{{- default (printf "%s-policies" (include "trustgate.fullname" .)) .Values.policies.existingConfigMap }}
{{- end }}

{{/*
The data of the policies ConfigMap: policies.files, one key per file. The preflight
check (preflight.yaml) lints a copy made by this same template.
*/}}
{{- define "trustgate.policyFiles" -}}
{{- if not .Values.policies.files }}
{{- fail "policies.files is empty: give at least one policy, policies.existingConfigMap, or gitSync" }}
{{- end }}
{{- range $name, $content := .Values.policies.files }}
{{- $file := include "trustgate.policyFileName" $name }}
{{- if eq $file (include "trustgate.signatureKey" $) }}
{{- fail (printf "policies.files: %s is the key the chart keeps the policy signature under; rename the file" $file) }}
{{- end }}
{{ $file }}: |
  {{- if kindIs "string" $content }}
  {{- $content | trimSuffix "\n" | nindent 2 }}
  {{- else }}
  {{- toYaml $content | nindent 2 }}
  {{- end }}
{{- end }}
{{- with .Values.policies.signature }}
{{ include "trustgate.signatureKey" $ }}: |
  {{- . | trimSuffix "\n" | nindent 2 }}
{{- end }}
{{- end }}

{{/*
The key of policies.files entry NAME in the ConfigMap: a policy file (.yaml, .yml, .json)
and a key or certificate file (.pub, .pem, .crt, .cer) keep their names; ".yaml" is added
to any other (prod: prod.yaml, team.prod: team.prod.yaml), as before keys could sit
beside policies: the loader reads only .yaml, .yml and .json, so a name kept as it is
would be a policy silently not loaded.
*/}}
{{- define "trustgate.policyFileName" -}}
{{- ternary . (printf "%s.yaml" .) (has (ext .) (list ".yaml" ".yml" ".json" ".pub" ".pem" ".crt" ".cer")) }}
{{- end }}

{{/*
The policy signature (policies.signature: DIR/.trustgate/signature.json, written by
`trustgate policy sign`) is kept in the policies ConfigMap under this key and mounted at
.trustgate/signature.json inside the policy directory: ConfigMap keys cannot hold a "/".
One object carries policies and signature, so kubelet swaps both in one step and the
server never sees new policies beside an old signature.
*/}}
{{- define "trustgate.signatureKey" -}}
trustgate-signature.json
{{- end }}

{{/*
The policies volume's source, for the server (name: the ConfigMap) and the preflight
Job (its copy). Without a signature, the whole ConfigMap. With policies.signature, each
policy key at its own name and the signature at .trustgate/signature.json. With
policies.existingConfigMap and policies.existingSignatureConfigMap, a projected volume
of both (two objects: between their updates the server may see a mismatched pair, which
it refuses while keeping its last good set).
*/}}
{{- define "trustgate.policiesVolumeSource" -}}
{{- $root := .root }}
{{- if and (not $root.Values.policies.existingConfigMap) $root.Values.policies.signature }}
configMap:
  name: {{ .name }}
  items:
    {{- range $name, $_ := $root.Values.policies.files }}
    {{- $file := include "trustgate.policyFileName" $name }}
    - key: {{ $file | quote }}
      path: {{ $file | quote }}
    {{- end }}
    - key: {{ include "trustgate.signatureKey" $root }}
      path: .trustgate/signature.json
{{- else if and $root.Values.policies.existingConfigMap $root.Values.policies.existingSignatureConfigMap }}
projected:
  sources:
    - configMap:
        name: {{ .name }}
    - configMap:
        name: {{ $root.Values.policies.existingSignatureConfigMap }}
        items:
          - key: signature.json
            path: .trustgate/signature.json
{{- else }}
configMap:
  name: {{ .name }}
{{- end }}
{{- end }}

{{/* The policy directory as the server sees it. */}}
{{- define "trustgate.policyDir" -}}
{{- if .Values.gitSync.enabled }}
{{- printf "/git/current/%s" .Values.gitSync.path | trimSuffix "/" }}
{{- else }}
{{- print "/etc/trustgate/policies" }}
{{- end }}
{{- end }}

{{/* trustgate.yaml: the config values, with deadlineSeconds below the webhook timeout. */}}
{{- define "trustgate.configFile" -}}
{{- $config := deepCopy .Values.config }}
{{- if not (hasKey $config "deadlineSeconds") }}
{{- $_ := set $config "deadlineSeconds" (sub (int .Values.webhook.timeoutSeconds) 2 | max 1) }}
{{- end }}
{{- /* The answer (deadline + 0.5 s grace + the trip back) must reach the API server before it gives up. */}}
{{- if gt (addf (float64 $config.deadlineSeconds) 1.0) (float64 .Values.webhook.timeoutSeconds) }}
{{- fail (printf "config.deadlineSeconds (%v) must be at least 1 s below webhook.timeoutSeconds (%v): reviews must answer before the API server stops waiting" $config.deadlineSeconds .Values.webhook.timeoutSeconds) }}
{{- end }}
{{- if include "trustgate.pyxisKeyInUse" . }}
{{- $freshness := deepCopy (default (dict) $config.freshness) }}
{{- $pyxis := deepCopy (default (dict) $freshness.pyxis) }}
{{- if hasKey $pyxis "apiKeyFile" }}
{{- fail "config.freshness.pyxis.apiKeyFile and freshness.pyxis.apiKey/apiKeySecret both name the Pyxis API key: keep one (the chart mounts its Secret and sets apiKeyFile)" }}
{{- end }}
{{- $_ := set $pyxis "apiKeyFile" "/etc/trustgate/pyxis/apiKey" }}
{{- $_ = set $freshness "pyxis" $pyxis }}
{{- $_ = set $config "freshness" $freshness }}
{{- end }}
{{- with (include "trustgate.policySignature" . | fromJson) }}
{{- $policies := deepCopy (default (dict) $config.policies) }}
{{- $_ := set $policies "signature" . }}
{{- $_ = set $config "policies" $policies }}
{{- end }}
{{- if .Values.cache.shared.url }}
{{- $cache := deepCopy (default (dict) $config.cache) }}
{{- $_ := set $cache "shared" (include "trustgate.sharedCacheConfig" . | fromJson) }}
{{- $_ = set $config "cache" $cache }}
{{- end }}
{{- toYaml $config }}
{{- end }}

{{/* Volumes and mounts shared by the server and the audit job: config and policies. */}}
{{- define "trustgate.policyVolumes" -}}
- name: config
  configMap:
    name: {{ include "trustgate.fullname" . }}-config
{{- if not .Values.gitSync.enabled }}
- name: policies
  {{- include "trustgate.policiesVolumeSource" (dict "root" . "name" (include "trustgate.policiesConfigMap" .)) | nindent 2 }}
{{- else }}
- name: git
  emptyDir: {}
{{- if .Values.gitSync.credentialsSecret }}
- name: git-credentials
  secret:
    secretName: {{ .Values.gitSync.credentialsSecret }}
    defaultMode: 0440
{{- end }}
{{- end }}
{{- range .Values.registryCredentials.secrets }}
- name: registry-{{ . }}
  secret:
    secretName: {{ . }}
{{- end }}
{{- if include "trustgate.pyxisKeyInUse" . }}
- name: pyxis-key
  secret:
    secretName: {{ include "trustgate.pyxisKeySecret" . }}
    defaultMode: 0440
    items:
      - key: {{ include "trustgate.pyxisKeySecretKey" . }}
        path: apiKey
{{- end }}
{{- end }}

{{- define "trustgate.policyMounts" -}}
- name: config
  mountPath: /etc/trustgate/config
  readOnly: true
{{- if not .Values.gitSync.enabled }}
- name: policies
  mountPath: /etc/trustgate/policies
  readOnly: true
{{- else }}
- name: git
  mountPath: /git
  readOnly: true
{{- end }}
{{- range .Values.registryCredentials.secrets }}
- name: registry-{{ . }}
  mountPath: /etc/trustgate/registry/{{ . }}
  readOnly: true
{{- end }}
{{- if include "trustgate.pyxisKeyInUse" . }}
- name: pyxis-key
  mountPath: /etc/trustgate/pyxis
  readOnly: true
{{- end }}
{{- end }}

{{/*
The Pyxis API key: from an existing Secret (freshness.pyxis.apiKeySecret) or from
freshness.pyxis.apiKey, which the chart writes into a Secret of its own. Either way it
is mounted as a file that trustgate.yaml names (apiKeyFile); it is never written into
the config ConfigMap.
*/}}
{{- define "trustgate.pyxisKeyInUse" -}}
{{- $p := .Values.freshness.pyxis }}
{{- if and $p.apiKey $p.apiKeySecret.name }}
{{- fail "freshness.pyxis.apiKey and freshness.pyxis.apiKeySecret.name both give the Pyxis API key: keep one" }}
{{- end }}
{{- if or $p.apiKey $p.apiKeySecret.name }}true{{ end }}
{{- end }}

{{- define "trustgate.pyxisKeySecret" -}}
{{- default (printf "%s-pyxis" (include "trustgate.fullname" .)) .Values.freshness.pyxis.apiKeySecret.name }}
{{- end }}

{{- define "trustgate.pyxisKeySecretKey" -}}
{{- if .Values.freshness.pyxis.apiKeySecret.name }}{{ .Values.freshness.pyxis.apiKeySecret.key }}{{ else }}apiKey{{ end }}
{{- end }}

{{/* A git-sync container; "init" clones once before the server starts. */}}
{{- define "trustgate.gitSyncContainer" -}}
{{- $root := .root }}
{{- $g := $root.Values.gitSync }}
- name: {{ if .init }}git-sync-init{{ else }}git-sync{{ end }}
  image: "{{ $g.image.repository }}:{{ $g.image.tag }}"
  imagePullPolicy: {{ $g.image.pullPolicy }}
  args:
    - --repo={{ required "gitSync.repo is required when gitSync.enabled" $g.repo }}
    - --ref={{ $g.ref }}
    - --root=/git
    - --link=current
    - --depth=1
    - --period={{ $g.period }}s
    {{- if .init }}
    - --one-time
    {{- end }}
  {{- if $g.credentialsSecret }}
  env:
    {{- if eq $g.auth "ssh" }}
    - name: GITSYNC_SSH_KEY_FILE
      value: /etc/git-secret/ssh
    - name: GITSYNC_SSH_KNOWN_HOSTS_FILE
      value: /etc/git-secret/known_hosts
    {{- else }}
    - name: GITSYNC_USERNAME
      valueFrom:
        secretKeyRef:
          name: {{ $g.credentialsSecret }}
          key: username
    - name: GITSYNC_PASSWORD_FILE
      value: /etc/git-secret/password
    {{- end }}
  {{- end }}
  securityContext:
    {{- toYaml $root.Values.securityContext | nindent 4 }}
  resources:
    {{- toYaml $g.resources | nindent 4 }}
  volumeMounts:
    - name: git
      mountPath: /git
    {{- if $g.credentialsSecret }}
    - name: git-credentials
      mountPath: /etc/git-secret
      readOnly: true
    {{- end }}
    - name: tmp
      mountPath: /tmp
{{- end }}


{{/* The Secret holding the key that seals shared cache entries (cache.shared). */}}
{{- define "trustgate.cacheKeySecret" -}}
{{- default (printf "%s-cache-key" (include "trustgate.fullname" .)) .Values.cache.shared.keySecret }}
{{- end }}

{{/* cache.shared of trustgate.yaml, from the chart's cache.shared values. */}}
{{- define "trustgate.sharedCacheConfig" -}}
{{- $s := .Values.cache.shared }}
{{- $shared := dict "url" $s.url "keyFile" "/etc/trustgate/cache/key" "timeoutMilliseconds" $s.timeoutMilliseconds "retrySeconds" $s.retrySeconds "waitMilliseconds" $s.waitMilliseconds }}
{{- if $s.passwordSecret }}
{{- $_ := set $shared "passwordFile" "/etc/trustgate/cache-password/password" }}
{{- end }}
{{- toJson $shared }}
{{- end }}

{{/* The shared cache's key (and Redis password) as volumes of the server's pod. */}}
{{- define "trustgate.cacheVolumes" -}}
{{- if .Values.cache.shared.url }}
- name: cache-key
  secret:
    secretName: {{ include "trustgate.cacheKeySecret" . }}
    defaultMode: 0440
    items:
      - key: key
        path: key
{{- if .Values.cache.shared.passwordSecret }}
- name: cache-password
  secret:
    secretName: {{ .Values.cache.shared.passwordSecret }}
    defaultMode: 0440
    items:
      - key: password
        path: password
{{- end }}
{{- end }}
{{- end }}

{{- define "trustgate.cacheMounts" -}}
{{- if .Values.cache.shared.url }}
- name: cache-key
  mountPath: /etc/trustgate/cache
  readOnly: true
{{- if .Values.cache.shared.passwordSecret }}
- name: cache-password
  mountPath: /etc/trustgate/cache-password
  readOnly: true
{{- end }}
{{- end }}
{{- end }}

{{/* The NetworkPolicy egress rule to Redis on the port of cache.shared.url. */}}
{{- define "trustgate.cacheEgress" -}}
{{- $url := .Values.cache.shared.url }}
{{- if and $url (not (hasPrefix "unix://" $url)) }}
{{- $hostPort := splitList ":" (urlParse $url).host }}
{{- $port := ternary (last $hostPort) "6379" (gt (len $hostPort) 1) }}
- ports:
    - port: {{ $port | int }}
      protocol: TCP
  {{- with .Values.cache.shared.networkPolicyPeers }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
{{- end }}

{{/* The API group and plural of the policy reports the audit job writes. */}}
{{- define "trustgate.reportGroup" -}}
{{- if eq .Values.auditJob.reportGroup "wgpolicyk8s" }}wgpolicyk8s.io{{ else }}openreports.io{{ end }}
{{- end }}

{{- define "trustgate.reportPlural" -}}
{{- if eq .Values.auditJob.reportGroup "wgpolicyk8s" }}policyreports{{ else }}reports{{ end }}
{{- end }}

{{/*
Metrics of admissions through an ImagePolicyException (label exception) and of
break-glass use (label outcome; honoured = admitted through it). One place for
their names: the PrometheusRule and the dashboard read them from here.
*/}}
{{- define "trustgate.metric.exceptions" -}}
trustgate_exception_admissions_total
{{- end }}

{{- define "trustgate.metric.breakGlass" -}}
trustgate_break_glass_total
{{- end }}

{{/* The port of GET /metrics, which must differ from the webhook's. */}}
{{- define "trustgate.metricsPort" -}}
{{- if eq (int .Values.metrics.port) (int .Values.server.port) }}
{{- fail (printf "metrics.port (%v) must differ from server.port: the webhook port serves reviews and health only" .Values.metrics.port) }}
{{- end }}
{{- .Values.metrics.port }}
{{- end }}

{{/*
config.policies.signature as trustgate.yaml gets it, or {} when signatures are not configured:
with no rollback given, the high-water mark goes into the ConfigMap <fullname>-policy-version
of the release namespace (policy-version.yaml renders it and the Role to write it).
*/}}
{{- define "trustgate.policySignature" -}}
{{- $signature := deepCopy (dig "policies" "signature" (dict) .Values.config) }}
{{- if and $signature (not (hasKey $signature "rollback")) }}
{{- $name := printf "%s-policy-version" (include "trustgate.fullname" .) }}
{{- $_ := set $signature "rollback" (dict "configMap" (dict "name" $name)) }}
{{- end }}
{{- toJson $signature }}
{{- end }}

{{/* The ConfigMap that keeps the policy version, as JSON {name, namespace}, or {}. */}}
{{- define "trustgate.policyVersionConfigMap" -}}
{{- $configMap := dig "rollback" "configMap" (dict) (include "trustgate.policySignature" . | fromJson) }}
{{- if $configMap }}
{{- toJson (dict "name" $configMap.name "namespace" (default .Release.Namespace $configMap.namespace)) }}
{{- else }}
{{- toJson (dict) }}
{{- end }}
{{- end }}
