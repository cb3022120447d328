"""Revs: full and short ids, tags, branches, HEAD, REV~N; clear errors otherwise."""

from __future__ import annotations

import pytest

import stashdb


@pytest.fixture
def three(repo: stashdb.Repo) -> list[stashdb.Commit]:
    return [repo.commit(m, namespace={"x": i}) for i, m in enumerate(["one", "two", "three"])]


def test_every_rev_form(repo: stashdb.Repo, three: list[stashdb.Commit]) -> None:
    one, two, head = three
    repo.tag("v1", one.id, message="first release")
    repo.branch("side", two.short_id)
    assert repo.resolve() == repo.resolve("HEAD") == head.id
    assert repo.resolve(head.id) == head.id
    assert repo.resolve(head.id[:4]) == head.id
    assert repo.resolve(head.id[:6].upper()) == head.id
    assert repo.resolve("v1") == one.id
    assert repo.resolve("side") == two.id
    assert repo.resolve("main") == head.id
    assert repo.resolve("HEAD~1") == repo.resolve("HEAD^") == repo.resolve("HEAD~") == two.id
    assert repo.resolve("HEAD~2") == repo.resolve("HEAD~1~1") == repo.resolve("side~1") == one.id
    assert repo.show("v1").message == "one"
    assert [t.message for t in repo.tags()] == ["first release"]


def test_unknown_revs_name_themselves(repo: stashdb.Repo, three: list[stashdb.Commit]) -> None:
    with pytest.raises(stashdb.RevisionNotFound, match="'nope'") as info:
        repo.resolve("nope")
    assert info.value.rev == "nope"
    with pytest.raises(stashdb.RevisionNotFound, match="has no parent"):
        repo.resolve("HEAD~3")
    with pytest.raises(stashdb.RevisionNotFound):
        repo.resolve("abc")  # too short to be an id
    assert isinstance(info.value, stashdb.StashError)


def test_head_of_an_empty_store(repo: stashdb.Repo) -> None:
    with pytest.raises(stashdb.RevisionNotFound, match="no commits yet"):
        repo.checkout(namespace={})


def test_ambiguous_short_ids_list_the_candidates(repo: stashdb.Repo) -> None:
    seen: dict[str, str] = {}
    for i in range(5000):
        commit = repo.commit(namespace={"i": i})
        prefix = commit.id[:4]
        if prefix in seen:
            break
        seen[prefix] = commit.id
    else:
        pytest.fail("no two commits shared a 4-digit prefix")
    with pytest.raises(stashdb.AmbiguousRevision, match=prefix) as info:
        repo.resolve(prefix)
    assert sorted(info.value.candidates) == sorted([seen[prefix], commit.id])
    assert repo.resolve(commit.id[:12]) == commit.id


def test_tags_and_branches_cannot_be_created_twice(repo: stashdb.Repo, three: object) -> None:
    repo.tag("keep")
    with pytest.raises(stashdb.RefExists, match="tag 'keep' already exists"):
        repo.tag("keep")
    with pytest.raises(stashdb.RefExists):
        repo.branch("keep")
    with pytest.raises(stashdb.InvalidRefName):
        repo.tag("HEAD")
    with pytest.raises(stashdb.InvalidRefName):
        repo.branch("bad name~1")


def test_deleting_refs(repo: stashdb.Repo, three: object) -> None:
    repo.tag("t")
    repo.branch("b")
    repo.delete_tag("t")
    repo.delete_branch("b")
    assert repo.tags() == [] and [b.name for b in repo.branches()] == ["main"]
    with pytest.raises(stashdb.RefNotFound):
        repo.delete_tag("t")
    with pytest.raises(stashdb.StashError, match="current branch"):
        repo.delete_branch("main")


def test_a_commit_object_is_a_rev(repo: stashdb.Repo, three: list[stashdb.Commit]) -> None:
    one = three[0]
    assert repo.resolve(one) == one.id
    assert repo.show(one).message == "one"
    assert [c.name for c in repo.diff(one, three[2]).changed] == ["x"]
    with pytest.raises(stashdb.RevisionNotFound, match="a rev is a string"):
        repo.resolve(42)  # type: ignore[arg-type]
