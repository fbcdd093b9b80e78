"""Experiment tracking in wandb: the config once, then one row of figures per epoch.

mode: 'online', 'offline' (default; works without network, `wandb sync` later) or 'disabled'.
The WANDB_MODE environment variable, when set, takes precedence over the config; a run started by
`wandb agent` (WANDB_SWEEP_ID set) is online, as its sweep needs.
wandb is imported only when a run is actually started. Tracking never stops a run that could
train: online without a login is refused before anything is created (check_wandb), a server that
cannot be reached in INIT_TIMEOUT seconds turns the run offline, and a wandb folder that cannot be
written turns tracking off, each with one line in the log.
"""

import logging
import netrc
import os
from pathlib import Path
from urllib.parse import urlparse

from utils.errors import ConfigError

INIT_TIMEOUT = 30  # seconds to reach the wandb server before the run goes offline
logger = logging.getLogger("wandb_writer")


def effective_mode(mode):
    """WANDB_MODE when set; online for a run a `wandb agent` started (it reports to its sweep, which
    lives on the server); else the config's."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    return "online" if os.environ.get("WANDB_SWEEP_ID") else mode


def has_api_key():
    """Whether wandb can log in without asking: WANDB_API_KEY, or the ~/.netrc entry `wandb login` writes."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        return netrc.netrc().authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def check_wandb(mode):
    """Before a run creates anything: the mode is one wandb knows, and online has a login."""
    mode = effective_mode(mode)
    if mode not in ("online", "offline", "disabled"):
        raise ConfigError(f"wandb.mode / WANDB_MODE: expected online, offline or disabled, got {mode!r}")
    if mode == "online" and not has_api_key():
        raise ConfigError(
            "wandb.mode: online needs a wandb login (run `wandb login`, or set WANDB_API_KEY); "
            "or use offline and `wandb sync` later"
        )


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
        mode = effective_mode(mode)
        self.run = None
        if not enabled or mode == "disabled":
            return
        check_wandb(mode)
        import wandb

        arguments = dict(project=project, entity=entity, name=run_name, config=config, dir=str(log_dir))
        arguments.update(id=run_id, resume="allow" if run_id else None)
        own_cache = "WANDB_CACHE_DIR" not in os.environ  # else ~/.cache/wandb gains two debug logs every run
        if own_cache:
            os.environ["WANDB_CACHE_DIR"] = str(Path(log_dir) / "wandb" / "cache")
        try:
            self.run = self._init(wandb, mode, arguments)
        except OSError as e:  # e.g. a read-only log folder: train without tracking rather than not at all
            logger.warning(
                f"wandb: cannot write its files in {log_dir} ({e.strerror or e}); tracking is off for this run"
            )
            self.run = None
        finally:
            if own_cache:
                del os.environ["WANDB_CACHE_DIR"]

    @staticmethod
    def _init(wandb, mode, arguments):
        if mode != "online":
            return wandb.init(mode=mode, **arguments)
        try:
            return wandb.init(mode="online", settings=wandb.Settings(init_timeout=INIT_TIMEOUT), **arguments)
        except Exception as e:  # noqa: BLE001 - wandb's errors for a server out of reach vary by version
            if isinstance(e, OSError) and not isinstance(e, (TimeoutError, ConnectionError)):
                raise  # its files cannot be written: offline would fail the same way
            logger.warning(
                f"wandb: the server could not be reached in {INIT_TIMEOUT} s ({type(e).__name__}); this run is "
                "recorded offline (wandb sync uploads it later)"
            )
            return wandb.init(mode="offline", **arguments)

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
