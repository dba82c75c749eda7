{{/*
Names and labels.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "orchestrator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Release-qualified name, cut to 63 characters (a DNS label). */}}
{{- define "orchestrator.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
The StatefulSet's name is cut to 52 characters: the controller adds a
`controller-revision-hash: <name>-<10 characters>` label to every pod, and a label value
may not exceed 63 characters.
*/}}
{{- define "orchestrator.statefulsetName" -}}
{{- include "orchestrator.fullname" . | trunc 52 | trimSuffix "-" -}}
{{- end -}}

{{/* The headless Service (the StatefulSet's serviceName); it carries the admin port. */}}
{{- define "orchestrator.headlessName" -}}
{{- printf "%s-headless" (include "orchestrator.fullname" . | trunc 54 | trimSuffix "-") -}}
{{- end -}}

{{/* The ConfigMap holding orchestrator.yaml. */}}
{{- define "orchestrator.configMapName" -}}
{{- printf "%s-config" (include "orchestrator.fullname" . | trunc 56 | trimSuffix "-") -}}
{{- end -}}

{{/* The Secret mounted at /etc/orchestrator/secrets: created (dev) or existing; empty if none. */}}
{{- define "orchestrator.secretName" -}}
{{- if .Values.secrets.create -}}
{{- printf "%s-secrets" (include "orchestrator.fullname" . | trunc 55 | trimSuffix "-") -}}
{{- else -}}
{{- .Values.secrets.existingSecret -}}
{{- end -}}
{{- end -}}

{{- define "orchestrator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "orchestrator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "orchestrator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "orchestrator.labels" -}}
helm.sh/chart: {{ include "orchestrator.chart" . }}
{{ include "orchestrator.selectorLabels" . }}
app.kubernetes.io/version: {{ include "orchestrator.imageTag" . | trunc 63 | quote }}
app.kubernetes.io/part-of: orchestrator
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Labels that select the orchestrator pods; immutable once installed. */}}
{{- define "orchestrator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "orchestrator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/*
Labels of the `helm test` pod. It must not carry the selector labels, or the Services would
send traffic to it and the NetworkPolicy would apply to it.
*/}}
{{- define "orchestrator.testLabels" -}}
helm.sh/chart: {{ include "orchestrator.chart" . }}
app.kubernetes.io/name: {{ printf "%s-test" (include "orchestrator.name" .) | trunc 63 }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: test
app.kubernetes.io/version: {{ include "orchestrator.imageTag" . | trunc 63 | quote }}
app.kubernetes.io/part-of: orchestrator
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/*
Image.
*/}}

{{- define "orchestrator.imageTag" -}}
{{- $tag := toString (default .Chart.AppVersion .Values.image.tag) -}}
{{- if eq $tag "latest" -}}
{{- fail "image.tag: `latest` is not allowed; pin a version (e.g. the chart's appVersion) or set image.digest" -}}
{{- end -}}
{{- $tag -}}
{{- end -}}

{{- define "orchestrator.image" -}}
{{- $ref := printf "%s:%s" .Values.image.repository (include "orchestrator.imageTag" .) -}}
{{- with .Values.image.digest -}}
{{- if not (regexMatch "^sha256:[0-9a-f]{64}$" .) -}}
{{- fail (printf "image.digest: %q is not a digest; write sha256:<64 hex digits>" .) -}}
{{- end -}}
{{- $ref = printf "%s@%s" $ref . -}}
{{- end -}}
{{- $ref -}}
{{- end -}}

{{/*
Durations.

Whole seconds (rounded up) in a humantime duration such as "2s", "20s", "1m", "1m30s",
"500ms" or "1h 30m", the format the orchestrator reads. Called with (list "key.path" value);
fails naming the key when the value is not such a duration.
*/}}
{{- define "orchestrator.durationSeconds" -}}
{{- $key := index . 0 -}}
{{- $raw := index . 1 | toString | trim -}}
{{- $compact := regexReplaceAll "\\s+" $raw "" -}}
{{- $units := dict "ms" 1 "msec" 1 "msecs" 1 "millis" 1 "s" 1000 "sec" 1000 "secs" 1000 "second" 1000 "seconds" 1000 "m" 60000 "min" 60000 "mins" 60000 "minute" 60000 "minutes" 60000 "h" 3600000 "hr" 3600000 "hrs" 3600000 "hour" 3600000 "hours" 3600000 "d" 86400000 "day" 86400000 "days" 86400000 -}}
{{- if not (regexMatch "^([0-9]+[a-z]+)+$" $compact) -}}
{{- fail (printf "%s: %q is not a duration; write a number with a unit, like \"2s\", \"20s\", \"1m30s\" or \"500ms\"" $key $raw) -}}
{{- end -}}
{{- $ms := 0 -}}
{{- range regexFindAll "[0-9]+[a-z]+" $compact -1 -}}
{{- $unit := regexFind "[a-z]+$" . -}}
{{- if not (hasKey $units $unit) -}}
{{- fail (printf "%s: %q: unit %q is not supported here; use ms, s, m, h or d" $key $raw $unit) -}}
{{- end -}}
{{- $ms = add $ms (mul (regexFind "^[0-9]+" . | atoi) (get $units $unit)) -}}
{{- end -}}
{{- div (add $ms 999) 1000 -}}
{{- end -}}

{{/*
Configuration.

The orchestrator config as rendered into the ConfigMap: .Values.config plus the settings the
pod layout needs, each only when the user did not set it.
*/}}
{{- define "orchestrator.config" -}}
{{- $defaults := dict
  "listen" (dict "address" "0.0.0.0:8080")
  "admin" (dict "address" "0.0.0.0:9090")
  "secretsDir" "/etc/orchestrator/secrets"
  "log" (dict "format" "json")
-}}
{{- $_ := set $defaults "shutdown" (dict "delay" (ternary "15s" "2s" (eq (include "orchestrator.behindAlb" .) "true"))) -}}
{{- if .Values.tls.enabled -}}
{{- $_ := set $defaults.listen "tls" (dict "certFile" "/etc/orchestrator/tls/tls.crt" "keyFile" "/etc/orchestrator/tls/tls.key") -}}
{{- end -}}
{{- if .Values.ui.templates -}}
{{- $_ := set $defaults "ui" (dict "templatesDir" "/etc/orchestrator/templates") -}}
{{- end -}}
{{- $defaults = merge $defaults (include "orchestrator.memoryBudget" . | fromYaml) -}}
{{- merge (deepCopy (.Values.config | default dict)) $defaults | toYaml -}}
{{- end -}}

{{/* The port number of a host:port address (defaults given as the second element). */}}
{{- define "orchestrator.addressPort" -}}
{{- $address := index . 0 | toString -}}
{{- $port := regexFind "[0-9]+$" $address -}}
{{- if and (regexMatch ":[0-9]+$" $address) $port -}}
{{- $port -}}
{{- else -}}
{{- index . 1 -}}
{{- end -}}
{{- end -}}

{{/* The container port of the proxy listener (config.listen.address). */}}
{{- define "orchestrator.httpPort" -}}
{{- $config := include "orchestrator.config" . | fromYaml -}}
{{- include "orchestrator.addressPort" (list $config.listen.address 8080) -}}
{{- end -}}

{{/* The container port of the admin listener (config.admin.address). */}}
{{- define "orchestrator.adminPort" -}}
{{- $config := include "orchestrator.config" . | fromYaml -}}
{{- include "orchestrator.addressPort" (list $config.admin.address 9090) -}}
{{- end -}}

{{/* Every NAME referenced as ${secret:NAME} in config, sorted, one per line. */}}
{{- define "orchestrator.secretRefs" -}}
{{- $names := list -}}
{{- range regexFindAll "\\$\\{secret:[^}]+\\}" (toJson .Values.config) -1 -}}
{{- $names = append $names (trimSuffix "}" (trimPrefix "${secret:" .)) -}}
{{- end -}}
{{- $names | uniq | sortAlpha | join "\n" -}}
{{- end -}}

{{/*
Seconds for terminationGracePeriodSeconds: larger than shutdown.delay + shutdown.drainTimeout,
so the kubelet never kills a pod that is still draining. The defaults match the orchestrator's
own (2s and 20s).
*/}}
{{- define "orchestrator.terminationGracePeriodSeconds" -}}
{{- $needed := include "orchestrator.shutdownSeconds" . | atoi -}}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds -}}
{{- add $needed 10 -}}
{{- else if le (int .Values.terminationGracePeriodSeconds) (int $needed) -}}
{{- fail (printf "terminationGracePeriodSeconds: %v is not larger than config.shutdown.delay + config.shutdown.drainTimeout (%ds); raise it or leave it null to have it computed" .Values.terminationGracePeriodSeconds $needed) -}}
{{- else -}}
{{- int .Values.terminationGracePeriodSeconds -}}
{{- end -}}
{{- end -}}

{{/*
Guard rails: impossible combinations fail the render with what to set.
Included once, from the StatefulSet.
*/}}
{{- define "orchestrator.validate" -}}
{{- $config := include "orchestrator.config" . | fromYaml -}}
{{- $cache := $config.cache | default dict -}}
{{- $backend := $cache.backend | default "memory" -}}
{{- $gateway := $config.appGateway | default dict -}}
{{- $session := $gateway.session | default dict -}}
{{- $many := eq (include "orchestrator.severalPods" .) "true" -}}
{{- if and $many (eq $backend "memory") -}}
{{- if $config.oidcProvider -}}
{{- fail "config.oidcProvider with more than one replica (replicaCount > 1 or autoscaling.enabled) needs a shared store: set config.cache.backend: redis and config.cache.redis.url (password via ${secret:NAME}), or run replicaCount: 1 with autoscaling.enabled: false. With cache.backend memory each pod would hold its own codes, refresh tokens and SSO sessions." -}}
{{- end -}}
{{- if eq ($session.store | default "local") "shared" -}}
{{- fail "config.appGateway.session.store: shared with more than one replica (replicaCount > 1 or autoscaling.enabled) needs config.cache.backend: redis (and config.cache.redis.url); or use store: local with ingress.stickiness, or replicaCount: 1." -}}
{{- end -}}
{{- end -}}
{{- if and $many (eq $backend "memory") (not $gateway.assertionSigningKeys) -}}
{{- range ($gateway.apps | default list) }}
{{- if .assertionHeader -}}
{{- fail (printf "config.appGateway.apps %q sets assertionHeader with more than one replica on the memory cache and no config.appGateway.assertionSigningKeys: each pod would sign with a key of its own, and upstreams would reject the other pods' assertions; set assertionSigningKeys (${secret:NAME}) or run one replica" .name) -}}
{{- end -}}
{{- end }}
{{- end -}}
{{- if and $config.oidcProvider (eq $backend "redis") (not $config.oidcProvider.signingKeys) -}}
{{- fail "config.oidcProvider with cache.backend redis needs config.oidcProvider.signingKeys (replicas must sign with the same key; without them every pod would refuse to start): add a key with privateKey: ${secret:NAME}" -}}
{{- end -}}
{{- if and (eq $backend "redis") (not (($cache.redis | default dict).url)) (not (($cache.redis | default dict).clusterUrls)) -}}
{{- fail "config.cache.backend is redis but neither config.cache.redis.url nor clusterUrls (Redis Cluster) is set: set it, e.g. redis://redis-master.redis.svc:6379/0" -}}
{{- end -}}
{{- $listenHost := regexReplaceAll ":[0-9]+$" (toString $config.listen.address) "" -}}
{{- $adminHost := regexReplaceAll ":[0-9]+$" (toString $config.admin.address) "" -}}
{{- range $key, $host := dict "config.listen.address" $listenHost "config.admin.address" $adminHost -}}
{{- if has $host (list "127.0.0.1" "localhost" "[::1]") -}}
{{- fail (printf "%s binds a loopback address, which nothing outside the pod can reach; remove it (the chart then uses 0.0.0.0) or bind 0.0.0.0" $key) -}}
{{- end -}}
{{- end -}}
{{- if eq (include "orchestrator.httpPort" .) (include "orchestrator.adminPort" .) -}}
{{- fail "config.listen.address and config.admin.address use the same port; give the admin listener its own port (default 9090)" -}}
{{- end -}}
{{- $refs := include "orchestrator.secretRefs" . -}}
{{- if and .Values.secrets.create .Values.secrets.existingSecret -}}
{{- fail "secrets.create and secrets.existingSecret are both set: use existingSecret in production, or secrets.create with secrets.stringData for development, not both" -}}
{{- end -}}
{{- if $refs -}}
{{- if .Values.secrets.create -}}
{{- $missing := list -}}
{{- range splitList "\n" $refs -}}
{{- if not (hasKey $.Values.secrets.stringData .) -}}
{{- $missing = append $missing . -}}
{{- end -}}
{{- end -}}
{{- if $missing -}}
{{- fail (printf "config references ${secret:%s} but secrets.stringData has no such key: add %s to secrets.stringData" (join "}, ${secret:" $missing) (join ", " $missing)) -}}
{{- end -}}
{{- else if not .Values.secrets.existingSecret -}}
{{- fail (printf "config references secrets (%s): set secrets.existingSecret to the name of a Secret with one key per name (or, for development only, secrets.create: true with secrets.stringData)" (splitList "\n" $refs | join ", ")) -}}
{{- end -}}
{{- end -}}
{{- $listenTls := ($config.listen | default dict).tls -}}
{{- if and $listenTls (not .Values.tls.enabled) -}}
{{- fail "config.listen.tls is set but tls.enabled is false: set tls.enabled: true and tls.secretName to a kubernetes.io/tls Secret (mounted at /etc/orchestrator/tls), and drop config.listen.tls to use its tls.crt/tls.key" -}}
{{- end -}}
{{- if and .Values.tls.enabled (not .Values.tls.secretName) (not .Values.tls.certManager.enabled) -}}
{{- fail "tls.enabled needs tls.secretName: the name of a kubernetes.io/tls Secret with tls.crt and tls.key (or tls.certManager.enabled to have cert-manager issue one)" -}}
{{- end -}}
{{- if and .Values.tls.certManager.enabled (not .Values.tls.enabled) -}}
{{- fail "tls.certManager.enabled needs tls.enabled: true (the certificate is for the orchestrator's own listener)" -}}
{{- end -}}
{{- if and .Values.tls.certManager.enabled (not .Values.tls.certManager.issuerRef.name) -}}
{{- fail "tls.certManager.enabled needs tls.certManager.issuerRef.name: the cert-manager Issuer or ClusterIssuer that signs the certificate" -}}
{{- end -}}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) -}}
{{- fail "autoscaling.minReplicas is larger than autoscaling.maxReplicas" -}}
{{- end -}}
{{- if and (or .Values.ingress.enabled .Values.forwardAuth.ingresses) (not ($config.listen | default dict).trustedProxies) -}}
{{- fail "config.listen.trustedProxies is empty but the chart renders an Ingress: set it to your ingress controller's pod CIDR (e.g. [10.42.0.0/16]), or X-Forwarded-For/-Proto from the controller are ignored (client addresses, https detection and forward auth need them)" -}}
{{- end -}}
{{- if and (or .Values.httpRoute.enabled .Values.forwardAuth.routes) (not ($config.listen | default dict).trustedProxies) -}}
{{- fail "config.listen.trustedProxies is empty but the chart renders an HTTPRoute: set it to the CIDR of your Gateway's proxies (e.g. the Envoy or Istio gateway pods' [10.42.0.0/16]; for GKE and ALB the load balancer's ranges), or X-Forwarded-For/-Proto from the gateway are ignored" -}}
{{- end -}}
{{- if and .Values.httpRoute.enabled (not .Values.httpRoute.parentRefs) -}}
{{- fail "httpRoute.enabled needs httpRoute.parentRefs: the Gateway(s) to attach to, e.g. [{name: eg, namespace: envoy-gateway-system}]" -}}
{{- end -}}
{{- if and .Values.ingress.enabled (not .Values.ingress.hosts) -}}
{{- fail "ingress.enabled needs at least one entry in ingress.hosts" -}}
{{- end -}}
{{- end -}}

{{/*
Affinity cookie lifetime in seconds: ingress.stickinessDurationSeconds, else
config.appGateway.session.maxLifetime, else 8h.
*/}}
{{- define "orchestrator.stickinessSeconds" -}}
{{- if not (kindIs "invalid" .Values.ingress.stickinessDurationSeconds) -}}
{{- int .Values.ingress.stickinessDurationSeconds -}}
{{- else -}}
{{- $config := include "orchestrator.config" . | fromYaml -}}
{{- $session := ($config.appGateway | default dict).session | default dict -}}
{{- include "orchestrator.durationSeconds" (list "config.appGateway.session.maxLifetime" ($session.maxLifetime | default "8h")) -}}
{{- end -}}
{{- end -}}

{{/*
A NetworkPolicy peer list and port for a service URL ("redis://host:6379/0",
"http://app.ns.svc:8080"): an IP gives an ipBlock, `name.namespace.svc[...]` that namespace,
a bare name this release's namespace. Prints nothing for other host names (which a
NetworkPolicy cannot express). Called with (dict "url" URL "defaultPort" N "namespace" NS).
*/}}
{{- define "orchestrator.urlPeer" -}}
{{- $url := urlParse .url -}}
{{- $hostport := $url.host -}}
{{- $host := regexReplaceAll ":[0-9]+$" $hostport "" -}}
{{- $port := include "orchestrator.addressPort" (list $hostport .defaultPort) -}}
{{- $parts := splitList "." $host -}}
{{- if regexMatch "^[0-9]+\\.[0-9]+\\.[0-9]+\\.[0-9]+$" $host -}}
to:
  - ipBlock:
      cidr: {{ $host }}/32
port: {{ $port }}
{{- else if eq (len $parts) 1 -}}
to:
  - podSelector: {}
port: {{ $port }}
{{- else if and (ge (len $parts) 3) (eq (index $parts 2) "svc") -}}
to:
  - namespaceSelector:
      matchLabels:
        kubernetes.io/metadata.name: {{ index $parts 1 }}
port: {{ $port }}
{{- end -}}
{{- end -}}

{{/*
The listener's TLS Secret: tls.secretName, or <fullname>-tls when cert-manager issues it.
*/}}
{{- define "orchestrator.tlsSecretName" -}}
{{- .Values.tls.secretName | default (printf "%s-tls" (include "orchestrator.fullname" .)) -}}
{{- end -}}

{{/*
The part of the config that only a restart applies (the orchestrator logs "needs a restart"
for it on reload; crates/orchestrator/src/app.rs, restart_only_changes): listen address, TLS on
or off, head timeout and limits, admin address, the whole cache, secretsDir, log.format,
traces, appGateway.session and pendingLoginTtl. Its checksum rolls the pods; every other key
reloads in place.
*/}}
{{- define "orchestrator.restartOnlyConfig" -}}
{{- $config := include "orchestrator.config" . | fromYaml -}}
{{- $listen := $config.listen | default dict -}}
{{- $gateway := $config.appGateway | default dict -}}
{{- $log := $config.log | default dict -}}
{{- $restart := dict
  "listen" (dict
    "address" $listen.address
    "tls" (not (empty $listen.tls))
    "headerReadTimeout" $listen.headerReadTimeout
    "maxHeaderBytes" $listen.maxHeaderBytes
    "maxConnections" $listen.maxConnections)
  "admin" (dict "address" ($config.admin | default dict).address)
  "cache" ($config.cache | default dict)
  "secretsDir" $config.secretsDir
  "log" (dict "format" $log.format)
  "traces" ($config.traces | default dict)
  "appGateway" (dict "session" ($gateway.session | default dict) "pendingLoginTtl" $gateway.pendingLoginTtl)
-}}
{{- toYaml $restart -}}
{{- end -}}

{{/*
Whether the load balancer in front is an ALB (AWS Load Balancer Controller), through the
Ingress or through Gateway API: its target deregistration lags the pod's, which the shutdown
delay, the deregistration delay and minReadySeconds allow for.
*/}}
{{- define "orchestrator.behindAlb" -}}
{{- /* An unknown controller with ALB stickiness gets the ALB annotations too (ingress.yaml). */ -}}
{{- $flavor := include "orchestrator.ingressController" . -}}
{{- if and (eq $flavor "other") (eq .Values.ingress.stickiness "alb") -}}
{{- $flavor = "alb" -}}
{{- end -}}
{{- $ingress := and .Values.ingress.enabled (eq $flavor "alb") -}}
{{- $route := and .Values.httpRoute.enabled (eq .Values.httpRoute.controller "alb") -}}
{{- if or $ingress $route }}true{{ end -}}
{{- end -}}

{{/*
Seconds a pod serves after SIGTERM: shutdown.delay + shutdown.drainTimeout (the orchestrator's
defaults, 2s and 20s, when unset). The grace period must exceed it; an ALB's deregistration
delay is it (in-flight requests finish exactly as long as the pod serves them; the ALB
default is 300s).
*/}}
{{- define "orchestrator.shutdownSeconds" -}}
{{- $config := include "orchestrator.config" . | fromYaml -}}
{{- $shutdown := $config.shutdown | default dict -}}
{{- $delay := include "orchestrator.durationSeconds" (list "config.shutdown.delay" ($shutdown.delay | default "2s")) | atoi -}}
{{- $drain := include "orchestrator.durationSeconds" (list "config.shutdown.drainTimeout" ($shutdown.drainTimeout | default "20s")) | atoi -}}
{{- add $delay $drain -}}
{{- end -}}

{{/*
Session persistence for the HTTPRoute: none, route (the route's sessionPersistence), istio (the
Service's persistent-session label), gke (GCPBackendPolicy) or alb (TargetGroupConfiguration).
Refuses what would not keep local sessions on their pod.
*/}}
{{- define "orchestrator.routeStickiness" -}}
{{- $needsSticky := eq (include "orchestrator.stickyNeeded" .) "true" -}}
{{- $controller := .Values.httpRoute.controller -}}
{{- $native := dict "envoy" "route" "other" "route" "istio" "istio" "gke" "gke" "alb" "alb" -}}
{{- $mode := .Values.httpRoute.sessionPersistence -}}
{{- if eq $mode "auto" -}}
{{- $mode = ternary (index $native $controller) "none" $needsSticky -}}
{{- end -}}
{{- if and (eq $mode "none") $needsSticky (not .Values.httpRoute.allowNonSticky) -}}
{{- fail "httpRoute.sessionPersistence: none with more than one replica (or autoscaling) and config.appGateway.session.store local: users would bounce between pods that do not know their session. Use httpRoute.sessionPersistence auto, session.store: shared with cache.backend: redis, or set httpRoute.allowNonSticky: true if something else keeps users on their pod" -}}
{{- end -}}
{{- if and (ne $mode "none") (ne $mode "route") (ne $mode (index $native $controller)) -}}
{{- fail (printf "httpRoute.sessionPersistence %s does not work with httpRoute.controller %s: it would be ignored and sessions would not stick; use %s (or auto)" $mode $controller (index $native $controller)) -}}
{{- end -}}
{{- if and (eq $mode "route") (or (eq $controller "gke") (eq $controller "alb")) -}}
{{- fail (printf "httpRoute.sessionPersistence route: the %s controller does not implement the HTTPRoute's sessionPersistence; use %s (or auto)" $controller (index $native $controller)) -}}
{{- end -}}
{{- if eq $mode "route" -}}
{{- if eq (include "orchestrator.routeChannel" .) "standard" -}}
{{- fail "httpRoute: sessionPersistence on the HTTPRoute needs Gateway API's experimental channel, and the installed HTTPRoute CRD is the standard channel (the API server would drop the field and sessions would not stick): install the experimental CRDs, use session.store: shared with cache.backend: redis, or the controller's own persistence (httpRoute.controller istio, gke or alb)" -}}
{{- end -}}
{{- end -}}
{{- $mode -}}
{{- end -}}

{{/*
The HTTPRoute's request timeout in seconds: httpRoute.requestTimeout, else the upstream
response timeout plus 30s; refused when not longer than the upstream response timeout.
*/}}
{{- define "orchestrator.routeTimeoutSeconds" -}}
{{- $config := include "orchestrator.config" . | fromYaml -}}
{{- $gateway := $config.appGateway | default dict -}}
{{- $upstream := include "orchestrator.durationSeconds" (list "config.appGateway.upstreamResponseTimeout" ($gateway.upstreamResponseTimeout | default "60s")) | atoi -}}
{{- if .Values.httpRoute.requestTimeout -}}
{{- $t := include "orchestrator.durationSeconds" (list "httpRoute.requestTimeout" .Values.httpRoute.requestTimeout) | atoi -}}
{{- if le $t $upstream -}}
{{- fail (printf "httpRoute.requestTimeout: %ds is not longer than config.appGateway.upstreamResponseTimeout (%ds): the gateway would cut slow requests before the orchestrator answers them; raise it or leave it empty" $t $upstream) -}}
{{- end -}}
{{- $t -}}
{{- else -}}
{{- add $upstream 30 -}}
{{- end -}}
{{- end -}}

{{/*
Bytes in a Kubernetes quantity ("512Mi", "1Gi", "500M", "536870912"); fails naming the key.
Called with (list "key.path" value).
*/}}
{{- define "orchestrator.bytes" -}}
{{- $key := index . 0 -}}
{{- $value := index . 1 -}}
{{- /* YAML numbers reach templates as float64 ("5.36870912e+08" as text). */ -}}
{{- $raw := ternary (printf "%d" (int64 $value)) ($value | toString | trim) (kindIs "float64" $value) -}}
{{- $units := dict "" 1 "k" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 -}}
{{- if not (regexMatch "^[0-9]+(\\.[0-9]+)?(k|M|G|T|Ki|Mi|Gi|Ti)?$" $raw) -}}
{{- fail (printf "%s: %q is not a memory quantity the chart can read; write e.g. 512Mi, 1.5Gi or 536870912" $key $raw) -}}
{{- end -}}
{{- $number := regexFind "^[0-9]+(\\.[0-9]+)?" $raw -}}
{{- $unit := get $units (trimPrefix $number $raw) -}}
{{- if contains "." $number -}}
{{- mulf (float64 $number) $unit | floor | int64 -}}
{{- else -}}
{{- mul (atoi $number) $unit -}}
{{- end -}}
{{- end -}}

{{/*
The memory budget: what the process holds by config (local gateway sessions at
memoryBudget.sessionBytes each, pending logins, the memory cache) fits in 80% of
resources.limits.memory, leaving the rest for the runtime, connections and buffers. Prints the
derived keys as YAML (session.maxEntries, cache.memory.maxBytes) for those the user left unset;
fails when the ones set do not fit. Nothing without a memory limit.
*/}}
{{- define "orchestrator.memoryBudget" -}}
{{- $limit := ((.Values.resources | default dict).limits | default dict).memory -}}
{{- if $limit -}}
{{- $budget := div (mul (include "orchestrator.bytes" (list "resources.limits.memory" $limit) | atoi) 80) 100 -}}
{{- $config := .Values.config | default dict -}}
{{- $gateway := $config.appGateway -}}
{{- $session := ($gateway | default dict).session | default dict -}}
{{- $cache := $config.cache | default dict -}}
{{- $sessions := and (not (empty $gateway)) (eq ($session.store | default "local") "local") -}}
{{- $memoryCache := eq ($cache.backend | default "memory") "memory" -}}
{{- $each := int .Values.memoryBudget.sessionBytes -}}
{{- $pending := 0 -}}
{{- if $sessions -}}
{{- $pending = int64 (($gateway | default dict).maxPendingLoginBytes | default 33554432) -}}
{{- end -}}
{{- $cacheBytes := 0 -}}
{{- $out := dict -}}
{{- if $memoryCache -}}
{{- $memory := $cache.memory | default dict -}}
{{- if hasKey $memory "maxBytes" -}}
{{- $cacheBytes = int64 $memory.maxBytes -}}
{{- else -}}
{{- /* A quarter of the budget when sessions share it, all of it otherwise. */ -}}
{{- $cacheBytes = ternary (div $budget 4) $budget $sessions -}}
{{- $_ := set $out "cache" (dict "memory" (dict "maxBytes" $cacheBytes)) -}}
{{- end -}}
{{- end -}}
{{- if $sessions -}}
{{- if hasKey $session "maxEntries" -}}
{{- $used := add (mul (int64 $session.maxEntries) $each) $pending $cacheBytes -}}
{{- if gt $used $budget -}}
{{- fail (printf "memory budget: config.appGateway.session.maxEntries %d × memoryBudget.sessionBytes %d + pending logins %d + config.cache.memory.maxBytes %d = %d bytes, more than 80%% of resources.limits.memory %s (%d bytes): the pod would be OOM-killed before the caches evict. Lower maxEntries (or leave it unset: the chart derives it), raise the limit, or use session.store: shared on Redis" (int64 $session.maxEntries) $each $pending $cacheBytes $used $limit $budget) -}}
{{- end -}}
{{- else -}}
{{- $free := sub (sub $budget $cacheBytes) $pending -}}
{{- if lt $free (mul $each 1000) -}}
{{- fail (printf "memory budget: resources.limits.memory %s leaves room for fewer than 1000 local gateway sessions after config.cache.memory.maxBytes (%d) and pending logins (%d); raise the limit or lower those" $limit $cacheBytes $pending) -}}
{{- end -}}
{{- $_ := set $out "appGateway" (dict "session" (dict "maxEntries" (div $free $each))) -}}
{{- end -}}
{{- else if and $memoryCache (hasKey ($cache.memory | default dict) "maxBytes") (gt $cacheBytes $budget) -}}
{{- fail (printf "memory budget: config.cache.memory.maxBytes %d is more than 80%% of resources.limits.memory %s (%d bytes): lower it or raise the limit" $cacheBytes $limit $budget) -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}
{{- end -}}

{{/*
The channel of the installed HTTPRoute CRD: httpRoute.crdChannel, or for auto its
gateway.networking.k8s.io/channel annotation, looked up in the cluster ("unknown" when the
render has no cluster, as with helm template).
*/}}
{{- define "orchestrator.routeChannel" -}}
{{- $channel := .Values.httpRoute.crdChannel -}}
{{- if eq $channel "auto" -}}
{{- $crd := lookup "apiextensions.k8s.io/v1" "CustomResourceDefinition" "" "httproutes.gateway.networking.k8s.io" -}}
{{- $channel = (($crd.metadata | default dict).annotations | default dict) | dig "gateway.networking.k8s.io/channel" "unknown" -}}
{{- end -}}
{{- $channel -}}
{{- end -}}

{{/*
checkov: the findings the chart decides against, each with its reason (values.yaml says more).
Rendered as `checkov.io/skipN` annotations on the workload. Called with (dict "root" $ "test" bool).
*/}}
{{- define "orchestrator.checkovSkips" -}}
{{- $skips := list
  "CKV_K8S_11=No CPU limit by design: CFS quotas throttle a latency-sensitive proxy in bursts; the CPU request sizes scheduling and the HPA"
  "CKV_K8S_15=imagePullPolicy IfNotPresent with a pinned tag or digest: Always puts the registry (and its outages) in the path of every pod start"
-}}
{{- if not .root.Values.image.digest -}}
{{- $skips = append $skips "CKV_K8S_43=image.digest is empty: releases write it into values.yaml; set it to pin the image by digest" -}}
{{- end -}}
{{- if .test -}}
{{- $skips = concat $skips (list
  "CKV_K8S_8=helm test pod: it runs one check and exits, there is nothing to probe"
  "CKV_K8S_9=helm test pod: it runs one check and exits, there is nothing to probe"
  "CKV2_K8S_6=helm test pod: short-lived and without a port of its own; it reaches the admin port, which the chart's NetworkPolicy admits it to") -}}
{{- end -}}
{{- range $i, $s := $skips }}
checkov.io/skip{{ add1 $i }}: {{ $s | quote }}
{{- end -}}
{{- end -}}

{{/*
Seconds as a Gateway API duration (at most five digits a unit): 28800 → "8h", 5400 → "1h30m".
*/}}
{{- define "orchestrator.gatewayDuration" -}}
{{- $s := int64 . -}}
{{- $h := div $s 3600 -}}
{{- $m := div (mod $s 3600) 60 -}}
{{- $rest := mod $s 60 -}}
{{- if $h }}{{ $h }}h{{ end }}{{ if $m }}{{ $m }}m{{ end }}{{ if or $rest (eq $s 0) }}{{ $rest }}s{{ end -}}
{{- end -}}

{{/* "true" when more than one pod may run (replicaCount > 1, or the HPA). */}}
{{- define "orchestrator.severalPods" -}}
{{- if or (gt (int .Values.replicaCount) 1) .Values.autoscaling.enabled }}true{{ end -}}
{{- end -}}

{{/*
"true" when every request of a user must reach one pod: several pods serve local gateway
sessions. The Ingress and the HTTPRoute then make sessions stick.
*/}}
{{- define "orchestrator.stickyNeeded" -}}
{{- $config := include "orchestrator.config" . | fromYaml -}}
{{- $gateway := $config.appGateway | default dict -}}
{{- $session := $gateway.session | default dict -}}
{{- if and (eq (include "orchestrator.severalPods" .) "true") (not (empty $gateway)) (eq ($session.store | default "local") "local") }}true{{ end -}}
{{- end -}}

{{/*
The Ingress controller whose annotations the chart adds: ingress.controller, or for `auto` the
className when it is exactly `nginx` or `alb` (nothing is guessed from other names), else other.
*/}}
{{- define "orchestrator.ingressController" -}}
{{- $flavor := .Values.ingress.controller -}}
{{- if eq $flavor "auto" -}}
{{- $flavor = ternary "alb" (ternary "nginx" "other" (eq .Values.ingress.className "nginx")) (eq .Values.ingress.className "alb") -}}
{{- end -}}
{{- $flavor -}}
{{- end -}}
