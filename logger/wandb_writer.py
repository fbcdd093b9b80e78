"""Experiment tracking in wandb: the config once, then one row of figures per epoch.

mode: 'online', 'offline' (default; works without network, `wandb sync` later) or 'disabled'.
The WANDB_MODE environment variable, when set, takes precedence over the config.
wandb is imported only when a run is actually started.
"""

import os

from utils.errors import ConfigError


class WandbWriter:
    def __init__(
        self,
        config,
        log_dir,
        mode="offline",
        project="recsys-template",
        entity=None,
        run_name=None,
        run_id=None,
        enabled=True,
    ):
        mode = os.environ.get("WANDB_MODE") or mode
        self.run = None
        if not enabled or mode == "disabled":
            return
        if mode not in ("online", "offline"):
            raise ConfigError(f"wandb.mode / WANDB_MODE: expected online, offline or disabled, got {mode!r}")
        import wandb

        self.run = wandb.init(
            project=project,
            entity=entity,
            name=run_name,
            config=config,
            dir=str(log_dir),
            mode=mode,
            id=run_id,
            resume="allow" if run_id else None,
        )

    @property
    def run_id(self):
        return None if self.run is None else self.run.id

    def log(self, figures, step):
        if self.run is not None:
            self.run.log(figures, step=step)

    def finish(self, exit_code=0):
        if self.run is not None:
            self.run.finish(exit_code=exit_code)
            self.run = None
