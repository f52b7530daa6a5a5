"""SAM template in, CloudFormation out — with the real SAM translator, not a re-implementation.

The translator only accepts `s3://` code locations, so local folders are swapped for
`s3://busline-local-code/<relpath>` first; afterwards every translated function/layer whose code
points at that bucket gets `Metadata.BuslineLocalPath`: the absolute folder to import the code from (for a layer, the folder
that goes on sys.path).
"""

from __future__ import annotations

import copy
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

from busline.localcloud.model import ProvisionError

LOCAL_CODE_BUCKET = "busline-local-code"
LOCAL_PATH_KEY = "BuslineLocalPath"

_FUNCTION = "AWS::Serverless::Function"
_LAYER = "AWS::Serverless::LayerVersion"


class _NoManagedPolicies:
    """The translator asks for AWS managed policy ARNs; locally IAM grants nothing, so none are needed."""

    def load(self) -> dict[str, str]:
        return {}


def load_template(template_path: Path) -> dict[str, Any]:
    if not template_path.is_file():
        raise ProvisionError(f"template {template_path} does not exist")
    try:
        parsed = yaml_parse(template_path.read_text())
    except Exception as exc:  # the YAML/JSON parser raises several unrelated types
        raise ProvisionError(f"template {template_path} is not valid YAML: {exc}") from exc
    if not isinstance(parsed, dict) or not isinstance(parsed.get("Resources"), dict):
        raise ProvisionError(f"template {template_path} has no Resources section")
    return parsed


def load_and_translate(template_path: Path, region: str) -> dict[str, Any]:
    """Parse `template_path`, translate SAM to CloudFormation and remember where local code lives."""
    template_path = template_path.resolve()
    sam = load_template(template_path)
    local_folders = _rewrite_local_code_uris(sam, template_path.parent)
    cfn = _translate(sam, region, template_path)
    _mark_local_paths(cfn, local_folders)
    return cfn


def _rewrite_local_code_uris(sam: dict[str, Any], base: Path) -> dict[str, Path]:
    """Swap local CodeUri/ContentUri for S3 URIs in place; return S3 key -> absolute local folder."""
    folders: dict[str, Path] = {}

    def rewrite(owner: str, properties: dict[str, Any], key: str, importable_subdir: str = "") -> str | None:
        uri = properties.get(key)
        if not isinstance(uri, str) or uri.startswith("s3://"):
            return None  # S3 dicts/URIs and intrinsics are left for the provisioner to reject if it must
        folder = (base / uri).resolve()
        if not folder.exists():
            raise ProvisionError(f"{owner}: {key} {uri!r} does not exist (looked in {folder})")
        if not folder.is_dir():
            raise ProvisionError(f"{owner}: {key} {uri!r} must be a folder; the local cloud does not unpack archives")
        relpath = os.path.relpath(folder, base).replace(os.sep, "/")
        folders[relpath] = folder / importable_subdir if importable_subdir else folder
        properties[key] = f"s3://{LOCAL_CODE_BUCKET}/{relpath}"
        return relpath

    function_globals = sam.get("Globals", {}).get("Function")
    if isinstance(function_globals, dict):
        rewrite("Globals.Function", function_globals, "CodeUri")
    for logical_id, resource in sam["Resources"].items():
        if not isinstance(resource, dict):
            raise ProvisionError(f"{logical_id}: resource must be a mapping")
        properties = resource.get("Properties")
        if not isinstance(properties, dict):
            continue
        if resource.get("Type") == _FUNCTION:
            rewrite(logical_id, properties, "CodeUri")
        elif resource.get("Type") == _LAYER:
            # Without a BuildMethod the folder is zipped as is, and Lambda puts only <root>/python
            # on sys.path; with one, `sam build` moves the folder's content (and deps) into python/;
            # with "makefile", the folder's Makefile decides what goes where, so it is run here too.
            build_method = (resource.get("Metadata") or {}).get("BuildMethod")
            relpath = rewrite(logical_id, properties, "ContentUri", "" if build_method else "python")
            if relpath is not None and build_method == "makefile":
                folders[relpath] = build_with_make(logical_id, folders[relpath], base) / "python"
    return folders


def build_with_make(logical_id: str, folder: Path, base: Path) -> Path:
    """What `sam build` does for BuildMethod makefile: `make build-<LogicalId>` in the folder, with
    ARTIFACTS_DIR an empty folder. Built under .aws-sam/ beside the template, once per content (a hash of
    the folder's files), so clouds started one after the other share it and a change is built again."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    artifacts = base / ".aws-sam" / "busline-local" / f"{logical_id}-{digest.hexdigest()[:16]}"
    if artifacts.is_dir():
        return artifacts
    artifacts.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f"{logical_id}-", dir=artifacts.parent))
    try:
        made = subprocess.run(
            ["make", "--no-print-directory", "-C", str(folder), f"build-{logical_id}", f"ARTIFACTS_DIR={building}"],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        if made.returncode != 0:
            raise ProvisionError(f"{logical_id}: make build-{logical_id} failed in {folder}: {made.stderr.strip()}")
        os.replace(building, artifacts)  # atomic: a concurrent start sees all of it or none
    except OSError:
        if not artifacts.is_dir():
            raise
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return artifacts


def _translate(sam: dict[str, Any], region: str, template_path: Path) -> dict[str, Any]:
    # Without a feature-toggle config (which `sam deploy` fetches) it warns on every run; harmless.
    logging.getLogger("samtranslator.feature_toggle").setLevel(logging.ERROR)
    previous_region = os.environ.get("AWS_DEFAULT_REGION")
    os.environ["AWS_DEFAULT_REGION"] = region  # the translator reads the region from the environment
    try:
        if "Transform" not in sam:
            return copy.deepcopy(sam)  # plain CloudFormation: nothing to translate
        return dict(transform(copy.deepcopy(sam), {}, _NoManagedPolicies()))
    except Exception as exc:  # InvalidDocumentException and friends carry the useful message
        raise ProvisionError(f"SAM could not translate {template_path}: {_translator_message(exc)}") from exc
    finally:
        if previous_region is None:
            os.environ.pop("AWS_DEFAULT_REGION", None)
        else:
            os.environ["AWS_DEFAULT_REGION"] = previous_region


def _translator_message(exc: Exception) -> str:
    causes = getattr(exc, "causes", None)
    if causes:
        return "; ".join(str(getattr(cause, "message", cause)) for cause in causes)
    return str(getattr(exc, "message", exc))


def _mark_local_paths(cfn: dict[str, Any], folders: dict[str, Path]) -> None:
    for resource in cfn.get("Resources", {}).values():
        properties = resource.get("Properties") or {}
        if resource.get("Type") == "AWS::Lambda::Function":
            code = properties.get("Code")
        elif resource.get("Type") == "AWS::Lambda::LayerVersion":
            code = properties.get("Content")
        else:
            continue
        if not isinstance(code, dict) or code.get("S3Bucket") != LOCAL_CODE_BUCKET:
            continue
        key = code.get("S3Key")
        if key not in folders:
            continue
        resource.setdefault("Metadata", {})[LOCAL_PATH_KEY] = str(folders[key])
