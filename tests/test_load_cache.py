"""spec/loader.LoadCache: the loop parses fleet.yaml again only when it, or what its globs match, changed."""
from __future__ import annotations

from pathlib import Path

import pytest
from conftest import write_fleet

from reconciler.errors import FleetError
from reconciler.spec.loader import LoadCache

BODY = """\
apiVersion: fleet/v1alpha1
kind: Fleet
metadata:
  name: t
spec:
  tiers:
    local: {runtime: command}
  agents:
    - name: fix-{item}
      forEach: {glob: "src/*.py"}
      tier: local
      command: [python, agent.py, "{item}"]
"""


def _names(loaded) -> list[str]:  # type: ignore[no-untyped-def]
    return [a.name for a in loaded.agents]


def test_unchanged_file_is_not_parsed_again(repo: Path) -> None:
    (repo / "src").mkdir()
    (repo / "src" / "a.py").write_text("")
    path = write_fleet(repo, BODY)
    cache = LoadCache()
    first = cache.load(path)
    assert cache.load(path) is first
    assert _names(first) == ["fix-src-a"]


def test_a_new_glob_match_is_seen(repo: Path) -> None:
    (repo / "src").mkdir()
    (repo / "src" / "a.py").write_text("")
    path = write_fleet(repo, BODY)
    cache = LoadCache()
    first = cache.load(path)
    (repo / "src" / "b.py").write_text("")
    second = cache.load(path)
    assert second is not first
    assert _names(second) == ["fix-src-a", "fix-src-b"]


def test_an_edit_is_seen_and_a_broken_edit_is_not_hidden_by_the_cache(repo: Path) -> None:
    (repo / "src").mkdir()
    (repo / "src" / "a.py").write_text("")
    path = write_fleet(repo, BODY)
    cache = LoadCache()
    cache.load(path)
    path.write_text(path.read_text().replace("name: t", "name: t2"))
    assert cache.load(path).name == "t2"
    path.write_text(path.read_text().replace("tier: local", "tier: nosuch"))
    with pytest.raises(FleetError):
        cache.load(path)
    with pytest.raises(FleetError):  # still broken: the last good fleet is never returned for it
        cache.load(path)


def test_a_miss_walks_each_glob_once_and_a_hit_once(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from reconciler.spec import globs

    (repo / "src").mkdir()
    (repo / "src" / "a.py").write_text("")
    path = write_fleet(repo, BODY)
    walked: list[str] = []
    real = globs.walk

    def counted(root: Path, pattern: str) -> tuple[list[str], list[str]]:
        walked.append(pattern)
        return real(root, pattern)

    monkeypatch.setattr(globs, "walk", counted)  # counts the real walks; the files are real
    cache = LoadCache()
    first = cache.load(path)
    assert walked == ["src/*.py"]  # the load's own walk is the cache key's too
    assert cache.load(path) is first
    assert walked == ["src/*.py", "src/*.py"]  # a hit: one walk to see nothing moved
