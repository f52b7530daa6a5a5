"""What each function deploys, against Lambda's limit: its code and all its layers, unzipped, at most
250 MiB (262,144,000 bytes; AWS refuses the function past it, at deploy time, not before).

Measured on `sam build`'s output, where each function's code and each layer is a folder named in the built
template; `make lint` runs this after its `sam build` and fails over the limit.

    python -m busline.package_size [BUILD_DIR]    (default .aws-sam/build)
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from busline.localcloud.template import load_template

LAMBDA_UNZIPPED_LIMIT_BYTES = 250 * 1024 * 1024
_MIB = 1024 * 1024


@dataclass(frozen=True)
class DeploymentSize:
    function: str
    code_bytes: int
    layer_bytes: dict[str, int]  # by the layer's logical id, in the function's order
    external_layers: tuple[str, ...] = ()  # layer ARNs from outside the template: not measurable here

    @property
    def total_bytes(self) -> int:
        return self.code_bytes + sum(self.layer_bytes.values())

    @property
    def fits(self) -> bool:
        return self.total_bytes <= LAMBDA_UNZIPPED_LIMIT_BYTES


def folder_bytes(folder: Path) -> int:
    """The unzipped size of a folder as Lambda counts it: every regular file's bytes (a symlink is stored as a
    link in the zip, so it counts as nothing here)."""
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            path = Path(root, name)
            if not path.is_symlink():
                total += path.stat().st_size
    return total


def deployment_sizes(build_dir: Path) -> list[DeploymentSize]:
    """Every function of the built template: its code folder's size and each of its layers' (the function's
    own Layers, else the Globals')."""
    template = load_template(build_dir / "template.yaml")
    resources: dict[str, Any] = template["Resources"]
    global_layers = ((template.get("Globals") or {}).get("Function") or {}).get("Layers") or []
    measured: dict[str, int] = {}

    def size_of(folder: str) -> int:
        if folder not in measured:
            measured[folder] = folder_bytes(build_dir / folder)
        return measured[folder]

    sizes = []
    for name, resource in sorted(resources.items()):
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        properties = resource.get("Properties") or {}
        code = properties.get("CodeUri")
        if not isinstance(code, str):
            raise ValueError(f"{name} has no local CodeUri in {build_dir}: is it `sam build`'s output?")
        layers: dict[str, int] = {}
        external: list[str] = []
        for layer in properties.get("Layers", global_layers):
            logical_id = layer.get("Ref") if isinstance(layer, dict) else None
            content = ((resources.get(logical_id) or {}).get("Properties") or {}).get("ContentUri") if logical_id else None
            if isinstance(content, str):
                layers[str(logical_id)] = size_of(content)
            else:
                external.append(str(layer))
        sizes.append(DeploymentSize(name, size_of(code), layers, tuple(external)))
    return sizes


def report(sizes: list[DeploymentSize]) -> str:
    lines = [f"Unzipped size of each function's code and layers (Lambda's limit: {LAMBDA_UNZIPPED_LIMIT_BYTES / _MIB:.0f} MiB)"]
    for size in sizes:
        layers = ", ".join(f"{layer} {bytes_ / _MIB:.2f}" for layer, bytes_ in size.layer_bytes.items())
        line = (
            f"  {size.function}: {size.total_bytes / _MIB:.2f} MiB "
            f"({size.total_bytes / LAMBDA_UNZIPPED_LIMIT_BYTES:.0%}); code {size.code_bytes / _MIB:.2f}"
            + (f", {layers}" if layers else "")
        )
        if size.external_layers:
            line += f"; not counted, from outside the template: {', '.join(size.external_layers)}"
        if not size.fits:
            line += "  OVER THE LIMIT: AWS will refuse this function"
        lines.append(line)
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    build_dir = Path(argv[0]) if argv else Path(".aws-sam/build")
    sizes = deployment_sizes(build_dir)
    print(report(sizes))
    return 0 if all(size.fits for size in sizes) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
