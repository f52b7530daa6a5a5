"""The peer comparison's verdicts and table: each difference is placed against AWS's documentation."""

from __future__ import annotations

import io

from rich.console import Console

from .model import Scenario
from .report import OURS, PEER, Result, cell, document, documented_cell, markdown, print_report

DOC = "https://docs.aws.amazon.com/example.html"


def scenario(ours_known: str = "") -> Scenario:
    return Scenario("sqs.example", "an example", DOC, {"deleted": ["good"], "failed": [["bad", "Code", True]]},
                    lambda aws: {}, ours_known=ours_known)


def test_both_as_documented_agree() -> None:
    # Given both peers observed exactly what AWS documents
    result = Result(scenario(), {OURS: {"deleted": ["good"], "failed": [["bad", "Code", True]]},
                                 PEER: {"deleted": ["good"], "failed": [["bad", "Code", True]]}})
    # When the verdict is read
    # Then they agree, and each cell says so
    assert result.verdict == "agree (both as AWS documents)"
    assert (cell(result, OURS), cell(result, PEER)) == ("as documented", "as documented")
    assert documented_cell(result) == DOC


def test_a_difference_is_blamed_on_the_peer_that_departs_from_aws() -> None:
    # Given MiniStack deleted both entries where AWS fails the bad one
    result = Result(scenario(), {OURS: {"deleted": ["good"], "failed": [["bad", "Code", True]]},
                                 PEER: {"deleted": ["good", "bad"], "failed": []}})
    # When the verdict and cells are read
    # Then MiniStack differs, its cell shows only what differs, the AWS cell what AWS documents there
    assert result.verdict == "MiniStack differs from AWS"
    assert cell(result, PEER) == 'deleted: ["good", "bad"]\nfailed: []'
    assert documented_cell(result) == f'deleted: ["good"]\nfailed: [["bad", "Code", true]]\n{DOC}'


def test_a_known_difference_of_ours_is_marked_known() -> None:
    # Given our local cloud departs from AWS in a way the scenario names as known
    result = Result(scenario(ours_known="moto does X"), {OURS: {"deleted": [], "failed": []},
                                                          PEER: {"deleted": ["good"], "failed": [["bad", "Code", True]]}})
    # When the verdict is read
    # Then it says ours differs, known and documented
    assert result.verdict == "ours differs from AWS (known, docs/local-cloud.md)"


def test_an_error_is_the_whole_observation() -> None:
    # Given a peer that could not run the scenario at all
    result = Result(scenario(), {OURS: {"error": "ClientError: 500"},
                                 PEER: {"deleted": ["good"], "failed": [["bad", "Code", True]]}})
    # When its cell is read
    # Then the error is shown, not a list of missing keys
    assert cell(result, OURS) == 'error: "ClientError: 500"'
    assert result.verdict == "ours differs from AWS"


def test_a_scenario_not_run_on_a_peer_is_not_compared() -> None:
    # Given the fixture could not be deployed on MiniStack
    result = Result(scenario(), {OURS: {"deleted": ["good"], "failed": [["bad", "Code", True]]}},
                    not_compared={PEER: "the fixture app could not be deployed"})
    # When the verdict and MiniStack's cell are read
    # Then nothing is compared, and ours alone is still judged against AWS
    assert result.verdict == "not compared; ours as AWS documents"
    assert cell(result, PEER) == "not run: the fixture app could not be deployed"


def test_table_shows_json_lists_verbatim_and_json_document_counts_verdicts() -> None:
    # Given one agreeing and one differing scenario whose observations hold JSON lists
    agreeing = Result(scenario(), {OURS: {"deleted": ["good"], "failed": [["bad", "Code", True]]},
                                   PEER: {"deleted": ["good"], "failed": [["bad", "Code", True]]}})
    differing = Result(scenario(), {OURS: {"deleted": ["good"], "failed": [["bad", "Code", True]]},
                                    PEER: {"deleted": [], "failed": [["bad", "Code", False]]}})
    output = io.StringIO()
    # When the table is printed and the document built
    print_report([agreeing, differing], {"rest-gateway": "not deployed"}, Console(file=output, width=250))
    built = document([agreeing, differing], {"rest-gateway": "not deployed"}, {"peers": {}})
    # Then the lists reach the table as written (not eaten as markup), and the counts are per verdict
    assert 'failed: [["bad", "Code", false]]' in output.getvalue()
    assert built["summary"] == {"agree": 1, "MiniStack differs from AWS": 1}
    assert [entry["verdict"] for entry in built["scenarios"]] == ["agree (both as AWS documents)",
                                                                 "MiniStack differs from AWS"]
    assert built["notCompared"] == {"rest-gateway": "not deployed"}


def test_markdown_has_one_line_per_scenario_with_its_aws_page() -> None:
    # Given a scenario where MiniStack differs
    result = Result(scenario(), {OURS: {"deleted": ["good"], "failed": [["bad", "Code", True]]},
                                 PEER: {"deleted": [], "failed": []}})
    # When the Markdown table is made
    lines = markdown([result]).splitlines()
    # Then its one row links the AWS page and marks each peer
    assert lines[2] == (f"| [`sqs.example`]({DOC}) | an example | as documented | differs | "
                        "MiniStack differs from AWS |")
    assert len(lines) == 3
