{{/* The name prefix of every object: <release>-record-sync, or fullnameOverride. */}}
{{- define "recordsync.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains "record-sync" .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-record-sync" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "recordsync.labels" -}}
app.kubernetes.io/name: record-sync
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one component: call with (dict "root" $ "component" "ingest"). */}}
{{- define "recordsync.selector" -}}
app.kubernetes.io/name: record-sync
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "recordsync.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/* The Secret with API keys and CRM credentials. */}}
{{- define "recordsync.secretName" -}}
{{- .Values.secrets.existingSecret | default (printf "%s-secrets" (include "recordsync.fullname" .)) -}}
{{- end -}}

{{/* The Secret with the NATS users' passwords (read by the NATS servers too). */}}
{{- define "recordsync.natsSecretName" -}}
{{- .Values.natsAuth.existingSecret | default .Values.natsAuth.secretName -}}
{{- end -}}

{{/* The NATS URLs the services connect to. */}}
{{- define "recordsync.natsURL" -}}
{{- if .Values.natsURL -}}
{{- .Values.natsURL -}}
{{- else if .Values.nats.enabled -}}
{{- printf "nats://%s-nats:4222" .Release.Name -}}
{{- else -}}
{{- fail "natsURL is required when nats.enabled is false" -}}
{{- end -}}
{{- end -}}

{{/* Environment common to every recordsync container; call with (dict "root" $ "user" "ingest"). */}}
{{- define "recordsync.env" -}}
- name: RECORDSYNC_NATS_URL
  value: {{ include "recordsync.natsURL" .root | quote }}
- name: RECORDSYNC_NATS_USER
  value: {{ .user | quote }}
- name: RECORDSYNC_NATS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "recordsync.natsSecretName" .root }}
      key: {{ .user }}-password
- name: RECORDSYNC_REPLICAS
  value: {{ .root.Values.replicas | quote }}
- name: RECORDSYNC_LOG_LEVEL
  value: {{ .root.Values.logLevel | quote }}
{{- range $k, $v := .root.Values.env }}
- name: {{ $k }}
  value: {{ $v | quote }}
{{- end }}
{{- end -}}
