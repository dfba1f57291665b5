{{/*
A vLLM OpenAI-compatible server: Deployment + Service. Called with
(dict "ctx" $ "component" "vlm" "cfg" .Values.vlm "model" "..." "gpus" 1 "apiKey" "VLM_API_KEY" "args" (list ...)).
The Service load-balances connections over the replicas, so the gateway needs only its name.
*/}}
{{- define "florence-tagger.vllm" -}}
{{- $ctx := .ctx -}}
{{- $cfg := .cfg -}}
{{- $name := printf "%s-%s" (include "florence-tagger.fullname" $ctx) .component -}}
{{- $selector := include "florence-tagger.selectorLabels" (dict "ctx" $ctx "component" .component) -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $name }}
  labels:
    {{- include "florence-tagger.labels" $ctx | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
spec:
  replicas: {{ $cfg.replicaCount }}
  # Replace one replica at a time and never start an extra one first: a surge pod would wait for GPUs that
  # only the pod it replaces can free.
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 0
      maxUnavailable: 1
  selector:
    matchLabels:
      {{- $selector | nindent 6 }}
  template:
    metadata:
      labels:
        {{- $selector | nindent 8 }}
      annotations:
        checksum/secret: {{ include (print $ctx.Template.BasePath "/secret.yaml") $ctx | sha256sum }}
    spec:
      automountServiceAccountToken: false
      containers:
        - name: vllm
          image: "{{ $ctx.Values.vllm.image.repository }}:{{ $ctx.Values.vllm.image.tag }}"
          imagePullPolicy: {{ $ctx.Values.vllm.image.pullPolicy }}
          command: ["vllm", "serve"]
          args:
            - {{ .model | quote }}
            - "--host"
            - "0.0.0.0"
            - "--port"
            - "8000"
            {{- range .args }}
            - {{ . | quote }}
            {{- end }}
            {{- range $cfg.extraArgs }}
            - {{ . | quote }}
            {{- end }}
          env:
            # vLLM's --api-key, read from the environment so it stays out of the pod spec's args
            {{- include "florence-tagger.secretEnv" (dict "ctx" $ctx "name" "VLLM_API_KEY" "key" .apiKey) | nindent 12 }}
            {{- include "florence-tagger.secretEnv" (dict "ctx" $ctx "name" "HF_TOKEN" "key" "HF_TOKEN") | nindent 12 }}
          ports:
            - name: http
              containerPort: 8000
              protocol: TCP
          # /health is not behind the API key. The startup probe covers the first download and load.
          startupProbe:
            httpGet:
              path: /health
              port: http
            periodSeconds: 10
            failureThreshold: {{ $ctx.Values.vllm.startupFailureThreshold }}
          readinessProbe:
            httpGet:
              path: /health
              port: http
            periodSeconds: 10
            timeoutSeconds: 5
          livenessProbe:
            httpGet:
              path: /health
              port: http
            periodSeconds: 30
            timeoutSeconds: 10
            failureThreshold: 5
          resources:
            requests:
              {{- with $cfg.resources.requests }}
              {{- toYaml . | nindent 14 }}
              {{- end }}
              {{ $ctx.Values.vllm.gpuResource }}: {{ .gpus }}
            limits:
              {{- with $cfg.resources.limits }}
              {{- toYaml . | nindent 14 }}
              {{- end }}
              {{ $ctx.Values.vllm.gpuResource }}: {{ .gpus }}
          volumeMounts:
            - name: hf-cache
              mountPath: /root/.cache/huggingface
            - name: shm # PyTorch shares tensors between vLLM's processes through /dev/shm
              mountPath: /dev/shm
      volumes:
        - name: hf-cache
          {{- if $ctx.Values.vllm.hfCacheClaim }}
          persistentVolumeClaim:
            claimName: {{ $ctx.Values.vllm.hfCacheClaim }}
          {{- else }}
          emptyDir: {}
          {{- end }}
        - name: shm
          emptyDir:
            medium: Memory
            sizeLimit: 16Gi
      {{- with $cfg.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $cfg.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $cfg.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ $name }}
  labels:
    {{- include "florence-tagger.labels" $ctx | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
spec:
  type: ClusterIP
  selector:
    {{- $selector | nindent 4 }}
  ports:
    - name: http
      port: 8000
      targetPort: http
      protocol: TCP
{{- end }}
