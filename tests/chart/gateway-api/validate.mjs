// Validates Gateway API (v1.5 experimental channel, which includes the standard one), Envoy
// Gateway and GKE objects against validators generated from their CRD schemas
// (@kubernetes-models). Reads a JSON array of objects on stdin; prints one line per object,
// "ok KIND/NAME" or "FAIL KIND/NAME: reason", and exits 1 when any failed. The validators check
// types, enums, patterns and required fields; they do not reject unknown fields (the chart
// tests check those against the models' field lists) nor evaluate CEL rules. A part of an
// object is checked against its own model: {"apiVersion": ..., "kind": "HTTPExternalAuthFilter",
// ...its fields}. The Gateway API validators carry the standard channel's enums (an
// experimental filter type such as ExternalAuth is refused there) and every field.
import { readFileSync } from "node:fs";

const packages = {
  "gateway.networking.k8s.io": "@kubernetes-models/gateway-api/gateway.networking.k8s.io",
  "gateway.envoyproxy.io": "@kubernetes-models/envoy-gateway/gateway.envoyproxy.io",
  "networking.gke.io": "@kubernetes-models/gke/networking.gke.io",
};

let failed = 0;
for (const doc of JSON.parse(readFileSync(0, "utf8"))) {
  const [group, version] = doc.apiVersion.split("/");
  const name = `${doc.kind}/${doc.metadata?.name}`;
  const base = packages[group];
  if (!base) {
    failed++;
    console.log(`FAIL ${name}: no validator for ${doc.apiVersion}`);
    continue;
  }
  try {
    const Model = (await import(`${base}/${version}/${doc.kind}`))[doc.kind];
    new Model(doc).validate();
    console.log(`ok ${name}`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${name}: ${e.message}`);
  }
}
process.exit(failed ? 1 : 0);
