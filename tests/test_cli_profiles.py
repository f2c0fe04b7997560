"""The profile CLI end to end (Typer's CliRunner), incl. validate on malformed files."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from typer.testing import CliRunner

from gravity.cli import app
from gravity.profiles import load_profiles

runner = CliRunner()

GOOD = {
    "id": "u1",
    "demographics": {"country": "US", "age": 30},
    "big_five": {
        "openness": 4,
        "conscientiousness": 3,
        "extraversion": 3,
        "agreeableness": 3,
        "neuroticism": 2,
    },
}
SCHWARTZ = dict.fromkeys(
    [
        "self_direction",
        "stimulation",
        "hedonism",
        "achievement",
        "power",
        "security",
        "conformity",
        "tradition",
        "benevolence",
        "universalism",
    ],
    4.0,
)


def invoke(*args: str):
    return runner.invoke(app, list(args))


def test_help_and_version():
    assert invoke("--help").exit_code == 0
    result = invoke("--version")
    assert result.exit_code == 0 and re.fullmatch(r"gravity \d+\.\d+\.\d+\n", result.output)
    assert "sample" in invoke("profiles", "--help").output


def test_sample_writes_valid_deterministic_file(tmp_path):
    out1, out2 = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    assert (
        invoke(
            "profiles", "sample", "--country", "BR", "--n", "100", "--seed", "0", "-o", str(out1)
        ).exit_code
        == 0
    )
    assert (
        invoke(
            "profiles",
            "sample",
            "--country",
            "Brazil",
            "--n",
            "100",
            "--seed",
            "0",
            "-o",
            str(out2),
        ).exit_code
        == 0
    )
    assert out1.read_bytes() == out2.read_bytes()
    profiles = load_profiles(out1)
    assert len(profiles) == 100 and {p.country for p in profiles} == {"BR"}


def test_sample_to_stdout_and_yaml(tmp_path):
    result = invoke("profiles", "sample", "--country", "JP", "--n", "2")
    lines = result.stdout.strip().splitlines()
    assert (
        result.exit_code == 0
        and len(lines) == 2
        and json.loads(lines[0])["demographics"]["country"] == "JP"
    )
    out = tmp_path / "p.yaml"
    assert (
        invoke("profiles", "sample", "--country", "IN", "--n", "3", "-o", str(out)).exit_code == 0
    )
    assert len(load_profiles(out)) == 3


def test_sample_with_sampler_config(tmp_path):
    cfg = tmp_path / "sampler.yaml"
    cfg.write_text("big_five_sd: 0.01\n")
    out = tmp_path / "p.jsonl"
    assert (
        invoke(
            "profiles",
            "sample",
            "--country",
            "US",
            "--n",
            "5",
            "--config",
            str(cfg),
            "-o",
            str(out),
        ).exit_code
        == 0
    )
    assert {p.big_five.openness for p in load_profiles(out)} <= {
        2.97,
        2.98,
        2.99,
        3.0,
        3.01,
        3.02,
        3.03,
    }
    cfg.write_text("big_five_sd: -1\n")
    result = invoke("profiles", "sample", "--country", "US", "--config", str(cfg))
    assert result.exit_code == 2 and f"{cfg}: big_five_sd:" in result.output


def test_sample_unknown_country_is_one_line():
    result = invoke("profiles", "sample", "--country", "Narnia")
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: --country: unknown country 'Narnia'; "
        "did you mean Mauritania, Romania, Nigeria, Namibia?"
    ]


def test_validate_good_files(example_files, tmp_path):
    jsonl = tmp_path / "ok.jsonl"
    jsonl.write_text(json.dumps(GOOD) + "\n\n" + json.dumps({**GOOD, "id": "u2"}) + "\n")
    result = invoke("profiles", "validate", *map(str, example_files), str(jsonl))
    assert result.exit_code == 0, result.output
    assert f"{jsonl}: 2 valid profile(s)" in result.output


def _yaml(data) -> str:
    return yaml.safe_dump(data, sort_keys=False)


MALFORMED = {
    # name: (content, expected lines of output as regexes)
    "bad_country.yaml": (
        _yaml({**GOOD, "demographics": {"country": "Atlantis"}}),
        [r":3: demographics\.country: unknown country 'Atlantis'"],
    ),
    "openness_7.yaml": (
        _yaml({**GOOD, "big_five": {**GOOD["big_five"], "openness": 7}}),
        [r":6: big_five\.openness: Input should be less than or equal to 5"],
    ),
    "extra_key.yaml": (
        _yaml({**GOOD, "hobbies": ["chess"]}),
        [r":\d+: hobbies: unknown field 'hobbies'; valid: id, source, demographics, hofstede"],
    ),
    "no_id.yaml": (
        _yaml({k: v for k, v in GOOD.items() if k != "id"}),
        [r":1: id: Field required"],
    ),
    "broken.yaml": ("id: u1\ndemographics: [unclosed\n", [r":\d+: <yaml>: invalid YAML"]),
    "broken.json": ('{"id": "u1",\n  "demographics": }', [r":2: <json>: Expecting value"]),
    "second_line.jsonl": (
        json.dumps(GOOD)
        + "\n"
        + json.dumps({**GOOD, "id": "u2", "schwartz": {**SCHWARTZ, "power": 0, "tradition": 9}})
        + "\n",
        [
            r":2: schwartz\.power: Input should be greater than or equal to 1",
            r":2: schwartz\.tradition: Input should be less than or equal to 6",
        ],
    ),
    "dup.jsonl": (
        json.dumps(GOOD) + "\n" + json.dumps(GOOD) + "\n",
        [r":2: id: duplicate id 'u1' \(first on line 1\)"],
    ),
    "list.yaml": (
        _yaml([GOOD, {**GOOD, "id": "u2", "hofstede": {"pdi": 130}}]),
        [r":\d+: 1?\.?hofstede\.pdi: Input should be less than or equal to 120"],
    ),
    "profiles.txt": ("id: u1\n", [r":1: <file>: unknown extension"]),
    "empty.yaml": ("", [r":1: <file>: no profiles in file"]),
    "scalar.yaml": ("just text\n", [r":1: <record>: a profile must be a mapping"]),
    "bad_item.json": (
        json.dumps(
            [
                {
                    **GOOD,
                    "wvs": {
                        "traditional_secular": 0,
                        "survival_self_expression": 0,
                        "items": {"Q1": 2},
                    },
                }
            ],
            indent=1,
        ),
        [r":\d+: wvs\.items: unknown WVS item code\(s\) \['Q1'\]"],
    ),
    "bad_age_type.json": (
        json.dumps({**GOOD, "demographics": {"country": "US", "age": "old"}}),
        [r":1: demographics\.age: Input should be a valid integer"],
    ),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_validate_malformed(tmp_path, name):
    content, expected = MALFORMED[name]
    path = tmp_path / name
    path.write_text(content)
    result = invoke("profiles", "validate", str(path))
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == len(expected), lines
    for line, pattern in zip(lines, expected, strict=False):
        assert line.startswith(f"{path}:"), line
        assert re.search(pattern, line), (pattern, line)


def test_validate_line_numbers_point_at_the_field(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("id: u1\ndemographics:\n  country: US\n  age: 5\n")
    result = invoke("profiles", "validate", str(path))
    assert (
        result.output.strip()
        == f"{path}:4: demographics.age: Input should be greater than or equal to 13"
    )


def test_validate_missing_file_and_mixed(tmp_path, example_files):
    result = invoke("profiles", "validate", str(example_files[0]), str(tmp_path / "nope.yaml"))
    assert result.exit_code == 2
    assert f"{example_files[0]}: 1 valid profile(s)" in result.output
    assert f"{tmp_path / 'nope.yaml'}: <file>: cannot read: no such file" in result.output


def test_show(example_files):
    result = invoke("profiles", "show", str(example_files[0]))
    assert (
        result.exit_code == 0
        and "Culture (" in result.output
        and "Values (Schwartz)" in result.output
    )
    result = invoke("profiles", "show", str(example_files[0]), "--facet", "values")
    assert result.exit_code == 0
    assert "Values (Schwartz)" in result.output and "Culture" not in result.output
    result = invoke("profiles", "show", str(example_files[0]), "--id", "nobody")
    assert result.exit_code == 2 and "no profile with id 'nobody'" in result.output
    result = invoke("profiles", "show", str(example_files[0]), "--facet", "zodiac")
    assert result.exit_code == 2 and "unknown facet" in result.output


def test_from_answers(tmp_path):
    answers = tmp_path / "answers.yaml"
    answers.write_text(
        _yaml(
            {
                "id": "jp-q-1",
                "demographics": {"age": 40},
                "bfi10": [2, 4, 5, 1, 2, 4, 3, 2, 3, 5],
                "pvq21": [6, 1, 5, 2, 4, 3, 2, 5, 1, 4, 6, 6, 2, 4, 3, 3, 1, 5, 6, 2, 4],
            }
        )
    )
    out = tmp_path / "profile.yaml"
    result = invoke("profiles", "from-answers", str(answers), "--country", "JP", "-o", str(out))
    assert result.exit_code == 0, result.output
    (profile,) = load_profiles(out)
    assert profile.source == "questionnaire" and profile.country == "JP"
    assert profile.big_five.conscientiousness == 1.5 and profile.hofstede.mas == 95


@pytest.mark.parametrize(
    "data, message",
    [
        ({"bfi10": [3] * 9}, "bfi10: expected 10 answers"),
        ({"bfi10": [3] * 9 + [9]}, "bfi10: item 10: answer 9 is outside 1-5"),
        ({"pvq21": [3] * 22}, "pvq21: expected 21 answers"),
        ({"bfi10": [3] * 10, "shoe": 1}, "shoe: unknown field 'shoe'; valid: id, demographics"),
        ({"bfi10": [3] * 10, "demographics": {"age": 3}}, "demographics.age"),
    ],
)
def test_from_answers_errors(tmp_path, data, message):
    answers = tmp_path / "answers.yaml"
    answers.write_text(_yaml(data))
    out = tmp_path / "profile.yaml"
    result = invoke("profiles", "from-answers", str(answers), "--country", "JP", "-o", str(out))
    assert result.exit_code == 2
    assert message in result.output and str(answers) in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not out.exists()


def test_validate_reports_every_bad_line_bounded(tmp_path):
    path = tmp_path / "many.jsonl"
    lines = [json.dumps(GOOD), "{nope", json.dumps({**GOOD, "id": "u2", "hobby": 1}), "[1]"]
    lines.append(json.dumps({**GOOD, "id": "u3", "demographics": {"country": "US", "age": 5}}))
    path.write_text("\n".join(lines) + "\n")
    result = invoke("profiles", "validate", str(path))
    assert result.exit_code == 2
    out = result.output.strip().splitlines()
    assert [line.split(": ")[0].rsplit(":", 1)[1] for line in out] == ["2", "3", "4", "5"], out
    assert "<json>" in out[0] and "hobby" in out[1] and "mapping" in out[2] and "age" in out[3]
    # A file of 500 bad lines: the first 50 problems and a note, not 500 lines (and not 1).
    path.write_text("{nope\n" * 500)
    result = invoke("profiles", "validate", str(path))
    out = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(out) == 51
    assert out[-1] == f"{path}: more problems not shown (stopped after 50)"


def test_unknown_fields_suggest_the_closest_name(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(_yaml({**GOOD, "big_five": {**GOOD["big_five"], "opennes": 4}}))
    result = invoke("profiles", "validate", str(path))
    assert "big_five.opennes: unknown field 'opennes'; did you mean 'openness'?" in result.output
    config = tmp_path / "sampler.yaml"
    config.write_text("big_five_sdd: 0.5\n")
    result = invoke("profiles", "sample", "--country", "JP", "--config", str(config))
    assert result.exit_code == 2
    assert result.output.strip() == (
        f"error: {config}: big_five_sdd: unknown field 'big_five_sdd'; did you mean 'big_five_sd'?"
    )


def test_show_bad_facet_prints_only_the_error(example_files):
    result = invoke("profiles", "show", str(example_files[0]), "--facet", "value")
    assert result.exit_code == 2
    assert result.output.strip() == (
        "error: --facet: unknown facet 'value'; did you mean 'values'? "
        "valid: demographics, culture, values, personality, interests"
    )


def test_show_notes_missing_culture_values(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(_yaml({"id": "al1", "demographics": {"country": "Albania"}}))
    result = invoke("profiles", "show", str(path))
    assert result.exit_code == 0
    assert "long-term orientation" in result.output  # the scores the table has are shown
    assert "(note: no Hofstede power distance, individualism" in result.output
    result = invoke("profiles", "show", str(example_files_dir() / "japan.yaml"))
    assert "note:" not in result.output


def example_files_dir():
    from gravity.resources import profiles_dir

    return profiles_dir() / "examples"


def test_from_answers_unknown_country_flag_blames_the_flag(tmp_path):
    answers = tmp_path / "answers.yaml"
    answers.write_text(_yaml({"bfi10": [3] * 10, "demographics": {"country": "JP"}}))
    out = tmp_path / "p.yaml"
    result = invoke("profiles", "from-answers", str(answers), "--country", "Brasil", "-o", str(out))
    assert result.exit_code == 2 and not out.exists()
    assert result.output.strip().startswith("error: --country: unknown country 'Brasil'")
    assert "Brazil" in result.output and "demographics" not in result.output
    # The same name in the file is the file's fault.
    answers.write_text(_yaml({"bfi10": [3] * 10, "demographics": {"country": "Brasil"}}))
    result = invoke("profiles", "from-answers", str(answers))
    assert f"{answers}: demographics.country: unknown country 'Brasil'" in result.output


def test_written_files_keep_the_umask(tmp_path):
    import os

    out = tmp_path / "p.jsonl"
    old = os.umask(0o022)
    try:
        assert (
            invoke("profiles", "sample", "--country", "BR", "--n", "2", "-o", str(out)).exit_code
            == 0
        )
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == 0o644
