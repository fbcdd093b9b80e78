"""Train a recommender from a JSON config.

python train.py -c config.json                       # a new run
python train.py -r saved/models/NAME/RUN/checkpoint-epoch10.pth   # resume it
python train.py -c config.json --lr 0.001 --set arch.args.layers=[64,64]
python train.py --list                               # every model, data loader, trainer, loss, metric
"""

import signal
import sys

from utils.errors import exit_interrupted

if __name__ == "__main__":  # Ctrl-C while the imports below load ends quietly, as it does later
    signal.signal(signal.SIGINT, exit_interrupted)

import argparse
import logging
from pathlib import Path

from torch.nn.parallel import DistributedDataParallel

from base.base_trainer import TrainingError
from base.phases import PhaseOptimizers
from data_loader import DATA_LOADERS, build_data, check_data_config
from logger.logger import attach_log_file, close_log_files, close_logging, get_logger, run_main, setup_logging
from logger.plot import plot_history
from logger.wandb_writer import WandbWriter, check_wandb
from model import LOSSES, METRICS, MODELS
from trainer import TRAINERS
from trainer.evaluation import parse_metrics
from utils import checks, distributed
from utils.checkpoint import check_data, load_checkpoint, seed_everything
from utils.device import configure_device, keep_freed_memory, resolve_device, set_threads
from utils.errors import ConfigError, RunFolderError
from utils.files import read_jsonl, write_json
from utils.memory import check_model_memory
from utils.optimizers import LR_SCHEDULERS, OPTIMIZERS, check_optimizer_and_scheduler
from utils.parse_config import ConfigParser, apply_override, parse_set_option, read_json, validate
from utils.registry import listing
from utils.runs import RunFolder, default_run_id, find_latest_checkpoint, run_folder_of

_UNTIL_EXIT = []  # objects whose teardown must not run before the process exits


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
    parser.add_argument("--run-id", dest="run_id", help="run folder name (default: a timestamp and a random suffix)")
    parser.add_argument(
        "--epochs",
        nargs="+",
        metavar="N",
        help="shortcut for --set trainer.epochs=N; or 'best-of RUN': the best epoch of an earlier run "
        "(its model_best.pth), e.g. to train on all the data as long as that run's best",
    )
    parser.add_argument("--lr", type=float, help="shortcut for --set optimizer.args.lr=X")
    parser.add_argument("--bs", type=int, help="shortcut for --set batches.batch_size=N")
    parser.add_argument("--threads", type=int, help="shortcut for --set trainer.threads=N (torch's CPU threads)")
    parser.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a config key, VALUE in JSON: --set arch.args.layers=[64,64]",
    )
    parser.add_argument(
        "--list", action="store_true", help="list every model, data loader, trainer, loss and metric, then exit"
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


def epochs_option(values):
    """--epochs N, or --epochs best-of RUN (a run folder or a checkpoint in it): (epochs, the
    model_best.pth they were read from, or None)."""
    if values is None:
        return None, None
    if len(values) == 1 and values[0].lstrip("-").isdigit():
        return int(values[0]), None
    if len(values) != 2 or values[0] != "best-of":
        raise ConfigError(f"--epochs: expected N or 'best-of RUN', got {' '.join(values)!r}")
    run = Path(values[1])
    best = RunFolder.at(run.parent if run.is_file() else run).best
    if not best.is_file():
        raise ConfigError(
            f"--epochs best-of {values[1]}: {best} not found (give a run folder that has a model_best.pth)"
        )
    return load_checkpoint(best)["epoch"], best


def locate_checkpoint(args):
    """The checkpoint given with -r (resolving 'latest'), read and checked, or None."""
    if args.resume is None:
        return None
    if not args.resume.strip():
        raise ConfigError("-r: the checkpoint path is empty (give a checkpoint file, or -r latest)")
    if args.resume == "latest":
        # The config (-c, default config.json) only says where the runs are; the checkpoint's own
        # config is what training continues with.
        located = read_json(args.config or "config.json")
        for text in args.set or []:  # --set trainer.save_dir=... says where to look too
            apply_override(located, *parse_set_option(text))
        validate(located)
        args.resume = str(find_latest_checkpoint(located["trainer"]["save_dir"], located["name"]))
        args.config = None
    return load_checkpoint(args.resume)


def plan_run(config, args, checkpoint):
    """(the run's folders, whether it continues the checkpoint's own run, a note for the log) —
    decided, not created.

    A resumed run continues in its checkpoint's run folder. It starts a new one (recording its
    parent) when -c, --run-id or --set trainer.save_dir is given beside -r (the command line wins),
    when the checkpoint is not in a run folder, or when its run went on past it (a branch from an
    older checkpoint, or model_best.pth, must not cut that run's history or replace its files).
    """
    save_dir, name = config["trainer"]["save_dir"], config["name"]
    if checkpoint is None:
        return RunFolder(save_dir, name, args.run_id or default_run_id()), False, None
    origin = run_folder_of(args.resume)
    # --set trainer.save_dir elsewhere than the checkpoint's run: the command line wins, in a new run there
    given = any(s.startswith("trainer.save_dir=") for s in args.set or [])
    new_save_dir = given and origin is not None and Path(save_dir).resolve() != Path(origin[0]).resolve()
    note = None
    if origin is not None and args.config is None and args.run_id is None and not new_save_dir:
        run = RunFolder(*origin)
        last = last_epoch_of(run)
        if last <= checkpoint["epoch"]:
            return run, True, None
        note = (
            f"{args.resume} is epoch {checkpoint['epoch']} of a run that went on to epoch {last}: training "
            "continues in a new run folder, and that run's files stay as they are"
        )
    if args.config is None and not given:
        save_dir = str(origin[0]) if origin is not None else "saved/"
    return RunFolder(save_dir, name, args.run_id or default_run_id()), False, note


def last_epoch_of(run):
    """The last epoch a run folder holds a record of: its epoch checkpoints and metrics.jsonl."""
    epochs = list(run.epoch_checkpoints())
    if run.metrics.is_file():
        epochs += [r["epoch"] for r in read_jsonl(run.metrics) if isinstance(r, dict) and checks.is_int(r.get("epoch"))]
    return max(epochs, default=0)


def changes_data(args):
    """Whether the command line changes the data or its split (data_loader.* or evaluation.* with --set)."""
    return any(s.startswith(("data_loader.", "evaluation.")) for s in args.set or [])


def build(config, data=None, device=None, fit=True, logger=None):
    """The run's model, loss, metrics, optimizer, lr scheduler and trainer: the one place each is
    made from the config, in this order. Without `data` it is the dry run main() starts with: the
    same steps check each section's class and arguments (the optimizer and scheduler on a stand-in
    parameter) and build nothing, so a wrong name or argument is one line before any data is read.
    fit: fit a closed-form model now (not when a checkpoint will load its fitted state)."""
    dry = data is None
    if dry:
        for registry in (MODELS, DATA_LOADERS, TRAINERS, LOSSES, METRICS):
            registry.check()
        check_data_config(config)
        model = config.check_obj("arch", MODELS, dataset=None)
    else:
        check_model_memory(config, MODELS, data.dataset, device)
        model = config.init_obj("arch", MODELS, dataset=data.dataset)
        if fit:
            model.fit(data.dataset)  # closed-form models fit here, once; a resume loads the fitted state
        model = model.to(device)
        note = model.on_device(device)
        if note:
            logger.info(note)
        logger.info(model)
    criterion = None
    if config.get("loss") is not None:
        criterion = config.check_obj("loss", LOSSES, None, None) if dry else config.bind_loss("loss", LOSSES)
    elif not dry and model.has_own_loss():
        criterion = model.loss
    metrics = parse_metrics(config["metrics"], METRICS)
    params = None if dry else [p for p in model.parameters() if p.requires_grad]
    if dry:
        check_optimizer_and_scheduler(config)
        check_wandb(config["wandb"]["mode"])
        optimizer = lr_scheduler = None
    else:
        optimizer = build_optimizer(config, model, params)
        lr_scheduler = None
        if optimizer is not None and config.get("lr_scheduler") is not None:
            lr_scheduler = config.init_obj("lr_scheduler", LR_SCHEDULERS, optimizer)
    world_size = distributed.world_size()
    if params and world_size > 1:  # gradients are all-reduced across ranks in backward
        model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        # Never freed before the process ends (distributed.exit_process): freeing its reducer joins
        # gloo's worker thread while holding the GIL, and a worker still freeing a finished
        # collective waits for the GIL: a deadlock at the end of a finished run (seen under load).
        _UNTIL_EXIT.append(model)
    valid = None if dry else data.evaluation("valid")
    if valid is not None and world_size > 1:
        valid = valid.shard(distributed.rank(), world_size)  # each rank: its share of the evaluation users
    make = config.check_obj if dry else config.init_obj
    parts = (model, criterion, metrics, optimizer)
    options = dict(config=config, device=device, data_loader=data, valid_data_loader=valid, lr_scheduler=lr_scheduler)
    return make("trainer", TRAINERS, *parts, **options)


def main(args):
    logger = get_logger("train")
    # Parse: read and check everything before anything is created on disk.
    if args.list:
        print(listing(MODELS, DATA_LOADERS, TRAINERS, LOSSES, METRICS))
        return
    args.epochs, args.epochs_from = epochs_option(args.epochs)
    checkpoint = locate_checkpoint(args)
    config = ConfigParser.from_args(args, checkpoint_config=checkpoint["config"] if checkpoint else None)
    resolve_device(args.device)  # only to reject a missing device now; each rank resolves its own below
    build(config)  # the dry run
    run, continuing, branch_note = plan_run(config, args, checkpoint)
    if checkpoint is not None and not continuing:  # a new run that starts from another's checkpoint
        config.config["_parent"] = {"checkpoint": str(args.resume), "epoch": checkpoint["epoch"]}
    if checkpoint is not None and config["trainer"]["epochs"] <= checkpoint["epoch"]:
        raise ConfigError(
            f"trainer.epochs: {args.resume} is at epoch {checkpoint['epoch']} and trainer.epochs is "
            f"{config['trainer']['epochs']}, so there is nothing to train; give --epochs "
            f"{checkpoint['epoch'] + 1} or more (python test.py -r ... evaluates it)"
        )

    # The process: device, threads, the process group under torchrun, the console log.
    rank, world_size, device = distributed.setup(args.device)
    if rank == 0:
        setup_logging(None)  # the console now; the log file once the run folder exists
    else:
        logging.basicConfig(level=logging.WARNING)
    threads = set_threads(config["trainer"].get("threads", "auto"))
    if device.type == "cpu":
        keep_freed_memory()
    configure_device(device)
    logger.info(f"device: {device}   processes: {world_size}   threads: {threads}")
    if branch_note:
        logger.info(branch_note)
    seed_everything(config["seed"] + rank)

    # Build: data (located, or downloaded into data_dir), model, optimizer, trainer; a resume loads
    # its state here. Nothing is written before all of it has worked.
    if args.epochs_from is not None:
        logger.info(f"--epochs best-of: {config['trainer']['epochs']} epochs, the best of {args.epochs_from}")
    data = build_data(config, seed=config["seed"])
    logger.info(f"Data: {data.dataset.summary()}; evaluation: {data.protocol.describe()}")
    if checkpoint is not None:
        check_data(checkpoint, data.fingerprint(), args.resume, changes_data(args), logger)
    if world_size > 1:  # each rank: its own batches
        data.distribute(rank, world_size, config["seed"])
    trainer = build(config, data, device, fit=checkpoint is None, logger=logger)
    if checkpoint is not None:  # -c beside -r: fine-tuning, with the new config's optimizer settings
        trainer.load_state_dict(checkpoint, args.resume, fine_tune=args.config is not None)

    # Act: the run folder (created exclusively, locked), its config, the log file and tracking.
    finished = False
    try:
        if rank == 0:
            run.reopen() if continuing else run.create(fixed_id=args.run_id is not None)
            write_json(config.config, run.config)
            attach_log_file(run.log_dir)
        logger.info(f"Run folder: {run.path}")
        wandb_cfg = config["wandb"]
        writer = WandbWriter(
            config.config,
            run.log_dir,
            mode=wandb_cfg["mode"],
            project=wandb_cfg.get("project", "recsys-template"),
            entity=wandb_cfg.get("entity"),
            run_name=f"{config['name']}/{run.path.name}",
            run_id=checkpoint.get("wandb_run_id") if checkpoint else None,
            enabled=rank == 0,
        )
        trainer.set_output(run, writer, continuing=continuing)
        exit_code = 1
        try:
            trainer.train()
            exit_code = 0
        except OSError as e:  # a full disk or a vanished folder: what could be saved is said in the log
            raise RunFolderError(f"writing in {run.path} failed ({e.strerror or e}); {trainer.saved_note}") from None
        finally:
            finished = trainer.saved_anything()
            writer.finish(exit_code)
        if rank == 0:
            best = trainer.best_epoch if trainer.monitor_mode != "off" else None
            curves = (run.metrics, run.curves, trainer.monitor_metric, logger)
            plot_history(*curves, resumed_from=trainer.resumed_from, best_epoch=best)
    finally:
        if rank == 0 and not finished and not continuing and run.created:
            close_log_files()  # released before its folder goes
            if run.remove_if_empty(keep_log=False):
                logger.info(f"The run ended before its first epoch was saved: {run.path} was removed")
        run.release()
        distributed.cleanup()


def build_optimizer(config, model, params):
    """The config's optimizer over the trainable parameters; one for each phase of a model that
    trains in phases (base/phases.py)."""
    if not params or not config.get("optimizer"):
        return None
    phases = model.phases()
    if not phases:
        return config.init_obj("optimizer", OPTIMIZERS, params)
    if config.get("lr_scheduler") is not None:
        raise ConfigError(
            f"lr_scheduler: {type(model).__name__} trains in phases, one optimizer each, and a scheduler is not "
            "supported there; remove lr_scheduler (set it to null)"
        )
    return PhaseOptimizers([config.init_obj("optimizer", OPTIMIZERS, list(phase.parameters)) for phase in phases])


def run(argv):
    """train.py's whole command: the exit code (0, 1 for a stopped run, 2 for bad input, 130 for an interrupt)."""
    arguments = parse_args(argv)
    try:
        code = run_main(main, arguments)
    except TrainingError as e:
        get_logger("train").error(f"error: {e}")
        print(f"error: {e}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    close_logging()
    return code


def _terminate(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)  # from here each script handles Ctrl-C
    for name in ("SIGTERM", "SIGHUP"):  # closing the terminal ends the run like Ctrl-C
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), _terminate)
    distributed.exit_process(run(sys.argv[1:]))
