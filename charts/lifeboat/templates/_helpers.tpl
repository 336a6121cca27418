{{/*
Names, labels and images shared by every template.
*/}}

{{- define "lifeboat.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
`<release>-<chart>`, or just the release name when it already contains the chart name
(so `helm install lifeboat ...` gives `lifeboat-controller`, not `lifeboat-lifeboat-...`).
Truncated to 40 characters so that every name made from it (the longest suffix is
`-mover-restore`) stays within the 63 characters of a label value.
*/}}
{{- define "lifeboat.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "lifeboat.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every object the chart renders. `app.kubernetes.io/managed-by: Helm` tells them
apart from the objects the controller creates at run time, which carry
`app.kubernetes.io/managed-by: lifeboat`.
*/}}
{{- define "lifeboat.labels" -}}
helm.sh/chart: {{ include "lifeboat.chart" . }}
{{ include "lifeboat.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: lifeboat
{{- end }}

{{- define "lifeboat.selectorLabels" -}}
app.kubernetes.io/name: {{ include "lifeboat.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Selects the controller pods only: mover pods the controller starts also carry
`app.kubernetes.io/name: lifeboat`, with `component: mover`.
*/}}
{{- define "lifeboat.controllerSelectorLabels" -}}
{{ include "lifeboat.selectorLabels" . }}
app.kubernetes.io/component: controller
{{- end }}

{{- define "lifeboat.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (printf "%s-controller" (include "lifeboat.fullname" .)) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "lifeboat.leaseName" -}}
{{- default (printf "%s-controller" (include "lifeboat.fullname" .)) .Values.leaderElection.leaseName }}
{{- end }}

{{- define "lifeboat.moverServiceAccountName" -}}
{{- default (printf "%s-mover" (include "lifeboat.fullname" .)) .Values.mover.serviceAccountName }}
{{- end }}

{{/* The three ClusterRoles the controller binds mover ServiceAccounts to, for one run. */}}
{{- define "lifeboat.moverReadSecretsClusterRole" -}}
{{- printf "%s-mover-read-secrets" (include "lifeboat.fullname" .) }}
{{- end }}
{{- define "lifeboat.moverReadClusterRole" -}}
{{- printf "%s-mover-read" (include "lifeboat.fullname" .) }}
{{- end }}
{{/* The controller's namespaced rights (rbac-controller.yaml). */}}
{{- define "lifeboat.controllerNamespacedClusterRole" -}}
{{- printf "%s-controller-namespaced" (include "lifeboat.fullname" .) }}
{{- end }}

{{- define "lifeboat.moverRestoreClusterRole" -}}
{{- printf "%s-mover-restore" (include "lifeboat.fullname" .) }}
{{- end }}

{{/*
An image reference from {repository, tag, digest}: the digest wins, the tag defaults to
the chart's appVersion. Call with (dict "image" .Values.image "root" $).
*/}}
{{- define "lifeboat.image" -}}
{{- $img := .image }}
{{- if $img.digest }}
{{- printf "%s@%s" $img.repository $img.digest }}
{{- else }}
{{- printf "%s:%s" $img.repository (default .root.Chart.AppVersion $img.tag | toString) }}
{{- end }}
{{- end }}
