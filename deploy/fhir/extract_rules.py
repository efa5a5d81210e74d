"""Regenerate shared/fhir_r4_rules.json from the official FHIR R4 definitions.

    .venv/bin/python deploy/fhir/extract_rules.py            # fetches the jar with Maven
    .venv/bin/python deploy/fhir/extract_rules.py JAR        # or reads a jar already at hand

The definitions come from `ca.uhn.hapi.fhir:hapi-fhir-validation-resources-r4` (deploy/fhir/pom.xml
names the version: the one of HAPI FHIR that ../shared/peers/hapi.sh runs), which packages the
R4 (4.0.1) StructureDefinitions, ValueSets and CodeSystems as HL7 publishes them. For each
type the chart or consent takes in, the file keeps, by JSON property path (choice types
spelled as in JSON, `valueQuantity`): the elements with a *required* binding and the value
set's codes, the error-severity invariants (FHIRPath) of the type, its backbone elements and
the datatypes it uses, and the elements that are References (with the resource types a
relative reference may name). What cannot be checked from the file alone (value sets without
an enumerable expansion, invariants fhirpathpy cannot evaluate) is listed under `skipped`
with the reason, not dropped silently.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path
from typing import Any

from shared.events import CATEGORIES

HERE = Path(__file__).resolve().parent
OUT = HERE.parent.parent / "shared" / "fhir_r4_rules.json"
NS = {"f": "http://hl7.org/fhir"}
# The chart's types, and Consent: not a chart type, but consent takes it in at POST /fhir/Consent.
TYPES = (*CATEGORIES, "Consent")
# Elements every resource has whose content the chart does not check here: extensions are open
# by design, contained resources are not taken by the chart, and narrative XHTML needs an
# XHTML checker (txt-1 uses htmlChecks()).
UNWALKED = {"extension", "modifierExtension", "contained"}
# ele-1 and ext-1 hold on every element; fhir.resources already refuses empty objects.
EVERYWHERE = {"ele-1", "ext-1"}
MAX_DEPTH = 7
# FHIRPath functions fhirpathpy 2.2 lacks; shared.fhir_conformance supplies hasValue itself.
UNSUPPORTED = ("htmlChecks", "conformsTo", "memberOf", "resolve", "hasValue(", "subsumes")
SUPPLIED = ("hasValue()",)
# Invariants fhirpathpy parses but cannot evaluate.
UNEVALUABLE = {
    "rng-2": "fhirpathpy cannot compare two Quantity values",
    "dom-3": "fhirpathpy refuses as() on a collection (descendants().as(canonical))",
}
PROFILES = "org/hl7/fhir/r4/model/profile/"
VALUESETS = "org/hl7/fhir/r4/model/valueset/"


def main(argv: list[str]) -> None:
    jar = Path(argv[1]) if len(argv) > 1 else fetch_jar()
    with zipfile.ZipFile(jar) as archive:
        version = _pom_version(archive)
        structures = _resources(archive, PROFILES + "profiles-types.xml")
        structures += _resources(archive, PROFILES + "profiles-resources.xml")
        terminology = []
        for name in ("valuesets.xml", "v3-codesystems.xml", "v2-tables.xml"):
            terminology += _resources(archive, VALUESETS + name)
    rules = Extraction(structures, terminology).rules()
    rules["source"] = f"ca.uhn.hapi.fhir:hapi-fhir-validation-resources-r4:{version} (FHIR 4.0.1)"
    rules["generator"] = "deploy/fhir/extract_rules.py"
    OUT.write_text(json.dumps(rules, indent=1, sort_keys=True) + "\n")
    print(f"wrote {OUT} from {rules['source']}")


def fetch_jar() -> Path:
    target = Path(tempfile.mkdtemp(prefix="fhir-definitions-"))
    subprocess.run(
        [
            "mvn",
            "-B",
            "-q",
            "-f",
            str(HERE / "pom.xml"),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={target}",
        ],
        check=True,
    )
    return next(target.glob("hapi-fhir-validation-resources-r4-*.jar"))


def _pom_version(archive: zipfile.ZipFile) -> str:
    name = "META-INF/maven/ca.uhn.hapi.fhir/hapi-fhir-validation-resources-r4/pom.properties"
    text = archive.read(name).decode()
    return re.search(r"^version=(.+)$", text, re.M).group(1).strip()  # type: ignore[union-attr]


def _resources(archive: zipfile.ZipFile, name: str) -> list[ET.Element]:
    root = ET.fromstring(archive.read(name))
    return [child for entry in root.findall("f:entry/f:resource", NS) for child in entry]


def _value(node: ET.Element | None, tag: str) -> str | None:
    found = node.find(f"f:{tag}", NS) if node is not None else None
    return found.get("value") if found is not None else None


def _tag(node: ET.Element) -> str:
    return node.tag.split("}")[1]


class Extraction:
    def __init__(self, structures: list[ET.Element], terminology: list[ET.Element]) -> None:
        self.structures = {
            _value(sd, "url"): sd for sd in structures if _tag(sd) == "StructureDefinition"
        }
        self.by_name = {
            _value(sd, "id"): sd
            for sd in self.structures.values()
            if _value(sd, "derivation") != "constraint"
        }
        self.code_systems = {
            _value(cs, "url"): cs for cs in terminology if _tag(cs) == "CodeSystem"
        }
        self.value_sets = {_value(vs, "url"): vs for vs in terminology if _tag(vs) == "ValueSet"}
        self.expansions: dict[str, dict[str, list[str]]] = {}
        self.skipped: dict[str, str] = {}

    def rules(self) -> dict[str, Any]:
        types = {name: self._type_rules(name) for name in TYPES}
        used = {url for rules in types.values() for _, url in rules["bindings"].values()}
        return {
            # What a relative reference may name (http://hl7.org/fhir/R4/references.html).
            "resourceTypes": sorted(
                name
                for name, sd in self.by_name.items()
                if _value(sd, "kind") == "resource" and _value(sd, "abstract") != "true"
            ),
            "types": types,
            "valueSets": {url: self.expansions[url] for url in sorted(used)},
            "skipped": dict(sorted(self.skipped.items())),
        }

    def _type_rules(self, name: str) -> dict[str, Any]:
        rules: dict[str, Any] = {"bindings": {}, "invariants": [], "references": []}
        sd = self.by_name[name]
        self._walk(sd, name, "", rules, depth=0, types=(name,))
        return rules

    def _elements(self, sd: ET.Element) -> dict[str, ET.Element]:
        return {_value(e, "path"): e for e in sd.findall("f:snapshot/f:element", NS)}  # type: ignore[misc]

    def _walk(
        self,
        sd: ET.Element,
        path: str,
        prefix: str,
        rules: dict[str, Any],
        *,
        depth: int,
        types: tuple[str, ...],
    ) -> None:
        """Rules of the element at `path` of `sd` (its children too), at JSON path `prefix`."""
        elements = self._elements(sd)
        element = elements[path]
        self._invariants(element, path, prefix, rules, root_type=_value(sd, "type") or "")
        if depth >= MAX_DEPTH:
            return
        children = [
            p for p in elements if p.startswith(path + ".") and "." not in p[len(path) + 1 :]
        ]
        for child_path in children:
            child = elements[child_path]
            name = child_path.rsplit(".", 1)[1]
            if name in UNWALKED or _value(child, "max") == "0":
                continue
            for json_name, type_code, profile in self._json_forms(child, name):
                where = f"{prefix}.{json_name}" if prefix else json_name
                self._binding(child, child_path, where, type_code, rules)
                if type_code == "Reference" and where not in rules["references"]:
                    rules["references"].append(where)
                reference = _value(child, "contentReference")
                if reference:
                    self._walk(sd, reference[1:], where, rules, depth=depth + 1, types=types)
                elif type_code in ("BackboneElement", "Element"):
                    self._walk(sd, child_path, where, rules, depth=depth + 1, types=types)
                else:
                    target = self.structures.get(profile) if profile else None
                    target = target if target is not None else self.by_name.get(type_code)
                    if (
                        target is not None
                        and _value(target, "kind") == "complex-type"
                        and type_code not in types
                        and type_code not in ("Extension", "Narrative", "Resource")
                    ):
                        root = _value(target, "type") or type_code
                        self._walk(
                            target, root, where, rules, depth=depth + 1, types=(*types, type_code)
                        )

    def _json_forms(self, element: ET.Element, name: str) -> list[tuple[str, str, str | None]]:
        forms = []
        for kind in element.findall("f:type", NS):
            code = _value(kind, "code") or ""
            if code.startswith("http://hl7.org/fhirpath/"):
                code = "string"
            profile = _value(kind, "profile")
            json_name = name[:-3] + code[0].upper() + code[1:] if name.endswith("[x]") else name
            forms.append((json_name, code, profile))
        if not forms and _value(element, "contentReference"):
            forms.append((name, "", None))
        return forms

    def _binding(
        self, element: ET.Element, path: str, where: str, type_code: str, rules: dict[str, Any]
    ) -> None:
        binding = element.find("f:binding", NS)
        if binding is None or _value(binding, "strength") != "required":
            return
        if type_code not in ("code", "Coding", "CodeableConcept", "string", "uri"):
            return
        url = (_value(binding, "valueSet") or "").split("|")[0]
        if self._expand(url) is None:
            self.skipped.setdefault(f"binding {path}", self.skipped.get(url, "not enumerable"))
            return
        rules["bindings"][where] = [type_code, url]

    def _invariants(
        self,
        element: ET.Element,
        path: str,
        prefix: str,
        rules: dict[str, Any],
        *,
        root_type: str,
    ) -> None:
        for constraint in element.findall("f:constraint", NS):
            key = _value(constraint, "key") or ""
            expression = _value(constraint, "expression") or ""
            if key in EVERYWHERE or _value(constraint, "severity") != "error":
                continue
            bare = expression
            for supplied in SUPPLIED:
                bare = bare.replace(supplied, "")
            lacking = [name for name in UNSUPPORTED if name in bare]
            if key in UNEVALUABLE:
                self.skipped[f"invariant {key}"] = UNEVALUABLE[key]
                continue
            if lacking:
                self.skipped[f"invariant {key}"] = f"fhirpathpy lacks {lacking[0].rstrip('(')}()"
                continue
            rules["invariants"].append(
                {
                    "at": prefix,
                    "base": path if "." in path else root_type,
                    "key": key,
                    "expression": expression,
                    "human": _value(constraint, "human"),
                }
            )

    def _expand(self, url: str) -> dict[str, list[str]] | None:
        if url in self.expansions:
            return self.expansions[url]
        vs = self.value_sets.get(url)
        if vs is None:
            self.skipped[url] = "value set not in the package"
            return None
        codes: dict[str, set[str]] = {}
        for include in vs.findall("f:compose/f:include", NS):
            part = self._include(include, url)
            if part is None:
                return None
            for system, found in part.items():
                codes.setdefault(system, set()).update(found)
        for exclude in vs.findall("f:compose/f:exclude", NS):
            for system, found in (self._include(exclude, url) or {}).items():
                codes.get(system, set()).difference_update(found)
        expansion = {system: sorted(found) for system, found in sorted(codes.items())}
        self.expansions[url] = expansion
        return expansion

    def _include(self, include: ET.Element, url: str) -> dict[str, set[str]] | None:
        if include.find("f:filter", NS) is not None:
            self.skipped[url] = "defined by a filter"
            return None
        result: dict[str, set[str]] = {}
        for nested in include.findall("f:valueSet", NS):
            part = self._expand((nested.get("value") or "").split("|")[0])
            if part is None:
                self.skipped[url] = "includes a value set that is not enumerable"
                return None
            for system, found in part.items():
                result.setdefault(system, set()).update(found)
        system = _value(include, "system")
        if system is None:
            return result
        listed = [_value(c, "code") for c in include.findall("f:concept", NS)]
        if listed:
            result.setdefault(system, set()).update(c for c in listed if c)
            return result
        cs = self.code_systems.get(system)
        if cs is None or _value(cs, "content") != "complete":
            self.skipped[url] = f"includes all of {system}, which the package does not enumerate"
            return None
        result.setdefault(system, set()).update(
            _value(c, "code") or "" for c in cs.iter("{http://hl7.org/fhir}concept")
        )
        return result


if __name__ == "__main__":
    main(sys.argv)
