"""The hook runner's schedule and the status file's coalescing, on the host
(real child processes, no device): one hook at a time, a change during a
run gives one more run for the newest, a hook past its timeout is killed;
the status file is written at most once per interval."""

import json
import os
import select
import stat

import pytest

from cuse_vmgenid.hooks import HookRunner, list_hooks
from cuse_vmgenid.status import MAX_SHARE, MIN_INTERVAL, StatusFile

HANG = 30


def write_hook(folder, name, body, mode=0o755):
    path = folder / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(mode)
    return str(path)


class Loop:
    """The daemon loop's part for hooks: service, then wait on the pidfd."""

    def __init__(self, runner):
        self.runner = runner
        self.now = 0.0
        self.finished = []

    def step(self) -> None:
        """One hook ends (the pidfd is readable), the runner goes on."""
        fd = self.runner.fd()
        assert fd is not None, "no hook running"
        assert select.select([fd], [], [], HANG)[0], "hook never exited"
        self.runner.exited(self.now)

    def run_out(self) -> None:
        self.runner.service(self.now)
        while self.runner.fd() is not None:
            self.step()


@pytest.fixture
def make_loop(tmp_path):
    def make(timeout=HANG, start=0):
        loop = None

        def finished(generation):
            loop.finished.append(generation)

        runner = HookRunner(str(tmp_path / "hooks.d"), timeout,
                            {"VMGENID_STATUS": "/nowhere"}, start, finished)
        loop = Loop(runner)
        return loop
    (tmp_path / "hooks.d").mkdir()
    return make


def test_list_hooks_in_name_order_skipping_hidden_backups_and_plain_files(
        tmp_path):
    folder = tmp_path / "hooks.d"
    folder.mkdir()
    for name in ("20-b", "10-a", ".hidden", "30-c~", "40-d.dpkg-old",
                 "50-e.ucf-dist"):
        write_hook(folder, name, "true\n")
    write_hook(folder, "15-plain", "true\n", mode=0o644)
    (folder / "17-dir").mkdir()
    assert [os.path.basename(p) for p in list_hooks(str(folder))] == \
        ["10-a", "20-b"]
    assert list_hooks(str(tmp_path / "absent")) == []


def test_a_run_executes_each_hook_in_turn_with_the_generations(tmp_path,
                                                               make_loop):
    log = tmp_path / "log"
    for name in ("10-a", "20-b"):
        write_hook(tmp_path / "hooks.d", name,
                   f'echo "$(basename $0) $VMGENID_GENERATION '
                   f'$VMGENID_PREVIOUS $VMGENID_STATUS" >> {log}\n')
    loop = make_loop(start=4)
    loop.runner.changed(5)
    loop.runner.service(loop.now)
    assert loop.runner.running.endswith("10-a")   # one at a time
    loop.run_out()
    assert log.read_text().splitlines() == ["10-a 5 4 /nowhere",
                                            "20-b 5 4 /nowhere"]
    assert loop.finished == [5]
    assert loop.runner.done_for == 5
    assert [r.result for r in loop.runner.results] == ["exit 0", "exit 0"]


def test_changes_during_a_run_coalesce_into_one_run_for_the_newest(
        tmp_path, make_loop):
    log = tmp_path / "log"
    write_hook(tmp_path / "hooks.d", "10-a",
               f'echo "$VMGENID_GENERATION $VMGENID_PREVIOUS" >> {log}\n')
    loop = make_loop()
    loop.runner.changed(1)
    loop.runner.service(loop.now)
    loop.runner.changed(2)
    loop.runner.changed(3)
    loop.step()         # the run for 1 ends; the run for 3 starts
    assert loop.finished == [1]
    assert loop.runner.running_for == 3
    loop.run_out()
    assert log.read_text().splitlines() == ["1 0", "3 1"]
    assert loop.finished == [1, 3]


def test_a_hook_past_its_timeout_is_killed_and_the_run_goes_on(tmp_path,
                                                              make_loop):
    done = tmp_path / "done"
    write_hook(tmp_path / "hooks.d", "10-hangs", "exec sleep 600\n")
    write_hook(tmp_path / "hooks.d", "20-next", f"touch {done}\n")
    loop = make_loop(timeout=5)
    loop.runner.changed(1)
    loop.runner.service(loop.now)
    assert loop.runner.deadline() == 5
    loop.now = 5
    loop.runner.service(loop.now)     # the loop's timeout fired: kill
    assert loop.runner.deadline() is None
    loop.run_out()
    assert [(os.path.basename(r.name), r.result)
            for r in loop.runner.results] == [("10-hangs",
                                               "killed at timeout"),
                                              ("20-next", "exit 0")]
    assert done.exists()
    assert loop.finished == [1]


def test_a_hook_that_cannot_start_is_recorded_and_skipped(tmp_path,
                                                          make_loop):
    bad = tmp_path / "hooks.d" / "10-no-interpreter"
    bad.write_text("#!/nonexistent/interpreter\n")
    bad.chmod(0o755)
    write_hook(tmp_path / "hooks.d", "20-fails", "exit 3\n")
    loop = make_loop()
    loop.runner.changed(1)
    loop.run_out()
    results = [r.result for r in loop.runner.results]
    assert results[0].startswith("not started:")
    assert results[1] == "exit 3"
    assert loop.finished == [1]


def test_the_status_file_is_written_at_most_once_per_interval(tmp_path):
    path = tmp_path / "run" / "status.json"
    reports = []

    def report():
        reports.append(len(reports))
        return {"n": reports[-1]}

    status = StatusFile(str(path), report, clock=lambda: 0.0)  # no time spent
    assert status.due() == 0.0           # written at the first chance
    status.write_if_due(10.0)
    assert json.loads(path.read_text()) == {"n": 0}
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert status.due() is None          # clean: nothing to do
    for _ in range(1000):                # a storm of opens
        status.mark_dirty()
    assert status.due() == 10.0 + MIN_INTERVAL
    status.write_if_due(10.0 + MIN_INTERVAL / 2)
    assert reports == [0]
    status.write_if_due(10.0 + MIN_INTERVAL)
    assert reports == [0, 1]
    assert json.loads(path.read_text()) == {"n": 1}
    assert not os.path.exists(f"{path}.new")


def test_a_slow_status_write_pushes_the_next_one_back(tmp_path):
    clock = [100.0]
    cost = [2.0]

    def report():
        clock[0] += cost[0]              # building the report takes time
        return {}

    status = StatusFile(str(tmp_path / "status.json"), report,
                        clock=lambda: clock[0])
    status.write_if_due(100.0)
    status.mark_dirty()
    # 2 s spent: the status may take only MAX_SHARE of the loop.
    assert status.due() == pytest.approx(100.0 + 2.0 / MAX_SHARE)
    cost[0] = 0.0
    status.write_if_due(status.due())
    status.mark_dirty()
    assert status.due() == pytest.approx(100.0 + 2.0 / MAX_SHARE
                                         + MIN_INTERVAL)
