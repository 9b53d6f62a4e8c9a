{{/*
Registry credentials the server finds on its own (config.credentials, docs/configuration.md
"Registry credentials"): the workloads' pull secrets, read through the API
(pullsecrets-rbac.yaml grants it), and kubelet credential-provider plug-ins, whose config
and binaries the chart mounts where config.credentials.kubeletPlugins says.
*/}}

{{/* config.credentials, or an empty map. */}}
{{- define "trustgate.credentials" -}}
{{- toJson (dig "credentials" (dict) .Values.config) }}
{{- end }}

{{/*
Where the plug-ins' config file and binaries are mounted, as JSON {configDir, configFile,
binDir}, or "" when credentialPlugins mounts nothing. Fails on values that cannot work:
mounts the server is not told about, two sources for one file, a mount over one of the
chart's own.
*/}}
{{- define "trustgate.pluginMountPaths" -}}
{{- $v := .Values.credentialPlugins }}
{{- $config := or $v.config $v.existingConfigMap }}
{{- $paths := dict }}
{{- if and $v.config $v.existingConfigMap }}
{{- fail "credentialPlugins.config and credentialPlugins.existingConfigMap both give the credential-provider config: keep one" }}
{{- end }}
{{- if or $config $v.binaries }}
{{- $plugins := dig "kubeletPlugins" (dict) (include "trustgate.credentials" . | fromJson) }}
{{- if not $plugins }}
{{- fail "credentialPlugins mounts a credential-provider config or plug-in binaries, but config.credentials.kubeletPlugins (config and binDir) does not tell trustgate where they are: set it, e.g. config: /etc/trustgate/credential-providers/config.yaml and binDir: /usr/libexec/trustgate/credential-providers" }}
{{- end }}
{{- if $config }}
{{- $_ := set $paths "configDir" (clean (dir $plugins.config)) }}
{{- $_ = set $paths "configFile" (base $plugins.config) }}
{{- end }}
{{- if $v.binaries }}
{{- $_ := set $paths "binDir" (clean $plugins.binDir) }}
{{- end }}
{{- $own := list "/etc/trustgate/config" "/etc/trustgate/policies" "/etc/trustgate/tls" "/etc/trustgate/registration" "/etc/trustgate/registry" "/etc/trustgate/pyxis" "/etc/trustgate/cache" "/etc/trustgate/cache-password" "/var/run/secrets" "/tmp" "/git" "/etc/git-secret" }}
{{- range $key := list "configDir" "binDir" }}
{{- $path := get $paths $key }}
{{- $field := ternary "config.credentials.kubeletPlugins.config" "config.credentials.kubeletPlugins.binDir" (eq $key "configDir") }}
{{- if $path }}
{{- if or (not (hasPrefix "/" $path)) (eq $path "/") }}
{{- fail (printf "%s (%s): the chart mounts it, so it must be an absolute path in a directory of its own, e.g. /etc/trustgate/credential-providers" $field (ternary $plugins.config $plugins.binDir (eq $key "configDir"))) }}
{{- end }}
{{- range $own }}
{{- if or (eq $path .) (hasPrefix (printf "%s/" .) $path) (hasPrefix (printf "%s/" $path) .) }}
{{- fail (printf "%s: the chart mounts %s, which overlaps its own mount %s: choose a directory of its own, e.g. /etc/trustgate/credential-providers" $field $path .) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- if and $paths.configDir $paths.binDir }}
{{- if or (eq $paths.configDir $paths.binDir) (hasPrefix (printf "%s/" $paths.configDir) $paths.binDir) (hasPrefix (printf "%s/" $paths.binDir) $paths.configDir) }}
{{- fail (printf "config.credentials.kubeletPlugins: the config's directory (%s) and binDir (%s) are two mounts and must not overlap: put them in separate directories" $paths.configDir $paths.binDir) }}
{{- end }}
{{- end }}
{{- end }}
{{- toJson $paths }}
{{- end }}

{{/* The ConfigMap holding the credential-provider config. */}}
{{- define "trustgate.pluginConfigMap" -}}
{{- default (printf "%s-credential-providers" (include "trustgate.fullname" .)) .Values.credentialPlugins.existingConfigMap }}
{{- end }}

{{/* The plug-ins' config and binaries as volumes (server and audit job). */}}
{{- define "trustgate.pluginVolumes" -}}
{{- with include "trustgate.pluginMountPaths" . | fromJson }}
{{- if .configFile }}
- name: credential-providers
  configMap:
    name: {{ include "trustgate.pluginConfigMap" $ }}
    # Only this key: a ConfigMap without it stops the pod at start, naming the key.
    items:
      - key: {{ .configFile }}
        path: {{ .configFile }}
{{- end }}
{{- if .binDir }}
- name: credential-plugins
  {{- toYaml $.Values.credentialPlugins.binaries | nindent 2 }}
{{- end }}
{{- end }}
{{- end }}

{{- define "trustgate.pluginMounts" -}}
{{- with include "trustgate.pluginMountPaths" . | fromJson }}
{{- if .configDir }}
- name: credential-providers
  mountPath: {{ .configDir }}
  readOnly: true
{{- end }}
{{- if .binDir }}
- name: credential-plugins
  mountPath: {{ .binDir }}
  readOnly: true
{{- end }}
{{- end }}
{{- end }}
