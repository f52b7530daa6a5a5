"""What `sam deploy` would upload fits Lambda: every function's code and layers, unzipped, within 250 MiB."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from samtranslator.yaml_helper import yaml_parse

from busline.package_size import deployment_sizes, report

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "template.yaml"
SAM = Path(sys.executable).parent / "sam"


def test_every_function_built_by_sam_fits_lambdas_unzipped_limit(tmp_path: Path) -> None:
    # Given the template's functions and layers
    declared = yaml_parse(TEMPLATE.read_text())["Resources"]
    functions = {name for name, resource in declared.items() if resource["Type"] == "AWS::Serverless::Function"}

    # When sam builds them as `sam deploy` would upload them
    build = tmp_path / "build"
    result = subprocess.run(
        [str(SAM), "build", "--template", str(TEMPLATE), "--build-dir", str(build), "--cache-dir", str(tmp_path / "cache")],
        capture_output=True, text=True, timeout=600, check=False, cwd=REPO,
        env={**os.environ, "SAM_CLI_TELEMETRY": "0", "AWS_DEFAULT_REGION": "us-east-1"},
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    sizes = deployment_sizes(build)
    print(report(sizes))

    # Then each function is measured with both of the template's layers, and fits
    assert {size.function for size in sizes} == functions
    assert {size.function: list(size.layer_bytes) for size in sizes} == {
        name: ["SharedLayer", "PipelinesLayer"] for name in functions
    }
    assert [size.function for size in sizes if not size.fits] == []
