"""Lambda's 250 MiB limit on a function's code and layers, unzipped, measured on sam build's output."""

from __future__ import annotations

from pathlib import Path

import pytest

from busline.package_size import LAMBDA_UNZIPPED_LIMIT_BYTES, deployment_sizes, main

BUILT_TEMPLATE = """\
Globals:
  Function:
    Layers:
    - Ref: SharedLayer
Resources:
  SharedLayer:
    Type: AWS::Serverless::LayerVersion
    Properties:
      ContentUri: SharedLayer
  ApiFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: ApiFunction
  LoadFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: LoadFunction
      Layers:
      - Ref: SharedLayer
      - arn:aws:lambda:us-east-1:123456789012:layer:psql:1
"""


def _built(tmp_path: Path, shared_layer_bytes: int) -> Path:
    (tmp_path / "template.yaml").write_text(BUILT_TEMPLATE)
    for folder, files in {
        "ApiFunction": {"app.py": 1_000},
        "LoadFunction": {"app.py": 2_000, "sub/helper.py": 500},
        "SharedLayer": {"python/big.so": shared_layer_bytes, "python/a.py": 24},
    }.items():
        for name, size in files.items():
            path = tmp_path / folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"x" * size)
    (tmp_path / "SharedLayer" / "python" / "link.so").symlink_to(tmp_path / "SharedLayer" / "python" / "big.so")
    return tmp_path


def test_each_function_counts_its_code_and_every_layer_of_the_template_once(tmp_path: Path) -> None:
    # Given sam build's output: a 3 MB layer (a symlink into it too), the global Layers and one function's own
    build = _built(tmp_path, 3_000_000)

    # When the functions are measured
    sizes = {size.function: size for size in deployment_sizes(build)}

    # Then each is its code plus its layers' regular files, and an ARN from elsewhere is named, not guessed
    assert (sizes["ApiFunction"].code_bytes, sizes["ApiFunction"].layer_bytes) == (1_000, {"SharedLayer": 3_000_024})
    assert sizes["ApiFunction"].total_bytes == 3_001_024
    assert (sizes["LoadFunction"].code_bytes, sizes["LoadFunction"].total_bytes) == (2_500, 3_002_524)
    assert sizes["LoadFunction"].external_layers == ("arn:aws:lambda:us-east-1:123456789012:layer:psql:1",)
    assert all(size.fits for size in sizes.values())


def test_a_function_past_250_mib_fails_the_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a layer one byte short of the limit, so the functions' own code takes them over it
    build = _built(tmp_path, LAMBDA_UNZIPPED_LIMIT_BYTES - 24 - 1)

    # When the check runs
    exit_code = main([str(build)])

    # Then it fails, naming both functions as over the limit
    assert exit_code == 1
    printed = capsys.readouterr().out
    assert printed.count("OVER THE LIMIT") == 2
    assert "ApiFunction: 250.00 MiB (100%)" in printed
