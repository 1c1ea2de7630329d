#!/usr/bin/env python3
"""Check deploy/kubernetes/ offline, beside `kubernetes-validate --strict` (which knows every
built-in kind but not cert-manager's): every resource is either a built-in kind or a
cert-manager Issuer or Certificate, and those are checked for shape against the schema below,
a subset of cert-manager's v1 CRDs covering the fields the manifests use (unknown fields are
errors, as with --strict). It also checks what ties the files together: each Secret a pod
mounts is issued by a Certificate or is one of those docs/scale-out.md has the operator
create, and each ConfigMap a pod mounts exists and holds farmgate.toml.

    .ci/kubernetes.py                  check, exit 1 with the reasons on failure
    .ci/kubernetes.py --extract DIR    also write each ConfigMap's farmgate.toml to DIR/NAME.toml
                                       (for `farmgate check`: crates/farmgate/tests/interop_kubernetes.rs)

Needs PyYAML and jsonschema, which kubernetes-validate brings.
"""

import pathlib
import sys

import jsonschema
import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
MANIFESTS = ROOT / "deploy" / "kubernetes"

# Secrets the operator creates by hand (docs/scale-out.md, "Secrets").
OPERATOR_SECRETS = {"www-tls", "farmgate-tickets", "farmgate-admin"}

BUILT_IN = {
    ("v1", "Namespace"),
    ("v1", "ConfigMap"),
    ("v1", "Service"),
    ("apps/v1", "Deployment"),
    ("policy/v1", "PodDisruptionBudget"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
}

_NAME = {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"}
_METADATA = {
    "type": "object",
    "required": ["name", "namespace"],
    "properties": {"name": _NAME, "namespace": _NAME},
    "additionalProperties": False,
}
_ISSUER_REF = {
    "type": "object",
    "required": ["name", "kind"],
    "properties": {"name": _NAME, "kind": {"enum": ["Issuer", "ClusterIssuer"]}},
    "additionalProperties": False,
}
# cert-manager's KeyUsage values (pkg/apis/certmanager/v1/types.go).
_USAGES = [
    "signing", "digital signature", "content commitment", "key encipherment", "key agreement",
    "data encipherment", "cert sign", "crl sign", "encipher only", "decipher only", "any",
    "server auth", "client auth", "code signing", "email protection", "s/mime", "ipsec end system",
    "ipsec tunnel", "ipsec user", "timestamping", "ocsp signing", "microsoft sgc", "netscape sgc",
]
_DURATION = {"type": "string", "pattern": r"^([0-9]+(\.[0-9]+)?(h|m|s|ms))+$"}


def resource(spec):
    """A cert-manager resource whose `spec` matches the schema `spec`."""
    return {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {"apiVersion": {}, "kind": {}, "metadata": _METADATA, "spec": spec},
        "additionalProperties": False,
    }


SCHEMAS = {
    ("cert-manager.io/v1", "Issuer"): resource({
        "type": "object",
        "properties": {
            "selfSigned": {"type": "object", "additionalProperties": False},
            "ca": {
                "type": "object",
                "required": ["secretName"],
                "properties": {"secretName": _NAME},
                "additionalProperties": False,
            },
        },
        "minProperties": 1,
        "maxProperties": 1,
        "additionalProperties": False,
    }),
    ("cert-manager.io/v1", "Certificate"): resource({
        "type": "object",
        "required": ["secretName", "issuerRef"],
        "properties": {
            "secretName": _NAME,
            "issuerRef": _ISSUER_REF,
            "isCA": {"type": "boolean"},
            "commonName": {"type": "string", "maxLength": 64},
            "dnsNames": {"type": "array", "items": {"type": "string"}, "minItems": 1},
            "uris": {"type": "array", "items": {"type": "string"}},
            "usages": {"type": "array", "items": {"enum": _USAGES}, "uniqueItems": True},
            "duration": _DURATION,
            "renewBefore": _DURATION,
            "privateKey": {
                "type": "object",
                "properties": {
                    "algorithm": {"enum": ["RSA", "ECDSA", "Ed25519"]},
                    "size": {"type": "integer"},
                    "rotationPolicy": {"enum": ["Never", "Always"]},
                    "encoding": {"enum": ["PKCS1", "PKCS8"]},
                },
                "additionalProperties": False,
            },
        },
        "anyOf": [{"required": ["commonName"]}, {"required": ["dnsNames"]}, {"required": ["uris"]}],
        "additionalProperties": False,
    }),
}


def documents():
    """Every resource of deploy/kubernetes/, with its file."""
    for path in sorted(MANIFESTS.glob("*.yaml")):
        with path.open() as f:
            for doc in yaml.safe_load_all(f):
                if doc is not None:
                    yield path.name, doc


def pod_volumes(doc):
    spec = doc.get("spec", {}).get("template", {}).get("spec", {})
    return spec.get("volumes", [])


def check(docs):
    problems = []
    issued = set()
    config_maps = {}
    for name, doc in docs:
        key = (doc.get("apiVersion"), doc.get("kind"))
        what = f"{name}: {key[1]} {doc.get('metadata', {}).get('name')}"
        if key in SCHEMAS:
            validator = jsonschema.Draft202012Validator(SCHEMAS[key])
            for error in validator.iter_errors(doc):
                where = "/".join(str(p) for p in error.absolute_path) or "(top)"
                problems.append(f"{what}: {where}: {error.message}")
            if key[1] == "Certificate":
                issued.add(doc["spec"]["secretName"])
            if key[1] == "Issuer" and "ca" in doc.get("spec", {}):
                issued.add(doc["spec"]["ca"]["secretName"])
        elif key not in BUILT_IN:
            problems.append(f"{what}: neither a kind kubernetes-validate checks here nor one this script knows")
        if key == ("v1", "ConfigMap"):
            config_maps[doc["metadata"]["name"]] = doc.get("data", {})
    for name, doc in docs:
        for volume in pod_volumes(doc):
            secret = volume.get("secret", {}).get("secretName")
            if secret and secret not in issued | OPERATOR_SECRETS:
                problems.append(f"{name}: volume {volume['name']}: Secret {secret} is neither issued nor documented")
            config_map = volume.get("configMap", {}).get("name")
            if config_map and "farmgate.toml" not in config_maps.get(config_map, {}):
                problems.append(f"{name}: volume {volume['name']}: no ConfigMap {config_map} with farmgate.toml")
    return problems, config_maps


def main(argv):
    docs = list(documents())
    problems, config_maps = check(docs)
    if len(argv) == 3 and argv[1] == "--extract":
        out = pathlib.Path(argv[2])
        out.mkdir(parents=True, exist_ok=True)
        for name, data in config_maps.items():
            (out / f"{name}.toml").write_text(data["farmgate.toml"])
    elif len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    for problem in problems:
        print(f"deploy/kubernetes/{problem}", file=sys.stderr)
    if problems:
        return 1
    certs = sum(1 for _, d in docs if (d.get("apiVersion"), d.get("kind")) in SCHEMAS)
    print(f"deploy/kubernetes: {certs} cert-manager resources match their schema, "
          f"{len(config_maps)} ConfigMaps hold farmgate.toml, every mounted Secret is accounted for")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
