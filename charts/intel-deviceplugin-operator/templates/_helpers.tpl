{{/* Every device kind, sorted: the registry of src/deviceplugin_operator/devices (a unit test
keeps the two equal). */}}
{{- define "idpo.allDevices" -}}
dlb dsa fpga gpu iaa npu qat sgx
{{- end -}}

{{/* The enabled kinds, sorted, space separated; an unknown name fails the rendering. */}}
{{- define "idpo.devices" -}}
{{- $all := splitList " " (include "idpo.allDevices" .) -}}
{{- range .Values.devices -}}
{{- if not (has . $all) -}}
{{- fail (printf "devices: unknown device %q (known: %s)" . (join ", " $all)) -}}
{{- end -}}
{{- end -}}
{{- if .Values.devices -}}
{{- .Values.devices | uniq | sortAlpha | join " " -}}
{{- else -}}
{{- include "idpo.allDevices" . -}}
{{- end -}}
{{- end -}}

{{- define "idpo.pluginNamespace" -}}
{{- .Values.pluginNamespace | default .Release.Namespace -}}
{{- end -}}

{{- define "idpo.secretName" -}}
{{- .Values.certificates.secretName | default (printf "%swebhook-server-cert" .Values.namePrefix) -}}
{{- end -}}

{{/* Labels of every object: the kustomize install's and Helm's own. */}}
{{- define "idpo.labels" -}}
app.kubernetes.io/name: intel-deviceplugin-operator
app.kubernetes.io/part-of: intel-device-plugins
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* The manager pods' labels, also the selector of its Deployment, Services and budget: the
reference operator's, so that an install over it updates its Deployment in place. */}}
{{- define "idpo.selector" -}}
control-plane: controller-manager
manager: intel-deviceplugin-operator
{{- end -}}

{{/* The operator image: the digest, when given, pins it regardless of the tag. */}}
{{- define "idpo.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%v" .Values.image.repository .Values.image.tag -}}
{{- end -}}
{{- end -}}

{{/* Pod settings every hook pod of the chart shares with the operator's. */}}
{{- define "idpo.hookPod" -}}
restartPolicy: Never
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . | quote }}
{{- end }}
{{- with .Values.podSecurityContext }}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* The container fields every hook container shares with the operator's. */}}
{{- define "idpo.hookContainer" -}}
image: {{ include "idpo.image" . | quote }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
command:
- deviceplugin-operator
{{- with .Values.hookResources }}
resources:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.securityContext }}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.extraEnv }}
env:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* The names of the CRDs in crds/ (the generated ones), one YAML list item each. */}}
{{- define "idpo.crdNames" -}}
{{- range $path, $_ := .Files.Glob "crds/*.yaml" }}
- {{ (fromYaml ($.Files.Get $path)).metadata.name }}
{{- end }}
{{- end -}}
