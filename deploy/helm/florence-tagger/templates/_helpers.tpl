{{- define "florence-tagger.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Leaves room for the longest suffix ("-gpt-oss") within the 63-character limit of names. */}}
{{- define "florence-tagger.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 55 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 55 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 55 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "florence-tagger.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "florence-tagger.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Selector labels of one component: call with (dict "ctx" $ "component" "gateway"). */}}
{{- define "florence-tagger.selectorLabels" -}}
app.kubernetes.io/name: {{ include "florence-tagger.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "florence-tagger.secretName" -}}
{{- default (printf "%s-keys" (include "florence-tagger.fullname" .)) .Values.secrets.existingSecret }}
{{- end }}

{{- define "florence-tagger.serviceAccountName" -}}
{{- if .Values.gateway.serviceAccount.create }}
{{- default (include "florence-tagger.fullname" .) .Values.gateway.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.gateway.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "florence-tagger.vlmURL" -}}
{{- default (printf "http://%s-vlm:8000/v1" (include "florence-tagger.fullname" .)) .Values.gateway.env.VLM_BASE_URL }}
{{- end }}

{{- define "florence-tagger.gptOssURL" -}}
{{- default (printf "http://%s-gpt-oss:8000/v1" (include "florence-tagger.fullname" .)) .Values.gateway.env.GPT_OSS_BASE_URL }}
{{- end }}

{{/* An env entry read from the keys Secret; optional, so a missing key leaves the variable unset. */}}
{{- define "florence-tagger.secretEnv" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ include "florence-tagger.secretName" .ctx }}
      key: {{ .key }}
      optional: true
{{- end }}
