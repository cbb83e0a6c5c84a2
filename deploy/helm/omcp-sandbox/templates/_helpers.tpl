{{/* The release's name for its objects, within Kubernetes' 63 characters. */}}
{{- define "omcp.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "omcp.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "omcp.labels" -}}
{{ include "omcp.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The Secret holding the token, if any. */}}
{{- define "omcp.authSecret" -}}
{{- if .Values.auth.existingSecret -}}
{{- .Values.auth.existingSecret -}}
{{- else if .Values.auth.token -}}
{{- printf "%s-auth" (include "omcp.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* Host names accepted in Host/Origin: the Service's, then the configured ones. */}}
{{- define "omcp.allowedHosts" -}}
{{- $name := include "omcp.fullname" . -}}
{{- $hosts := list $name (printf "%s.%s" $name .Release.Namespace) (printf "%s.%s.svc" $name .Release.Namespace) (printf "%s.%s.svc.cluster.local" $name .Release.Namespace) -}}
{{- concat $hosts .Values.allowedHosts | join "," -}}
{{- end -}}

{{/* The Secret holding tools.json (code mode), or "" when no tool server is configured. */}}
{{- define "omcp.toolsSecret" -}}
{{- if .Values.tools.existingSecret -}}
{{- .Values.tools.existingSecret -}}
{{- else if .Values.tools.mcpServers -}}
{{- printf "%s-tools" (include "omcp.fullname" .) -}}
{{- end -}}
{{- end -}}
