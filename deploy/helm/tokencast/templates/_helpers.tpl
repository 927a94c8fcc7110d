{{- define "tokencast.fullname" -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tokencast.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "tokencast.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "tokencast.natsUrl" -}}
{{- if .Values.natsUrl -}}
{{ .Values.natsUrl }}
{{- else if .Values.nats.enabled -}}
nats://{{ .Release.Name }}-nats:4222
{{- else -}}
{{ fail "set natsUrl, or nats.enabled=true for the bundled NATS" }}
{{- end -}}
{{- end -}}

{{- define "tokencast.secretName" -}}
{{- default (include "tokencast.fullname" .) .Values.existingSecret -}}
{{- end -}}

{{/* The pod spec shared by the api and worker Deployments. */}}
{{- define "tokencast.pod" -}}
{{- $root := .root -}}
{{- $c := .values -}}
metadata:
  labels:
    {{- include "tokencast.selector" . | nindent 4 }}
  annotations:
    checksum/secret: {{ toJson $root.Values.secretEnv | sha256sum }}
spec:
  {{- with $root.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  terminationGracePeriodSeconds: {{ $c.terminationGracePeriodSeconds }}
  securityContext:
    {{- toYaml $root.Values.podSecurityContext | nindent 4 }}
  containers:
    - name: tokencast
      image: "{{ $root.Values.image.repository }}:{{ $root.Values.image.tag | default $root.Chart.AppVersion }}"
      imagePullPolicy: {{ $root.Values.image.pullPolicy }}
      args: ["serve"]
      env:
        - {name: TOKENCAST_ROLE, value: {{ .component | quote }}}
        - {name: TOKENCAST_ADDR, value: "0.0.0.0:8080"}
        - {name: TOKENCAST_MODE, value: prod}
        - {name: TOKENCAST_LOG_FORMAT, value: json}
        - {name: TOKENCAST_NATS_URL, value: {{ include "tokencast.natsUrl" $root | quote }}}
        - {name: TOKENCAST_REPLICAS, value: {{ $root.Values.streamReplicas | quote }}}
        - {name: TOKENCAST_DATA_DIR, value: /tmp/data}
        - {name: TOKENCAST_SHUTDOWN_TIMEOUT, value: {{ printf "%ds" (sub (int $c.terminationGracePeriodSeconds) 5) | quote }}}
        {{- if eq .component "worker" }}
        - {name: TOKENCAST_WORKERS, value: {{ $c.concurrency | quote }}}
        {{- end }}
        {{- with $c.drainDelay }}
        - {name: TOKENCAST_DRAIN_DELAY, value: {{ . | quote }}}
        {{- end }}
        {{- $auth := $root.Values.natsAuth }}
        {{- if $auth.secretName }}
        {{- range $flag, $file := dict "CREDS" $auth.creds "NKEY" $auth.nkey "CA" $auth.ca "CERT" $auth.cert "KEY" $auth.key }}
        {{- if $file }}
        - {name: TOKENCAST_NATS_{{ $flag }}, value: {{ printf "%s/%s" $auth.mountPath $file | quote }}}
        {{- end }}
        {{- end }}
        {{- end }}
        {{- $env := merge (dict) $c.env $root.Values.env }}
        {{- if and (($c.resources).limits).memory (not (hasKey $env "GOMEMLIMIT")) }}
        # Go's soft memory limit at the pod's: near it the collector works
        # harder rather than the pod being killed (docs/scaling.md).
        - name: GOMEMLIMIT
          valueFrom: {resourceFieldRef: {resource: limits.memory}}
        {{- end }}
        {{- range $k, $v := $env }}
        - {name: {{ $k }}, value: {{ $v | quote }}}
        {{- end }}
      {{- if or $root.Values.existingSecret $root.Values.secretEnv }}
      envFrom:
        - secretRef:
            name: {{ include "tokencast.secretName" $root }}
      {{- end }}
      ports:
        - {name: http, containerPort: 8080, protocol: TCP}
      livenessProbe:
        httpGet: {path: /healthz, port: http}
        periodSeconds: 10
        failureThreshold: 3
      readinessProbe:
        httpGet: {path: /readyz, port: http}
        periodSeconds: 5
        failureThreshold: 2
      startupProbe:
        httpGet: {path: /healthz, port: http}
        periodSeconds: 2
        failureThreshold: 60
      resources:
        {{- toYaml $c.resources | nindent 8 }}
      securityContext:
        {{- toYaml $root.Values.securityContext | nindent 8 }}
      volumeMounts:
        - {name: tmp, mountPath: /tmp}
        {{- if $root.Values.natsAuth.secretName }}
        - {name: nats-auth, mountPath: {{ $root.Values.natsAuth.mountPath | quote }}, readOnly: true}
        {{- end }}
  volumes:
    - name: tmp
      emptyDir: {}
    {{- with $root.Values.natsAuth.secretName }}
    - name: nats-auth
      secret:
        secretName: {{ . | quote }}
        defaultMode: 0440
    {{- end }}
  {{- with $c.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $c.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $c.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}
