"""Config parsing, overrides, and the one-line errors a user gets for bad input."""

import argparse
import json

import pytest
import torch
from conftest import (
    ROOT,
    load_default_config,
    one_line_error,
    prepared,
    run,
    tiny_config,
    train_ok,
    write_config,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from data_loader.csv_loader import CSVDataLoader
from model import MODELS
from utils.checkpoint import save_checkpoint
from utils.errors import ConfigError
from utils.parse_config import ConfigParser, apply_override, parse_set_option, validate


def args(**kw):
    base = dict(config=None, resume=None, run_id=None, epochs=None, lr=None, bs=None, threads=None, set=None)
    base.update(kw)
    return argparse.Namespace(**base)


def test_default_config_is_valid_and_spells_out_every_contract_key():
    config = load_default_config()
    validate(config)
    for key in (
        "evaluation.valid",
        "arch.args.node_dropout",
        "arch.args.message_dropout",
        "arch.args.impl",
        "trainer.early_stop",
        "trainer.threads",
        "trainer.args.sync_every",
        "wandb.mode",
        "batches.sampling",
    ):
        node = config
        for part in key.split("."):
            node = node[part]


def test_overrides_and_shortcuts(tmp_path):
    from train import plan_run

    path = write_config(tmp_path / "c.json", load_default_config())
    parsed_args = args(
        config=str(path),
        lr=0.01,
        bs=512,
        epochs=3,
        threads=1,
        run_id="x",
        set=[
            "arch.args.layers=[32,32]",
            "data_loader.args.data_dir=/data",
            "arch.args.layers.0=16",
            "optimizer.args.lr=1",
        ],
    )
    config = ConfigParser.from_args(parsed_args)
    assert config["optimizer"]["args"]["lr"] == 1  # --set comes after the shortcut
    assert config["batches"]["batch_size"] == 512
    assert config["trainer"]["epochs"] == 3 and config["trainer"]["threads"] == 1
    assert config["arch"]["args"]["layers"] == [16, 32]
    assert config["data_loader"]["args"]["data_dir"] == "/data"  # not JSON -> a plain string
    folder, continuing, _ = plan_run(config, parsed_args, None)
    assert folder.path.as_posix().endswith("saved/models/NGCF_ml-100k/x") and not continuing
    assert not folder.path.exists()  # parsing and planning create nothing


@pytest.mark.parametrize(
    "override,message",
    [
        ("trainer.epoch=3", "the config has no key 'trainer.epoch'"),
        ("optimizer.args.lr=fast", 'optimizer.args.lr: expected a number > 0, got "fast"'),
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
    "override,value",
    [
        ("arch.args.impl=reference", "reference"),
        ('arch.args.impl="fused"', "fused"),
        ("evaluation.candidates=100", 100),
        ("trainer.threads=2", 2),
        ('trainer.args.sync_every="auto"', "auto"),
    ],
)
def test_a_mode_and_a_count_stand_for_each_other_in_overrides(tmp_path, override, value):
    """A string key ("auto", "all") takes a number and another string: the class checks the value."""
    path = write_config(tmp_path / "c.json", load_default_config())
    config = ConfigParser.from_args(args(config=str(path), set=[override]))
    key = override.split("=")[0].split(".")
    node = config.config
    for part in key:
        node = node[part]
    assert node == value


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda c: c.pop("seed"), "seed: missing"),
        (lambda c: c.update(extra=1), r"unknown top-level key\(s\) \['extra'\]"),
        (lambda c: c["trainer"].update(monitor="max val_recall@50"), "'val_recall@50' is not computed"),
        (lambda c: c.update(metrics=["recall@0"]), "K >= 1"),
        (lambda c: c["batches"].update(batch_size=-1), "batches.batch_size: expected an integer >= 1"),
        (lambda c: c["wandb"].update(mode="loud"), "wandb.mode: expected one of online, offline, disabled"),
        (lambda c: c["trainer"].update(speed=3), r"trainer: unknown key\(s\) \['speed'\]"),
        (lambda c: c["trainer"].update(threads=0), "trainer.threads: expected an integer >= 1"),
        (lambda c: c["trainer"].update(amp="bf16"), "trainer.amp is now trainer.args.amp"),
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
    # the default config's share, replaced by the competition split's counts (refused before)
    config = {"evaluation": {"split": "random", "test": 0.2}}
    apply_override(config, "evaluation.test", {"last": 2, "random": 3})
    apply_override(config, "evaluation.test", 0.1)
    assert config["evaluation"]["test"] == 0.1
    with pytest.raises(ConfigError, match="expected a list like the config's"):
        apply_override({"layers": [64, 64]}, "layers", {"a": 1})
    with pytest.raises(ConfigError, match="expected an object like the config's"):
        apply_override({"a": {"b": 1}}, "a", [1])


def test_cli_errors_are_one_clear_line(tmp_path, tiny_data):
    config = tiny_config(tiny_data, tmp_path / "saved")
    config["arch"]["type"] = "NGCFX"
    line = one_line_error(run("train.py", "-c", write_config(tmp_path / "a.json", config)))
    assert f"arch.type: unknown name 'NGCFX' (available: {', '.join(MODELS)})" in line

    (tmp_path / "bad.json").write_text('{\n  "name": "x",\n  "seed": 1,,\n}')
    line = one_line_error(run("train.py", "-c", tmp_path / "bad.json"))
    assert "bad.json:3:13: malformed JSON" in line

    config = tiny_config(tiny_data, tmp_path / "saved")
    good = write_config(tmp_path / "good.json", config)
    line = one_line_error(run("train.py", "-c", good, "--set", "trainer.epoch=3"))
    assert "--set trainer.epoch: the config has no key 'trainer.epoch' (keys here: args, early_stop, epochs" in line
    line = one_line_error(run("train.py", "-c", good, "--set", "arch.args.depth=3"))
    assert "arch.args.depth" in line
    line = one_line_error(run("train.py", "-c", tmp_path / "missing.json"))
    assert "missing.json: not found" in line
    line = one_line_error(run("train.py", "-r", tmp_path))
    assert "is a folder" in line
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint at all")
    line = one_line_error(run("test.py", "-r", tmp_path / "junk.pth"))
    assert "not a readable checkpoint" in line
    line = one_line_error(run("train.py", "-c", good, "-d", "cuda:7"))
    assert "cuda:7" in line
    assert not (tmp_path / "saved").exists()  # nothing created for a run that never started


def test_unknown_model_argument_lists_what_is_accepted(tmp_path, tiny_data):
    config = tiny_config(tiny_data, tmp_path / "saved")
    config["arch"]["args"]["depth"] = 3
    line = one_line_error(run("train.py", "-c", write_config(tmp_path / "a.json", config)))
    assert "arch.args: NGCF got an unexpected keyword argument 'depth'" in line
    assert "accepted: dataset, embed_dim, layers" in line
    json.loads(json.dumps(config))


def test_trainer_args_reach_the_trainer_and_are_checked_first(tmp_path, tiny_data):
    config = tiny_config(tiny_data, tmp_path / "saved")
    config["trainer"]["args"] = {"sync_every": 3, "speed": 2}
    line = one_line_error(run("train.py", "-c", write_config(tmp_path / "a.json", config)))
    assert "trainer.args: Trainer got an unexpected keyword argument 'speed'" in line
    assert not (tmp_path / "saved").exists()
    config["trainer"]["args"] = {"sync_every": 0}
    line = one_line_error(run("train.py", "-c", write_config(tmp_path / "a.json", config)))
    assert "trainer.args.sync_every: expected 'auto' or a positive integer, got 0" in line
    assert not (tmp_path / "saved").exists()
    config["trainer"]["args"] = {"amp": "fp8"}
    line = one_line_error(run("train.py", "-c", write_config(tmp_path / "a.json", config)))
    assert 'trainer.args.amp: expected one of off, bf16, got "fp8"' in line
    assert not (tmp_path / "saved").exists()


def test_a_checkpoint_saved_before_a_key_was_renamed_is_read_with_the_new_name():
    """A checkpoint's saved config still has trainer.amp (written before the move): test.py and -r
    read it as trainer.args.amp, where a config file with the old key is refused."""
    saved = load_default_config()
    saved["trainer"]["amp"] = saved["trainer"]["args"].pop("amp")
    config = ConfigParser.from_args(args(resume="old.pth"), checkpoint_config=saved, for_training=False)
    assert config["trainer"]["args"]["amp"] == "off" and "amp" not in config["trainer"]
    assert "amp" in saved["trainer"]  # the checkpoint's own dict is left as it was
    with pytest.raises(ConfigError, match="trainer.amp is now trainer.args.amp"):
        validate(saved)


def test_a_config_is_validated_once(monkeypatch):
    import utils.parse_config as parse_config

    calls = []
    monkeypatch.setattr(parse_config, "validate", lambda config, for_training: calls.append(for_training))
    ConfigParser.from_args(args(resume="x.pth"), checkpoint_config=load_default_config())
    assert calls == [True]


@pytest.mark.parametrize(
    "override,message",
    [
        ("seed=-1", "seed: expected an integer >= 0 and <= 4294967295, got -1"),
        ("seed=4294967296", "seed: expected an integer >= 0 and <= 4294967295"),
        ("evaluation.seed=-5", "evaluation.seed: expected an integer >= 0"),
        (
            'lr_scheduler={"type": "LambdaLR", "args": {"lr_lambda": "lambda e: 0.9 ** e"}}',
            "LambdaLR takes a Python function",
        ),
        ("arch.args.embed_dim=100000000", "needs about"),
    ],
)
def test_bad_values_are_one_line_not_a_traceback(tiny_run, tmp_path, override, message):
    config, path, runs = tiny_run
    line = one_line_error(run("train.py", "-c", path, "--set", override))
    assert message in line, line
    assert not (tmp_path / "saved").exists()


def test_the_dataset_argument_is_the_templates(tiny_run, tmp_path):
    config, path, runs = tiny_run
    config["arch"]["args"]["dataset"] = "x"
    line = one_line_error(run("train.py", "-c", write_config(tmp_path / "d.json", config)))
    assert "arch.args.dataset: the template passes the data set to the model itself" in line


def test_a_latin1_config_and_csv_name_the_encoding(tmp_path):
    (tmp_path / "c.json").write_bytes('{"name": "Caf\xe9"}'.encode("latin-1"))
    line = one_line_error(run("train.py", "-c", tmp_path / "c.json"))
    assert "c.json:1: not UTF-8 text (byte 0xe9); save the config as UTF-8" in line
    (tmp_path / "log.csv").write_bytes("user,item\nJos\xe9,x\nAnn,y\n".encode("latin-1"))
    with pytest.raises(Exception, match=r"log\.csv:2: not utf-8 text .* data_loader\.args\.encoding"):
        prepared(CSVDataLoader(str(tmp_path), "log.csv", cache=False))
    ds = prepared(CSVDataLoader(str(tmp_path), "log.csv", encoding="latin-1", cache=False), test=0.0).dataset
    assert "José" in list(ds.user_ids)


@pytest.mark.parametrize(
    "override,message",
    [
        ("optimizer.args.weight_decay=-1", "optimizer.args: Adam refuses them: Invalid weight_decay value: -1"),
        ('optimizer.type="LBFGS"', "optimizer.type: LBFGS needs a closure"),
        ('optimizer.type="SparseAdam"', "optimizer.type: SparseAdam takes sparse gradients only"),
        ('lr_scheduler={"type": "StepLR", "args": {"step_size": 0}}', "lr_scheduler.args: StepLR refuses them"),
        ('lr_scheduler={"type": "OneCycleLR", "args": {"max_lr": 0.1}}', "lr_scheduler.args: OneCycleLR refuses"),
        ("arch.args.embed_dim=0", "arch.args.embed_dim: expected an integer >= 1, got 0"),
        ("arch.args.init_std=-1", "arch.args.init_std: expected a number > 0, got -1"),
    ],
)
def test_arguments_torch_would_refuse_are_one_line_naming_the_key(tmp_path, tiny_data, override, message):
    config = json.loads((ROOT / "configs" / "mf_ml100k.json").read_text())
    config["data_loader"]["args"].update(data_dir=str(tiny_data), download=False)
    config["trainer"]["save_dir"] = str(tmp_path / "saved")
    line = one_line_error(run("train.py", "-c", write_config(tmp_path / "c.json", config), "--set", override))
    assert message in line and not (tmp_path / "saved").exists()


@pytest.mark.parametrize(
    "text,message",
    [('{"name": "a", "name": "b"}', "the key 'name' is given twice"), ("[" * 100_000, "nested too deeply")],
)
def test_a_config_with_repeated_keys_or_endless_nesting_is_one_line(tmp_path, text, message):
    (tmp_path / "c.json").write_text(text)
    assert message in one_line_error(run("train.py", "-c", tmp_path / "c.json"))


def test_nan_in_a_config_or_as_a_checkpoints_best_and_a_unicode_run_id_are_said_plainly(tiny_run, tmp_path):
    config, path, runs = tiny_run
    text = path.read_text().replace('"reg": 1e-05', '"reg": NaN')
    assert "NaN" in text
    line = one_line_error(run("train.py", "-c", write_config(tmp_path / "n.json", json.loads(text))))
    assert "loss.args.reg: nan is not a number JSON allows" in line
    line = one_line_error(run("train.py", "-c", path, "--run-id", "répétition/é"))
    assert '"répétition/é"' in line and "at most 128" in line
    train_ok("-c", path, "--run-id", "b")
    state = torch.load(runs / "b" / "checkpoint-epoch2.pth", weights_only=True)
    state["monitor_best"] = float("nan")
    save_checkpoint(state, runs / "b" / "checkpoint-epoch2.pth")
    (runs / "b" / "model_best.pth").unlink()
    result = train_ok("-r", runs / "b" / "checkpoint-epoch2.pth", "--epochs", "3")
    assert "its best monitored figure is NaN" in result.stdout and (runs / "b" / "model_best.pth").is_file()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=5,
)


@pytest.mark.slow
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    key=st.sampled_from(
        [
            "optimizer.args.lr",
            "trainer.epochs",
            "arch.args.layers",
            "metrics",
            "name",
            "trainer.monitor",
            "batches.batch_size",
            "evaluation.test",
            "wandb.mode",
            "seed",
            "trainer.early_stop",
            "arch.args.layers.0",
            "nope",
            "trainer",
            "",
        ]
    )
    | st.text(),
    value=json_values,
)
def test_fuzz_overrides_either_apply_cleanly_or_raise_config_error(key, value):
    config = load_default_config()
    try:
        parsed_key, parsed_value = parse_set_option(f"{key}={json.dumps(value)}")
        apply_override(config, parsed_key, parsed_value)
        validate(config)
    except ConfigError as e:
        assert str(e)  # a message, not a crash from deep inside


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(text=st.text())
def test_fuzz_set_syntax_never_crashes(text):
    config = load_default_config()
    try:
        key, value = parse_set_option(text)
        apply_override(config, key, value)
    except ConfigError as e:
        assert str(e)  # a message, not a crash from deep inside
