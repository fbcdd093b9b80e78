"""Train a recommender from a JSON config.

python train.py -c config.json                       # a new run
python train.py -r saved/models/NAME/RUN/checkpoint-epoch10.pth   # resume it
python train.py -c config.json --lr 0.001 --set arch.args.layers=[64,64]
"""

import argparse
import logging
import signal
import sys

from torch.nn.parallel import DistributedDataParallel

from base.base_trainer import TrainingError
from data_loader import DATA_LOADERS
from logger.logger import get_logger, setup_logging
from logger.plot import plot_history
from logger.wandb_writer import WandbWriter
from model import LOSSES, METRICS, MODELS
from trainer import TRAINERS
from trainer.evaluation import parse_metrics
from utils import distributed
from utils.checkpoint import find_latest_checkpoint, load_checkpoint
from utils.cli import LR_SCHEDULERS, OPTIMIZERS, run_main
from utils.parse_config import ConfigParser, validate
from utils.util import keep_freed_memory, read_json, resolve_device, seed_everything


def build_arg_parser():
    parser = argparse.ArgumentParser(description="Train a recommender from a JSON config.")
    parser.add_argument("-c", "--config", help="config file (JSON); beside -r it replaces the checkpoint's config")
    parser.add_argument(
        "-r",
        "--resume",
        help="checkpoint to resume from; 'latest' = the newest checkpoint "
        "of the newest run of the config's name (-c, default config.json)",
    )
    parser.add_argument("-d", "--device", default="auto", help="auto (default), cpu, cuda, cuda:N, mps")
    parser.add_argument("--run-id", dest="run_id", help="run folder name (default: a timestamp)")
    parser.add_argument("--epochs", type=int, help="shortcut for --set trainer.epochs=N")
    parser.add_argument("--lr", type=float, help="shortcut for --set optimizer.args.lr=X")
    parser.add_argument("--bs", type=int, help="shortcut for --set data_loader.args.batch_size=N")
    parser.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a config key, VALUE in JSON: --set arch.args.layers=[64,64]",
    )
    return parser


def parse_args(argv):
    """The flags above; also `--a.b.c=VALUE` as a shorthand of `--set a.b.c=VALUE` (what a wandb
    sweep agent passes for a parameter named after a config key)."""
    parser = build_arg_parser()
    args, extra = parser.parse_known_args(argv)
    for item in extra:
        key, _, value = item[2:].partition("=")
        if not item.startswith("--") or "." not in key or not _:
            parser.error(f"unrecognized argument: {item}")
        args.set = (args.set or []) + [f"{key}={value}"]
    return args


def check_names(config):
    """Every name and argument in the config exists, checked before anything is built."""
    config.check_obj("data_loader", DATA_LOADERS, seed=0)
    config.check_obj("arch", MODELS, dataset=None)
    config.check_obj("loss", LOSSES, None)
    config.check_obj("optimizer", OPTIMIZERS, [])
    if config.get("lr_scheduler") is not None:
        config.check_obj("lr_scheduler", LR_SCHEDULERS, None)
    config.check_obj("trainer", TRAINERS, *[None] * 4, config=config, device=None, data_loader=None)
    parse_metrics(config["metrics"], METRICS)


def main(args):
    # Parse: read and check everything before anything is created on disk.
    if args.resume == "latest":
        # The config (-c, default config.json) only says where the runs are; the checkpoint's own
        # config is what training continues with.
        located = read_json(args.config or "config.json")
        validate(located)
        args.resume = str(find_latest_checkpoint(located["trainer"]["save_dir"], located["name"]))
        args.config = None
    checkpoint = load_checkpoint(args.resume) if args.resume else None
    config = ConfigParser.from_args(args, checkpoint_config=checkpoint["config"] if checkpoint else None)
    resolve_device(args.device)  # only to reject a missing device now; each rank resolves its own below
    check_names(config)

    # Act: the process group (under torchrun), the run folder, logging and tracking start here.
    keep_freed_memory()
    rank, world_size, device = distributed.setup(args.device)
    if rank == 0:  # only rank 0 writes files
        config.make_run_dirs()
        setup_logging(config.log_dir)
    else:
        logging.basicConfig(level=logging.WARNING)
    logger = get_logger("train")
    logger.info(f"Run folder: {config.save_dir}   device: {device}   processes: {world_size}")
    seed_everything(config["seed"] + rank)

    data = config.init_obj("data_loader", DATA_LOADERS, seed=config["seed"])
    logger.info(f"Data: {data.dataset.summary()}")
    valid = data.split_validation()
    if world_size > 1:  # each rank: its own batches, its share of the evaluation users
        data.distribute(rank, world_size, config["seed"])
        valid = valid.shard(rank, world_size) if valid is not None else None
    model = config.init_obj("arch", MODELS, dataset=data.dataset).to(device)
    logger.info(model)
    criterion = config.init_ftn("loss", LOSSES)
    metrics = parse_metrics(config["metrics"], METRICS)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = config.init_obj("optimizer", OPTIMIZERS, params) if params else None
    lr_scheduler = None
    if optimizer is not None and config.get("lr_scheduler") is not None:
        lr_scheduler = config.init_obj("lr_scheduler", LR_SCHEDULERS, optimizer)
    if world_size > 1 and params:  # gradients are all-reduced across ranks in backward
        model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    wandb_cfg = config["wandb"]
    writer = WandbWriter(
        config.config,
        config.log_dir,
        mode=wandb_cfg["mode"],
        project=wandb_cfg.get("project", "recsys-template"),
        entity=wandb_cfg.get("entity"),
        run_name=f"{config['name']}/{config.save_dir.name}",
        run_id=checkpoint.get("wandb_run_id") if checkpoint else None,
        enabled=rank == 0,
    )
    trainer = config.init_obj(
        "trainer",
        TRAINERS,
        model,
        criterion,
        metrics,
        optimizer,
        config=config,
        device=device,
        data_loader=data,
        valid_data_loader=valid,
        lr_scheduler=lr_scheduler,
        writer=writer,
        checkpoint=checkpoint,
    )
    exit_code = 1
    try:
        trainer.train()
        exit_code = 0
        if rank == 0:
            monitor = config["trainer"]["monitor"].split()[-1] if config["trainer"]["monitor"] != "off" else None
            plot_history(config.save_dir / "metrics.jsonl", config.save_dir / "curves.png", monitor, logger)
    finally:
        writer.finish(exit_code)
        distributed.cleanup()


def _terminate(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _terminate)
    arguments = parse_args(sys.argv[1:])
    try:
        code = run_main(main, arguments)
    except TrainingError as e:
        print(f"error: {e}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    distributed.exit_process(code)
