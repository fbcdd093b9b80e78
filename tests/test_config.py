"""Config parsing, overrides, and the one-line errors a user gets for bad input."""

import argparse
import json

import pytest
from conftest import load_default_config, run_script, tiny_config, write_config

from utils.errors import ConfigError
from utils.parse_config import ConfigParser, apply_override, parse_set_option, validate


def args(**kw):
    base = dict(config=None, resume=None, run_id=None, epochs=None, lr=None, bs=None, set=None)
    base.update(kw)
    return argparse.Namespace(**base)


def test_default_config_is_valid_and_spells_out_every_contract_key():
    config = load_default_config()
    validate(config)
    for key in (
        "data_loader.args.valid_fraction",
        "arch.args.node_dropout",
        "arch.args.message_dropout",
        "trainer.early_stop",
        "wandb.mode",
        "data_loader.args.sampling",
    ):
        node = config
        for part in key.split("."):
            node = node[part]


def test_overrides_and_shortcuts(tmp_path):
    path = write_config(tmp_path / "c.json", load_default_config())
    config = ConfigParser.from_args(
        args(
            config=str(path),
            lr=0.01,
            bs=512,
            epochs=3,
            run_id="x",
            set=[
                "arch.args.layers=[32,32]",
                "data_loader.args.data_dir=/data",
                "arch.args.layers.0=16",
                "optimizer.args.lr=1",
            ],
        )
    )
    assert config["optimizer"]["args"]["lr"] == 1  # --set comes after the shortcut
    assert config["data_loader"]["args"]["batch_size"] == 512
    assert config["trainer"]["epochs"] == 3
    assert config["arch"]["args"]["layers"] == [16, 32]
    assert config["data_loader"]["args"]["data_dir"] == "/data"  # not JSON -> a plain string
    assert config.save_dir.as_posix().endswith("saved/models/NGCF_ml-100k/x")
    assert not config.save_dir.exists()  # parsing creates nothing


@pytest.mark.parametrize(
    "override,message",
    [
        ("trainer.epoch=3", "the config has no key 'trainer.epoch'"),
        ("optimizer.args.lr=fast", 'expected a number like the config\'s 0.0005, got "fast"'),
        ("trainer.epochs=2.5", "expected an integer"),
        ("arch.args.layers=64", "expected a list"),
        ("nonsense", "expected KEY=VALUE"),
        ("trainer.epochs=0", "trainer.epochs: expected an integer >= 1, got 0"),
    ],
)
def test_bad_overrides(tmp_path, override, message):
    path = write_config(tmp_path / "c.json", load_default_config())
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        ConfigParser.from_args(args(config=str(path), set=[override]))


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda c: c.pop("seed"), "seed: missing"),
        (lambda c: c.update(extra=1), r"unknown top-level key\(s\) \['extra'\]"),
        (lambda c: c["trainer"].update(monitor="max val_recall@50"), "'val_recall@50' is not computed"),
        (lambda c: c.update(metrics=["recall@0"]), "K >= 1"),
        (lambda c: c["data_loader"]["args"].update(batch_size=-1), "batch_size: expected a positive integer"),
        (lambda c: c["wandb"].update(mode="loud"), "wandb.mode: expected one of online, offline, disabled"),
    ],
)
def test_invalid_configs(change, message):
    config = load_default_config()
    change(config)
    with pytest.raises(ConfigError, match=message):
        validate(config)


def test_set_values_are_json():
    assert parse_set_option("a.b=[1, 2]") == ("a.b", [1, 2])
    assert parse_set_option('a="x=y"') == ("a", "x=y")
    config = {"a": {"b": None}}
    apply_override(config, "a.b", {"type": "StepLR"})  # null accepts anything
    assert config["a"]["b"] == {"type": "StepLR"}


def one_line_error(result):
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_cli_errors_are_one_clear_line(tmp_path, tiny_data):
    config = tiny_config(tiny_data, tmp_path / "saved")
    config["arch"]["type"] = "NGCFX"
    line = one_line_error(run_script("train.py", "-c", write_config(tmp_path / "a.json", config)))
    assert "arch.type: unknown name 'NGCFX' (available: LightGCN, MF, NGCF, Pop)" in line

    (tmp_path / "bad.json").write_text('{\n  "name": "x",\n  "seed": 1,,\n}')
    line = one_line_error(run_script("train.py", "-c", tmp_path / "bad.json"))
    assert "bad.json:3:13: malformed JSON" in line

    config = tiny_config(tiny_data, tmp_path / "saved")
    good = write_config(tmp_path / "good.json", config)
    line = one_line_error(run_script("train.py", "-c", good, "--set", "trainer.epoch=3"))
    assert "--set trainer.epoch: the config has no key 'trainer.epoch' (keys here: amp, early_stop, epochs" in line
    line = one_line_error(run_script("train.py", "-c", good, "--set", "arch.args.depth=3"))
    assert "arch.args.depth" in line
    line = one_line_error(run_script("train.py", "-c", tmp_path / "missing.json"))
    assert "missing.json: not found" in line
    line = one_line_error(run_script("train.py", "-r", tmp_path))
    assert "is a folder" in line
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint at all")
    line = one_line_error(run_script("test.py", "-r", tmp_path / "junk.pth"))
    assert "not a readable checkpoint" in line
    line = one_line_error(run_script("train.py", "-c", good, "-d", "cuda:7"))
    assert "cuda:7" in line
    assert not (tmp_path / "saved").exists()  # nothing created for a run that never started


def test_unknown_model_argument_lists_what_is_accepted(tmp_path, tiny_data):
    config = tiny_config(tiny_data, tmp_path / "saved")
    config["arch"]["args"]["depth"] = 3
    line = one_line_error(run_script("train.py", "-c", write_config(tmp_path / "a.json", config)))
    assert "arch.args: NGCF got an unexpected keyword argument 'depth'" in line
    assert "accepted: dataset, embed_dim, layers" in line
    json.loads(json.dumps(config))
