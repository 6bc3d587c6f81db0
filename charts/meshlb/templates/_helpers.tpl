{{/* The chart's name. */}}
{{- define "meshlb.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The full name: release and chart, once when the release holds it. */}}
{{- define "meshlb.fullname" -}}
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

{{/* Labels of every object. */}}
{{- define "meshlb.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "meshlb.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Labels selecting the agents' pods. */}}
{{- define "meshlb.selectorLabels" -}}
app.kubernetes.io/name: {{ include "meshlb.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: speaker
{{- end }}

{{/* The agents' ServiceAccount. */}}
{{- define "meshlb.serviceAccountName" -}}
{{- if .Values.speaker.serviceAccount.create }}
{{- default (include "meshlb.fullname" .) .Values.speaker.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.speaker.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The cluster key Secret's name. */}}
{{- define "meshlb.clusterKeySecret" -}}
{{- default (printf "%s-cluster-keys" (include "meshlb.fullname" .)) .Values.clusterKeys.existingSecret }}
{{- end }}
