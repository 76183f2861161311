"""From checked plans to a version held by this process: claim a new version, take the version's stage lock.

Planning only looks (it must leave runs/ as it was when a check fails); this is the first step that writes.
A version chosen as "the next free one" is claimed with os.mkdir, and when another command took that number
between planning and now, the plans move on to the next free number. Then the version's stage lock is taken:
a stage still running there (another process) is refused in one line, and a stage left `running` by a
process that is gone is marked `interrupted (process gone)`.
"""

from __future__ import annotations

from . import locks
from .. import runs
from ..core.errors import ConfigError


def check_not_busy(run_dir) -> None:
    """Before compute: refuse a version in which another process runs a stage; clean up after a dead one."""
    record = locks.holder(run_dir)
    if record is not None:
        raise locks.VersionBusy(f"{run_dir.name} is busy: {locks.describe(record)}; wait for it to end or stop it first")
    runs.reconcile(run_dir)


def retarget(plan, version: str) -> None:
    old = plan.version
    plan.version = version
    plan.parameters["version"] = version
    if plan.parameters.get("from_version") == old:  # FROM defaulted to the version itself
        plan.parameters["from_version"] = version


def claim_and_lock(plans, new_version: bool) -> locks.StageLock:
    """Claim the plans' version when it is a new one, then lock it for the first plan's stage."""
    first = plans[0]
    if new_version:
        version = runs.claim_version(first.runs_dir, first.version)
        for plan in plans:
            retarget(plan, version)
    lock = locks.StageLock(first.run_dir).acquire(first.stage)
    runs.reconcile(first.run_dir, lock_held=True)
    for plan in plans:  # checked again under the lock: another command may have run it since planning
        if plan.notebook_out.exists() and not (plan.force or plan.resume):
            lock.release()
            raise ConfigError(f"{plan.notebook_out} was written by another command meanwhile: use a new VERSION")
    return lock
