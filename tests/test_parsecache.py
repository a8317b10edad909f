"""The parse cache of large config files: reused while the text is unchanged, never trusted
beyond it, and invisible to a field engineer (the same config, the same error lines)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import EXAMPLE
from parkwatch.config import parsecache, yamlsource
from parkwatch.config.loader import ConfigError
from parkwatch.schema import load_config

PAD = "# " + "x" * 98 + "\n"


def big_config(path: Path, text: str | None = None) -> Path:
    """The example park made larger than MIN_BYTES by a trailing comment block."""
    body = EXAMPLE.read_text(encoding="utf-8") if text is None else text
    path.write_text(body + PAD * (parsecache.MIN_BYTES // len(PAD) + 1), encoding="utf-8")
    return path


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("CACHE_DIRECTORY", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "parkwatch"


def no_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_a: object) -> None:
        raise AssertionError("the file was parsed although the cache holds it")
    monkeypatch.setattr(yamlsource, "parse_yaml_with_lines", refuse)


def test_a_large_config_is_parsed_once_and_then_read_from_the_cache(tmp_path, cache,
                                                                      monkeypatch):
    path = big_config(tmp_path / "park.yaml")
    first = load_config(path)
    assert len(list(cache.glob("config-*.json"))) == 2  # the data and its line map
    with monkeypatch.context() as m:
        no_parsing(m)
        again = load_config(path)
    assert again.model_dump() == first.model_dump()


def test_a_changed_file_is_parsed_again(tmp_path, cache, monkeypatch):
    path = big_config(tmp_path / "park.yaml")
    load_config(path)
    text = EXAMPLE.read_text(encoding="utf-8").replace("flush_interval_s: 1.0",
                                                        "flush_interval_s: 2.5")
    big_config(path, text)
    assert load_config(path).telemetry.flush_interval_s == 2.5


def test_an_error_names_the_same_line_from_the_cache(tmp_path, cache, monkeypatch):
    text = EXAMPLE.read_text(encoding="utf-8").replace("flush_interval_s: 1.0",
                                                        "flush_interval_s: -1")
    line = text[:text.index("flush_interval_s: -1")].count("\n") + 1
    path = big_config(tmp_path / "park.yaml", text)
    messages = []
    for parsed in (True, False):
        with monkeypatch.context() as m:
            if not parsed:
                no_parsing(m)
            with pytest.raises(ConfigError) as err:
                load_config(path)
        messages.append(str(err.value))
    assert messages[0] == messages[1]
    assert f"park.yaml:{line}: telemetry.flush_interval_s" in messages[0], messages[0]


def test_a_damaged_cache_is_ignored(tmp_path, cache):
    path = big_config(tmp_path / "park.yaml")
    first = load_config(path)
    for f in cache.glob("config-*.json"):
        f.write_text('{"key": "', encoding="utf-8")
    assert load_config(path).model_dump() == first.model_dump()


def test_small_files_and_data_json_cannot_hold_are_not_cached(tmp_path, cache):
    load_config(EXAMPLE)
    dated = big_config(tmp_path / "dated.yaml", "when: 2026-11-23T08:00:00+08:00\n")
    data, _ = yamlsource.load_yaml_with_lines(dated)
    assert data["when"].year == 2026  # a datetime: JSON would turn it into a string
    assert not cache.exists() or not list(cache.glob("config-*.json"))


def test_a_large_file_is_first_parsed_by_a_child_process(tmp_path, cache, monkeypatch):
    """The daemon never holds the parse's garbage: a child fills the cache, the daemon reads
    it.  The parse in this process is refused and the load still succeeds."""
    path = big_config(tmp_path / "park.yaml")
    with monkeypatch.context() as m:
        no_parsing(m)
        cfg = load_config(path)
    assert cfg.park.id == load_config(EXAMPLE).park.id
    assert len(list(cache.glob("config-*.json"))) == 2


def test_a_child_that_cannot_parse_leaves_the_error_to_this_process(tmp_path, cache):
    text = EXAMPLE.read_text(encoding="utf-8").replace("flush_interval_s: 1.0",
                                                        "flush_interval_s: [1.0")
    line = text[:text.index("flush_interval_s: [1.0")].count("\n") + 1
    path = big_config(tmp_path / "park.yaml", text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert f"park.yaml:{line + 1}: a list [...] or mapping {{...}} opened on line {line} " \
        "is not closed" in str(err.value)  # where the list breaks, and where it opened
    assert not list(cache.glob("config-*.json"))
