"""``--dist loadgroup`` that keeps its promise: an xdist_group's tests run on one worker.

pytest-xdist 3.8 carries a test's group to the scheduler by appending ``@group`` to its node
id in the worker, and pytest 9.2's structured node ids no longer take that edit: the groups
are silently ignored and every test goes wherever a worker is free (pytest-xdist#1386).
Here each worker writes the groups it collected (node id to group name) into a directory
the controller gave it, before it reports its collection; the scheduler reads them before
it hands out the first test and schedules each group as one unit, as loadgroup does. The
same directory, shared by the run's workers and removed at its end, holds the servers'
slots lock (helpers.server_slots).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

_DIRECTORY = pytest.StashKey[Path]()
_WORKER_KEY = "myfy_xdist_groups"


def group_of(item: pytest.Item) -> str | None:
    """The item's xdist group, named as pytest-xdist names it (several are joined)."""
    names = {
        str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
        for mark in item.iter_markers("xdist_group")
    }
    return "_".join(sorted(names)) or None


def give_directory(node: Any) -> None:
    """Controller, for each worker it starts: where the workers write their groups."""
    config = node.config
    if _DIRECTORY not in config.stash:
        config.stash[_DIRECTORY] = Path(tempfile.mkdtemp(prefix="myfy-xdist-groups-"))
    node.workerinput[_WORKER_KEY] = str(config.stash[_DIRECTORY])


def shared_directory(config: pytest.Config) -> Path | None:
    """Worker: the directory the controller gave every worker of this run (None without
    xdist workers). The servers' slots lock lives there too (conftest.shared_server_slots)."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput is None or _WORKER_KEY not in workerinput:
        return None
    return Path(workerinput[_WORKER_KEY])


def write_groups(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Worker, once its items are marked: write ``{node id: group}`` for the controller."""
    directory = shared_directory(config)
    if directory is None:
        return
    groups = {item.nodeid: name for item in items if (name := group_of(item)) is not None}
    path = directory / f"{os.environ['PYTEST_XDIST_WORKER']}.json"
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(groups))
    temporary.replace(path)


def remove_directory(config: pytest.Config) -> None:
    if _DIRECTORY in config.stash:
        shutil.rmtree(config.stash[_DIRECTORY], ignore_errors=True)


def scheduler(config: pytest.Config, log: Any) -> Any:
    """loadgroup's scheduler, with the groups the workers wrote."""
    from xdist.scheduler import LoadGroupScheduling

    class GroupScheduling(LoadGroupScheduling):
        def __init__(self, config: pytest.Config, log: Any) -> None:
            super().__init__(config, log)
            self.groups: dict[str, str] = {}

        def schedule(self) -> None:
            if self.collection is None:  # the first call: every worker has collected
                for path in sorted(config.stash[_DIRECTORY].glob("*.json")):
                    self.groups.update(json.loads(path.read_text()))
            super().schedule()

        def _split_scope(self, nodeid: str) -> str:
            group = self.groups.get(nodeid)
            return group if group is not None else str(super()._split_scope(nodeid))

    return GroupScheduling(config, log)
