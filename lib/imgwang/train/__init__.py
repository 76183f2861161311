"""Training: the fit loop and its callbacks (schedule, checkpoints, early stop, grad stats, tracking)."""

from ..core.interrupt import TrainingInterrupted
from .checkpointing import load_checkpoint
from .early_stop import EarlyStop, Monitor
from .grad_stats import GradStats
from .loop import fit
from .optim import make_optimizer, param_groups
from .plots import plot_grad_stats
from .schedule import make_scheduler
from .settings import FitSettings
from .tracking import Tracker, make_tracker

__all__ = ["fit", "FitSettings", "EarlyStop", "Monitor", "TrainingInterrupted", "GradStats", "plot_grad_stats", "make_tracker",
           "Tracker", "make_optimizer", "make_scheduler", "param_groups", "load_checkpoint"]
