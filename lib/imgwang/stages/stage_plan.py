"""A planned stage: its resolved configuration, the version it runs in, and the first writes into that folder.

The driver (stages/driver.py) makes one per stage before any runs, then, stage by stage, `prepare_run_dir`
records it in run.json (the record later stages, RESUME and `make compare` read) and the notebook gets the
configuration itself as its `config` parameter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .. import runs
from ..core.clock import now
from ..spec import STAGES, Stage
from . import resume as resuming
from .plan import written_files


@dataclass
class StagePlan:
    stage: str
    version: str
    runs_dir: Path
    template: Path
    parameters: dict  # the resolved configuration (stages/resolve.py), as the stage function takes it
    force: bool = False
    resume: bool = False
    environment: dict = field(default_factory=dict)

    @property
    def spec(self) -> Stage:
        return STAGES[self.stage]

    @property
    def run_dir(self) -> Path:
        return self.runs_dir / self.version

    @property
    def notebook_out(self) -> Path:
        return self.run_dir / self.spec.notebook

    def prepare_run_dir(self) -> None:
        """Create the folder, move old files aside when forced, record the stage as running."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.force:  # with what the later stages of this version built from the old files
            later = resuming.dependents(self.run_dir, self.stage)
            files = [f for s in (self.stage, *later) for f in written_files(self.run_dir, STAGES[s])]
            moved = runs.move_aside(self.run_dir, files)
            if moved:
                print(f"FORCE=1: earlier {self.stage} files moved to {moved}")
            stale = runs.mark_stale(self.run_dir, later, f"{self.stage} ran again (FORCE=1) on {now()}")
            if stale:
                print(f"FORCE=1: {', '.join(stale)} of {self.version} were built on the old {self.stage}: "
                      f"marked stale, their files moved aside too; run them again")
        elif self.resume and self.notebook_out.exists():
            moved = runs.move_aside(self.run_dir, [self.notebook_out.name])
            print(f"RESUME=1: the interrupted notebook was moved to {moved}")

        def created(info):
            if "environment" not in info:
                info.update(version=self.version, created=now(), environment=self.environment)

        runs.update_run_json(self.run_dir, created)
        runs.update_stage(self.run_dir, self.stage, status="running", started=now(), ended=None, error=None,
                          resumed=self.resume, config=self.parameters)
