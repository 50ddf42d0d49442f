"""Publishing: the dry run lists exactly what goes up; the real upload goes through huggingface_hub's own
HTTP calls to a local fake Hub, and the token is sent there and shown nowhere."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import yaml

from finetune.cli import main
from finetune.hub.push import MANIFEST, PushError, files_to_upload, published_copies, push_model
from finetune.training.run_directory import record_config_change
from tests.hub.conftest import TOKEN, online_against
from tests.hub.fake_hub import FakeHub

EXPECTED = ["README.md", "config.json", "eval_results.json", "finetune_config.yaml", "generation_config.json",
            "model.safetensors", "processor_config.json", "tokenizer.json", "tokenizer_config.json",
            "training_curve.png"]


@pytest.fixture()
def model_dir(pushed_run: tuple[Path, FakeHub], tmp_path: Path) -> Path:
    """A trained run plus what must never be uploaded: checkpoints, pickles, per-row outputs, temp files."""
    run = tmp_path / "run"
    shutil.copytree(pushed_run[0], run)
    (run / "checkpoint-2").mkdir(exist_ok=True)
    (run / "checkpoint-2" / "optimizer.pt").write_bytes(b"state")
    (run / "pytorch_model.bin").write_bytes(b"pickle")
    (run / ".README.md.tmp").write_text("half-written")
    (run / "notes.txt").write_text("local notes")
    return run


def test_dry_run_lists_and_records_exactly_the_upload(model_dir: Path, capsys) -> None:
    assert files_to_upload(model_dir) == EXPECTED
    assert main(["push", "--model", str(model_dir), "--repo-id", "me/whisper-digits", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("would upload 10 files to me/whisper-digits (public):")
    assert all(f"  {name}  (" in out for name in EXPECTED) and "predictions.jsonl" not in out
    manifest = json.loads((model_dir / MANIFEST).read_text())
    assert [f["path"] for f in manifest["files"]] == EXPECTED and manifest["dry_run"] is True
    weights = next(f for f in manifest["files"] if f["path"] == "model.safetensors")
    assert weights["sha256"] == hashlib.sha256((model_dir / "model.safetensors").read_bytes()).hexdigest()
    assert MANIFEST not in files_to_upload(model_dir)  # the record itself never goes up


def test_refuses_pickled_weights_and_bad_repo_ids(tmp_path: Path, model_dir: Path) -> None:
    (model_dir / "model.safetensors").unlink()
    with pytest.raises(PushError, match="no \\*.safetensors weights.*pytorch_model.bin"):
        files_to_upload(model_dir)
    for bad in ("a/b/c", "", "/name", "owner/.hidden"):
        with pytest.raises(PushError, match="invalid repo id"):
            push_model(model_dir, bad, dry_run=True)


@pytest.mark.parametrize("xet", [True, False], ids=["xet-client-regular-files", "legacy-lfs-upload"])
def test_upload_goes_through_huggingface_hub_to_the_endpoint(model_dir: Path, tmp_path: Path, monkeypatch,
                                                             caplog, capsys, xet: bool) -> None:
    """The real call path: create_repo, preupload, (LFS batch + PUT of the weights,) commit."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", not xet)
    hub = FakeHub(lfs_suffixes=() if xet else (".safetensors",))
    with online_against(hub, monkeypatch, tmp_path):
        code = main(["push", "--model", str(model_dir), "--repo-id", "me/whisper-digits", "--private"])
    assert code == 0
    assert not hub.unexpected, [(r.method, r.path) for r in hub.unexpected]
    create = next(r for r in hub.requests if r.path == "/api/repos/create")
    assert create.json()["name"] == "whisper-digits" and create.json()["organization"] == "me"
    assert hub.repos["me/whisper-digits"].private is True
    assert all(r.headers.get("authorization") == f"Bearer {TOKEN}" for r in hub.requests if "lfs-upload" not in r.path)

    uploaded = hub.repos["me/whisper-digits"].files
    assert sorted(uploaded) == EXPECTED
    published = published_copies(model_dir, EXPECTED)
    assert sorted(published) == ["eval_results.json", "finetune_config.yaml"]  # they name the base model's folder
    for name in EXPECTED:
        assert uploaded[name] == published.get(name, (model_dir / name).read_bytes()), name
    if not xet:
        assert any(r.method == "PUT" for r in hub.requests)  # the weights went through the LFS upload
    manifest = json.loads((model_dir / MANIFEST).read_text())
    assert manifest["commit_url"].startswith(f"{hub.url}/me/whisper-digits/commit/")

    shown = capsys.readouterr()
    assert TOKEN not in shown.out + shown.err + caplog.text
    assert TOKEN.encode() not in b"".join(p.read_bytes() for p in model_dir.rglob("*") if p.is_file())


def test_a_bare_repo_name_lands_in_the_token_owners_namespace(model_dir: Path, tmp_path: Path, monkeypatch) -> None:
    with online_against(FakeHub(), monkeypatch, tmp_path) as hub:
        result = push_model(model_dir, "digits")
    assert result.repo_id == "tester/digits"  # the owner the Hub answered with
    assert sorted(hub.repos["tester/digits"].files) == EXPECTED
    assert json.loads((model_dir / MANIFEST).read_text())["repo_id"] == "tester/digits"


def test_no_token_is_a_clear_error(model_dir: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    with online_against(FakeHub(), monkeypatch, tmp_path) as hub:
        monkeypatch.delenv("HF_TOKEN")
        assert main(["push", "--model", str(model_dir), "--repo-id", "me/x"]) == 2
    assert "no Hugging Face token" in capsys.readouterr().err
    assert hub.requests == []


def test_offline_mode_is_a_clear_error(model_dir: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    with pytest.raises(PushError, match="HF_HUB_OFFLINE is set"):
        push_model(model_dir, "me/x")


def test_training_with_push_to_hub_pushes_once_after_the_card(pushed_run: tuple[Path, FakeHub]) -> None:
    """The Trainer's own hub calls were switched off: one repo creation, one commit, with the card."""
    run, hub = pushed_run
    assert not hub.unexpected, [(r.method, r.path) for r in hub.unexpected]
    assert [r.path for r in hub.requests if r.path == "/api/repos/create"] == ["/api/repos/create"]
    repo = hub.repos["tester/tiny-whisper-fsdd"]
    assert repo.private is True and len(repo.commits) == 1
    assert repo.files["README.md"] == (run / "README.md").read_bytes()
    assert "model.safetensors" in repo.files and "predictions.jsonl" not in repo.files


def _with_local_paths(run: Path, home: Path) -> dict[str, bytes]:
    """Make ``run`` name folders of this machine the way a run on it does (base model and data in the home
    folder, the run's own absolute path), add a resume history; returns every file's bytes."""
    base, data = home / "models" / "base", home / "data" / "fsdd"
    results = json.loads((run / "eval_results.json").read_text())
    results.update(model=str(base), dataset=str(data), note=f"rows read from {data}/test.csv")
    (run / "eval_results.json").write_text(json.dumps(results, indent=2))
    config = yaml.safe_load((run / "finetune_config.yaml").read_text())
    config.update(model_name_or_path=str(base), dataset_name=str(data), output_dir=str(run),
                  logging_dir=str(run / "logs"), eval_dataset_name=f"file://{data}/test.csv")
    (run / "finetune_config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    record_config_change(run, {**config, "output_dir": str(home / "old-run")},
                         {"output_dir": (str(home / "old-run"), str(run)), "learning_rate": (0.002, 0.001)},
                         str(home / "old-run" / "checkpoint-2"))
    for name, key in (("config.json", "_name_or_path"), ("tokenizer_config.json", "name_or_path")):
        values = json.loads((run / name).read_text())
        (run / name).write_text(json.dumps({**values, key: str(base)}, indent=2))
    (run / "README.md").unlink()  # push writes the card from these files
    (run / MANIFEST).unlink()
    return {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}


def test_push_publishes_no_local_path(pushed_run: tuple[Path, FakeHub], tmp_path: Path, monkeypatch,
                                      tmp_path_factory: pytest.TempPathFactory, capsys) -> None:
    """Every uploaded file is free of this machine's folders (the home folder, the run's own path, the base
    model's and the data's), the history of the resumed run goes up too, and the local files stay as they were."""
    home = tmp_path / "home" / "qzuser7"
    home.mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    run = home / "runs" / "digits"
    shutil.copytree(pushed_run[0], run)
    before = _with_local_paths(run, home)
    forbidden = [str(tmp_path_factory.getbasetemp()), str(tmp_path), str(home), "qzuser7"]

    assert main(["push", "--model", str(run), "--repo-id", "me/digits", "--dry-run"]) == 0
    listing = capsys.readouterr().out
    dry = json.loads((run / MANIFEST).read_text())["files"]
    with online_against(FakeHub(), monkeypatch, tmp_path) as hub:
        push_model(run, "me/digits")
    uploaded = hub.repos["me/digits"].files

    assert sorted(uploaded) == sorted([*EXPECTED, "finetune_config_history.yaml"])
    for name, content in uploaded.items():
        assert not [word for word in forbidden if word.encode() in content], name
    results = json.loads(uploaded["eval_results.json"])
    assert (results["model"], results["dataset"], results["note"]) == ("base", "fsdd", "rows read from test.csv")
    config = yaml.safe_load(uploaded["finetune_config.yaml"])
    assert (config["model_name_or_path"], config["dataset_name"], config["output_dir"], config["logging_dir"],
            config["eval_dataset_name"]) == ("base", "fsdd", "digits", "logs", "test.csv")
    history = uploaded["finetune_config_history.yaml"]
    assert history.startswith(b"# Earlier configs of this run")  # the header stays
    [entry] = yaml.safe_load(history)
    assert entry["resumed_from"] == "checkpoint-2"
    assert entry["changed"] == {"output_dir": {"old": "old-run", "new": "digits"},
                                "learning_rate": {"old": 0.002, "new": 0.001}}
    assert json.loads(uploaded["config.json"])["_name_or_path"] == "base"
    assert json.loads(uploaded["tokenizer_config.json"])["name_or_path"] == "base"
    assert uploaded["tokenizer.json"] == before["tokenizer.json"]  # token data is never rewritten
    card = uploaded["README.md"].decode()
    assert "resumed with changed settings" in card and "`learning_rate`: `0.002` -> `0.001`" in card

    # the local files are untouched (the card was written, the manifest too)
    after = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    assert {name: after[name] for name in before} == before
    # the dry run listed and recorded exactly what went up, sanitized copies included
    assert [f["path"] for f in dry] == sorted(uploaded)
    for entry in dry:
        content = uploaded[entry["path"]]
        assert (entry["size"], entry["sha256"]) == (len(content), hashlib.sha256(content).hexdigest()), entry
        assert f"  {entry['path']}  ({len(content):,} bytes)" in listing
        assert entry.get("local_paths_removed", False) == (content != after[entry["path"]]), entry["path"]
    assert not [word for word in forbidden[1:] if word in json.dumps(dry)]
