"""Every device the template claims, checked on this CPU: collectives see only tensors of the
training device (what NCCL requires), a device without sparse CSR products gets a fallback that
runs and is logged, trainer.threads reaches torch, and the cuda-marked paths on the test device."""

import json

import pytest
import torch
from conftest import ROOT, data_of, run, small_dataset, tiny_config, write_config

import model.graph as graph_module
from model import METRICS
from model.loss.bpr import bpr_loss
from model.mf import MF
from trainer import evaluation
from trainer.evaluation import parse_metrics
from trainer.trainer import Trainer
from utils import distributed
from utils.device import resolve_device
from utils.files import read_jsonl
from utils.parse_config import ConfigParser


class RecordingGroup:
    """A stand-in process group of 2 ranks: records the device of every tensor all-reduced and, as
    NCCL does for a CPU tensor, refuses one that is not on the training device. Meta tensors hold no
    values, so the sum it returns is `values` (zeros by default) on the CPU, ready to be read."""

    def __init__(self, device, values=None):
        self.device, self.seen, self.values = torch.device(device), [], values

    def all_reduce_sum(self, tensor):
        self.seen.append(tensor.device)
        if tensor.device != self.device:
            raise RuntimeError(
                f"all_reduce of a tensor on {tensor.device}; the process group's device is {self.device}"
            )
        if tensor.device.type != "meta":
            return tensor
        return torch.zeros(tensor.shape, dtype=tensor.dtype) if self.values is None else self.values


@pytest.fixture
def two_ranks(monkeypatch):
    """torch.distributed as two ranks, with a RecordingGroup on the meta device (standing for CUDA:
    tensors there are not the CPU's, and computing on them allocates nothing)."""
    group = RecordingGroup("meta")
    for module in (distributed, evaluation):
        monkeypatch.setattr(module, "all_reduce_sum", group.all_reduce_sum, raising=False)
    monkeypatch.setattr(distributed, "is_distributed", lambda: True)
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    monkeypatch.setattr(distributed, "rank", lambda: 0)
    return group


def test_the_trainer_reduces_its_loss_on_the_training_device(tmp_path, tiny_data, two_ranks, monkeypatch):
    config = ConfigParser(tiny_config(tiny_data, tmp_path / "saved"))
    data = data_of(config)
    device = torch.device("meta")
    model = MF(data.dataset, embed_dim=4).to(device)
    trainer = Trainer(
        model,
        lambda output, step: bpr_loss(output, step),
        parse_metrics(["recall@20"], METRICS),
        torch.optim.Adam(model.parameters(), foreach=False),
        config,
        device,
        data_loader=data,
    )
    assert trainer.sync_every == 50  # an accelerator: the loss is read every 50 steps, not every step
    trainer._train_batches(epoch=1)
    assert two_ranks.seen and set(two_ranks.seen) == {device}
    assert len(two_ranks.seen) == -(-len(trainer.batches) // 50)  # one reduction per sync_every steps, none per step


def test_evaluation_reduces_its_sums_on_the_training_device(two_ranks, monkeypatch):
    sums, count = torch.zeros(3, dtype=torch.float64, device="meta"), torch.zeros(1, dtype=torch.float64, device="meta")
    monkeypatch.setattr(evaluation, "evaluate_sums", lambda *args: (sums, count))
    two_ranks.values = torch.tensor([2.0, 4.0, 6.0, 2.0], dtype=torch.float64)
    model = MF(small_dataset(), embed_dim=2)
    metrics = parse_metrics(["recall@5", "ndcg@5", "hit@5"], METRICS)
    figures = evaluation.evaluate(model, None, metrics, torch.device("meta"))
    assert figures == {"recall@5": 1.0, "ndcg@5": 2.0, "hit@5": 3.0} and two_ranks.seen == [torch.device("meta")]


def test_a_cpu_tensor_in_a_collective_is_caught(two_ranks):
    """The bug this guards against: a fresh CPU tensor (as torch.tensor([value]) makes) in an all-reduce."""
    with pytest.raises(RuntimeError, match="on cpu"):
        distributed.all_reduce_sum(torch.tensor([1.0], dtype=torch.float64))


def csr_fails(*args, **kwargs):
    raise NotImplementedError("Could not run 'aten::_sparse_csr_tensor_unsafe' with arguments from the 'MPS' backend")


def test_auto_picks_mps_and_a_graph_without_csr_falls_back(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto").type == "mps"
    monkeypatch.setattr(graph_module, "csr_tensor", csr_fails)  # as torch.sparse_csr_tensor fails on MPS
    assert not graph_module.csr_products_work(torch.device("mps"))
    from model.ngcf import NGCF

    model = NGCF(small_dataset(), embed_dim=4, layers=[4])
    line = model.on_device(torch.device("cpu"))
    assert "has no sparse CSR products: the 27 x 27 graph is kept dense" in line
    assert "impl auto -> reference" in line and model.graph.storage == "dense" and not model.fused
    monkeypatch.setattr(graph_module, "DENSE_FALLBACK_BYTES", 0)  # a graph too large to keep dense
    assert "its products run on the CPU" in model.graph.place(torch.device("cpu"))


@pytest.mark.parametrize("storage", ["dense", "host"])
def test_the_fallback_storages_compute_what_csr_computes(storage, monkeypatch):
    from model.ngcf import NGCF

    ds = small_dataset()
    torch.manual_seed(0)
    csr = NGCF(ds, embed_dim=4, layers=[4, 4], impl="reference").eval()
    other = NGCF(ds, embed_dim=4, layers=[4, 4], impl="reference").eval()
    other.load_state_dict(csr.state_dict())
    monkeypatch.setattr(graph_module, "csr_products_work", lambda device: False)
    if storage == "host":
        monkeypatch.setattr(graph_module, "DENSE_FALLBACK_BYTES", 0)
    other.on_device(torch.device("cpu"))
    assert other.graph.storage == storage
    users = torch.arange(ds.n_users)
    torch.testing.assert_close(other.full_scores(users, None), csr.full_scores(users, None))


def test_a_run_proceeds_on_the_fallback_and_logs_it(tmp_path, tiny_data, monkeypatch):
    monkeypatch.setattr(graph_module, "csr_tensor", csr_fails)
    config = tiny_config(tiny_data, tmp_path / "saved")
    result = run("train.py", "-c", write_config(tmp_path / "c.json", config), "--run-id", "mps", "-d", "cpu")
    assert result.returncode == 0, result.stderr
    assert "kept dense" in result.stdout and "NGCF: impl auto -> reference" in result.stdout
    history = read_jsonl(tmp_path / "saved" / "models" / config["name"] / "mps" / "metrics.jsonl")
    assert history[-1]["val_recall@20"] > 0
    log = (tmp_path / "saved" / "log" / config["name"] / "mps" / "info.log").read_text()
    assert "kept dense" in log


def test_threads_reach_torch_in_the_training_process(tmp_path, tiny_data):
    config = tiny_config(tiny_data, tmp_path / "saved", trainer__epochs=1)
    path = write_config(tmp_path / "c.json", config)
    result = run("train.py", "-c", path, "--run-id", "one", "--threads", "1")
    assert result.returncode == 0 and "threads: 1" in result.stdout
    saved = json.loads((tmp_path / "saved" / "models" / config["name"] / "one" / "config.json").read_text())
    assert saved["trainer"]["threads"] == 1
    config["trainer"]["threads"] = 2
    result = run("train.py", "-c", write_config(tmp_path / "c2.json", config), "--run-id", "two")
    assert result.returncode == 0 and "threads: 2" in result.stdout


@pytest.mark.cuda
@pytest.mark.parametrize("name", ["config.json", "configs/lightgcn_ml100k.json", "configs/sasrec_ml100k.json"])
def test_train_and_test_on_the_test_device(tmp_path, tiny_data, device, name):
    """On the CPU here; on the GPU under scripts/gpu_check.sh (RECSYS_TEST_DEVICE=cuda)."""
    config = json.loads((ROOT / name).read_text())
    config["data_loader"]["args"].update(data_dir=str(tiny_data), download=False)
    config["trainer"].update(save_dir=str(tmp_path / "saved"), epochs=2, save_period=1, eval_period=1)
    config["wandb"]["mode"] = "disabled"
    path = write_config(tmp_path / "c.json", config)
    result = run("train.py", "-c", path, "--run-id", "d", "-d", str(device))
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"device: {device}" in result.stdout
    folder = tmp_path / "saved" / "models" / config["name"] / "d"
    assert run("test.py", "-r", folder / "model_best.pth", "-d", str(device)).returncode == 0
    # the checkpoint loads on the CPU whatever device wrote it
    assert run("test.py", "-r", folder / "model_best.pth", "-d", "cpu").returncode == 0


@pytest.mark.cuda
def test_evaluation_on_the_test_device_equals_the_cpus(device):
    from model.lightgcn import LightGCN

    ds = small_dataset(n_users=40, n_items=50)
    torch.manual_seed(0)
    model = LightGCN(ds, embed_dim=8, n_layers=2).eval()
    loader = evaluation_loader(ds)
    metrics = parse_metrics(["recall@5", "ndcg@5"], METRICS)
    on_cpu = evaluation.evaluate(model, loader, metrics, torch.device("cpu"))
    model = model.to(device)
    model.on_device(device)
    on_device = evaluation.evaluate(model, loader, metrics, device)
    for name in on_cpu:
        assert on_device[name] == pytest.approx(on_cpu[name], abs=1e-6)


def evaluation_loader(ds):
    from data_loader.protocol import EvalLoader

    heldout = ds.train.copy()
    heldout.data[::2] = 0
    heldout.eliminate_zeros()
    return EvalLoader(heldout, ds.train - heldout, 16)


def test_bf16_autocast_runs_the_dense_products_in_bf16_and_the_sparse_one_in_float32():
    """What trainer.args.amp = bf16 does to NGCF's reference code (the one CUDA runs): W1 and W2 in bf16,
    L E in float32. Shown with the CPU's autocast, which casts nn.Linear as CUDA's does."""
    from model.ngcf import NGCF

    ds = small_dataset()
    model = NGCF(ds, embed_dim=8, layers=[8], impl="reference", node_dropout=0.0, message_dropout=0.0).train()
    seen = {}
    model.w1[0].register_forward_hook(lambda module, args, out: seen.setdefault("w1", out.dtype) and None)
    original = model.graph.forward

    def recording(x, values=None):
        out = original(x, values)
        seen.setdefault("side", out.dtype)
        return out

    model.graph.forward = recording
    batch = {"users": torch.tensor([1, 2]), "pos_items": torch.tensor([0, 3]), "neg_items": torch.tensor([4, 5])}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = bpr_loss(model(batch), 0)
    loss.backward()
    assert seen == {"w1": torch.bfloat16, "side": torch.float32} and torch.isfinite(loss)
