{{/* The chart's name, cut to the 63 characters a label value allows. */}}
{{- define "reconciler.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Name of the namespaced objects: the release name, plus the chart name unless it contains it. */}}
{{- define "reconciler.fullname" -}}
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

{{/* Cluster-scoped objects carry the namespace too, so two releases never share one. */}}
{{- define "reconciler.clusterName" -}}
{{- printf "%s-%s" .Release.Namespace (include "reconciler.fullname" .) }}
{{- end }}

{{- define "reconciler.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "reconciler.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "reconciler.selectorLabels" -}}
app.kubernetes.io/name: {{ include "reconciler.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "reconciler.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "reconciler.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name: name the existing ServiceAccount when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "reconciler.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The installation name, checked: it names the Lease and the status ConfigMap. */}}
{{- define "reconciler.installation" -}}
{{- $name := required "installation: set the installation this cluster runs (installations/<name>/ in the environments repo)" .Values.installation }}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" $name) }}
{{- fail (printf "installation %q: use lower-case letters, digits and '-' (it names a Lease and a ConfigMap)" $name) }}
{{- end }}
{{- $name }}
{{- end }}

{{- define "reconciler.valuesNamespace" -}}
{{- default .Release.Namespace .Values.valuesFrom.namespace }}
{{- end }}

{{- define "reconciler.leaseName" -}}
{{- printf "reconciler-%s" (include "reconciler.installation" .) }}
{{- end }}

{{- define "reconciler.keyName" -}}
{{- printf "reconciler-key-%s" (include "reconciler.installation" .) }}
{{- end }}

{{- define "reconciler.statusName" -}}
{{- printf "reconciler-status-%s" (include "reconciler.installation" .) }}
{{- end }}
