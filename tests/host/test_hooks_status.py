# SPDX-License-Identifier: MIT
"""The hooks' runs (cuse-vmgenid-hooks) and the status file's coalescing,
on the host (real child processes, no device): one hook at a time, in name
order, a hook past its timeout killed with what it started, the output
capped, the state kept; the status file is written at most once per
interval.

Hooks run only if their owner and modes can be trusted (hooks.Trust):
the daemon trusts root up to /; here, where tmp_path is under a
world-writable /tmp and the tests may not run as root, the same check
trusts our own uid from tmp_path down."""

import json
import os
import stat
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cuse_vmgenid.service import hooks as hooks_module
from cuse_vmgenid.service.hooks import (OUTPUT_BYTES, OUTPUT_LINES,
                                        HookOutput, HookResult, State, Trust,
                                        list_hooks, run_hooks)
from cuse_vmgenid.service.status import (MAX_DELAY, MAX_SHARE, MIN_INTERVAL,
                                         QUIET, StatusFile)
from vmgenid.status import watcher_file, watchers_dir

HANG = 30


def ours(tmp_path) -> Trust:
    return Trust(owner=os.geteuid(), top=str(tmp_path))


def write_hook(folder, name, body, mode=0o755):
    path = folder / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(mode)
    return str(path)


def run(tmp_path, generation=1, previous=0, timeout=HANG):
    """One run of tmp_path/hooks.d, as cuse-vmgenid-hooks does it."""
    return run_hooks(str(tmp_path / "hooks.d"), generation, previous,
                     timeout, {"VMGENID_DEVICE": "/nowhere"},
                     trust=ours(tmp_path))


def results(found) -> list:
    return [(os.path.basename(r.name), r.result) for r in found]


def test_list_hooks_in_name_order_skipping_hidden_backups_and_plain_files(
        tmp_path):
    folder = tmp_path / "hooks.d"
    folder.mkdir()
    for name in ("20-b", "10-a", ".hidden", "30-c~", "40-d.dpkg-old",
                 "50-e.ucf-dist"):
        write_hook(folder, name, "true\n")
    write_hook(folder, "15-plain", "true\n", mode=0o644)
    (folder / "17-dir").mkdir()
    assert [os.path.basename(p)
            for p in list_hooks(str(folder), ours(tmp_path))] == \
        ["10-a", "20-b"]
    assert list_hooks(str(tmp_path / "absent"), ours(tmp_path)) == []


# -- whose hooks run ---------------------------------------------------------

def test_hooks_others_could_change_are_skipped_with_the_reason(tmp_path,
                                                               caplog):
    folder = tmp_path / "hooks.d"
    folder.mkdir()
    write_hook(folder, "10-ok", "true\n")
    write_hook(folder, "20-world-writable", "true\n", mode=0o757)
    write_hook(folder, "30-group-writable", "true\n", mode=0o775)
    shared = tmp_path / "shared"            # a folder others may write
    shared.mkdir()
    shared.chmod(0o777)
    write_hook(shared, "script", "true\n")
    (folder / "40-link-into-shared").symlink_to(shared / "script")
    (tmp_path / "shared-link").symlink_to(shared)  # a link to a folder
    (folder / "50-through-a-link").symlink_to(tmp_path / "shared-link"
                                              / "script")
    (folder / "60-link-to-ok").symlink_to(folder / "10-ok")
    assert [os.path.basename(p)
            for p in list_hooks(str(folder), ours(tmp_path))] == \
        ["10-ok", "60-link-to-ok"]
    skipped = sorted(r.getMessage() for r in caplog.records)
    assert skipped == [
        f"hook {folder}/20-world-writable skipped: "
        f"{folder}/20-world-writable is world-writable",
        f"hook {folder}/30-group-writable skipped: "
        f"{folder}/30-group-writable is group-writable",
        f"hook {folder}/40-link-into-shared skipped: {shared} is "
        "world-writable",
        f"hook {folder}/50-through-a-link skipped: {shared} is "
        "world-writable"]


def test_a_hook_in_a_group_writable_folder_or_of_another_owner_is_skipped(
        tmp_path, caplog):
    folder = tmp_path / "hooks.d"
    folder.mkdir()
    write_hook(folder, "10-a", "true\n")
    someone_else = Trust(owner=os.geteuid() + 1, top=str(tmp_path))
    assert list_hooks(str(folder), someone_else) == []
    assert caplog.records[-1].getMessage() == (
        f"hook {folder}/10-a skipped: {tmp_path} is owned by uid "
        f"{os.geteuid()}, not {os.geteuid() + 1}")
    folder.chmod(0o775)
    assert list_hooks(str(folder), ours(tmp_path)) == []
    assert caplog.records[-1].getMessage() == (
        f"hook {folder}/10-a skipped: {folder} is group-writable")


def test_the_daemons_trust_refuses_a_world_writable_folder_above(tmp_path):
    # /tmp, above tmp_path, is world-writable (sticky or not: refused).
    folder = tmp_path / "hooks.d"
    folder.mkdir()
    hook = write_hook(folder, "10-a", "true\n")
    if not os.stat("/tmp").st_mode & stat.S_IWOTH:
        pytest.skip("/tmp is not world-writable here")
    assert Trust().refusal(hook) is not None


@settings(max_examples=60, deadline=None)
@given(modes=st.lists(st.integers(0, 0o777), min_size=3, max_size=3))
def test_refused_exactly_when_a_folder_or_the_file_is_writable_by_others(
        tmp_path_factory, modes):
    """Any modes of two nested folders and the hook: refused iff one of
    them has a group or world write bit (the owner's bits never matter)."""
    top = tmp_path_factory.mktemp("trust")
    outer, inner = top / "a", top / "a" / "b"
    inner.mkdir(parents=True)
    hook = inner / "hook"
    hook.write_text("#!/bin/sh\n")
    for path, mode in zip((outer, inner, hook), modes, strict=True):
        path.chmod(mode | (0o700 if path != hook else 0))
    refusal = Trust(owner=os.geteuid(), top=str(top)).refusal(str(hook))
    assert (refusal is None) == (not any(m & 0o022 for m in modes)), \
        (refusal, [oct(m) for m in modes])
    for path in (outer, inner):
        path.chmod(0o700)


def test_a_run_executes_each_hook_in_turn_with_the_generations(tmp_path):
    log = tmp_path / "log"
    (tmp_path / "hooks.d").mkdir()
    for name in ("20-b", "10-a"):
        write_hook(tmp_path / "hooks.d", name,
                   f'echo "$(basename $0) $VMGENID_GENERATION '
                   f'$VMGENID_PREVIOUS $VMGENID_DEVICE $(date +%s%N)" '
                   f'>> {log}\n'
                   # The next one starts only once this one ended.
                   "sleep 0.2\n")
    assert results(run(tmp_path, 5, 4)) == [("10-a", "exit 0"),
                                            ("20-b", "exit 0")]
    first, second = [line.split() for line in log.read_text().splitlines()]
    assert (first[:4], second[:4]) == (["10-a", "5", "4", "/nowhere"],
                                       ["20-b", "5", "4", "/nowhere"])
    assert int(second[4]) - int(first[4]) >= 200_000_000


def test_without_a_folder_a_run_runs_nothing_and_an_unreadable_one_says_so(
        tmp_path, caplog):
    assert run(tmp_path) == []
    (tmp_path / "hooks.d").write_text("not a folder")
    assert results(run(tmp_path)) == [("hooks.d",
                                       "not listed: Not a directory")]
    assert "hooks for generation 1 not run: cannot list" in caplog.text


def test_the_state_keeps_what_the_hooks_last_ran_for(tmp_path, caplog):
    path = str(tmp_path / "run" / "state.json")
    assert State(path).load() is None
    State(path).save(7, [HookResult("/h/10-a", "exit 3")])
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    with open(path) as f:
        assert json.load(f)["results"] == [{"hook": "/h/10-a",
                                            "result": "exit 3"}]
    assert State(path).load() == 7
    with open(path, "w") as f:
        f.write("{\"done_for\": \"7\"}")
    assert State(path).load() is None
    assert "taken as no run yet" in caplog.text


def test_a_hook_past_its_timeout_is_killed_and_the_run_goes_on(tmp_path,
                                                              caplog):
    done = tmp_path / "done"
    (tmp_path / "hooks.d").mkdir()
    write_hook(tmp_path / "hooks.d", "10-hangs", "exec sleep 600\n")
    write_hook(tmp_path / "hooks.d", "20-next", f"touch {done}\n")
    started = time.monotonic()
    assert results(run(tmp_path, timeout=1)) == [
        ("10-hangs", "killed at timeout"), ("20-next", "exit 0")]
    assert time.monotonic() - started < HANG
    assert done.exists()
    assert "10-hangs (generation 1): still running after 1s: killed" \
        in caplog.text


def hook_lines(caplog, name: str) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.getMessage().startswith(f"hook {name}: ")]


def test_a_hooks_output_goes_to_the_log_capped(tmp_path, caplog):
    """Lines with the hook's name, up to the caps; the rest read (the
    hook never blocks on a full pipe: it ends by itself) and counted."""
    caplog.set_level("INFO", "cuse_vmgenid")
    (tmp_path / "hooks.d").mkdir()
    path = write_hook(tmp_path / "hooks.d", "10-chatty",
                      "echo first\necho error >&2\n"
                      "yes 'a line' | head -c 3000000\nprintf tail\n")
    assert results(run(tmp_path)) == [("10-chatty", "exit 0")]
    lines = hook_lines(caplog, path)
    assert lines[:3] == [f"hook {path}: first", f"hook {path}: error",
                         f"hook {path}: a line"]
    assert len(lines) == OUTPUT_LINES + 1
    logged = sum(len(line) - len(f"hook {path}: ") + 1
                 for line in lines[:-1])
    assert lines[-1] == (f"hook {path}: {3000000 + 16 - logged} more bytes "
                         f"of output dropped (at most {OUTPUT_LINES} lines, "
                         f"{OUTPUT_BYTES} bytes logged per run)")


@given(st.lists(st.binary(max_size=3000), max_size=30))
@settings(deadline=None, max_examples=50)
def test_hook_output_logged_and_dropped_add_up(chunks):
    logged = []
    output = HookOutput("h")
    output.started()
    real_log = hooks_module.log.info
    hooks_module.log.info = lambda fmt, name, line: logged.append(line)
    try:
        for chunk in chunks:
            output._take(chunk)
        output.close()
    finally:
        hooks_module.log.info = real_log
    total = sum(map(len, chunks))
    assert len(logged) <= OUTPUT_LINES
    text = sum(len(line.encode(errors="surrogateescape")) for line in logged)
    assert text <= OUTPUT_BYTES
    # Each logged line had its newline, but perhaps the last.
    assert total - output.dropped in (text + len(logged), text + len(logged)
                                      - 1)


def alive(pid: int) -> bool:
    """Running: not gone and not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except FileNotFoundError:
        return False


def test_a_timed_out_hook_dies_with_what_escaped_its_group(tmp_path):
    """setsid -f: a child in a new session (its session id its own pid),
    its parent gone at once (so it is orphaned); both it and the hook die
    at the timeout."""
    escaped = tmp_path / "escaped"
    (tmp_path / "hooks.d").mkdir()
    write_hook(tmp_path / "hooks.d", "10-escapes",
               f"setsid -f sh -c 'echo $$ $(ps -o sid= -p $$) > "
               f"{escaped}.new; mv {escaped}.new {escaped}; exec sleep 600'\n"
               f"until [ -e {escaped} ]; do sleep 0.05; done\n"
               "exec sleep 600\n")
    assert results(run(tmp_path, timeout=2)) == [("10-escapes",
                                                  "killed at timeout")]
    escaped_pid, session = map(int, escaped.read_text().split())
    assert session == escaped_pid           # it had left the hook's session
    deadline = time.monotonic() + HANG
    while alive(escaped_pid):
        assert time.monotonic() < deadline, "the escaped child survived"
        time.sleep(0.05)


def test_a_hook_that_cannot_start_is_recorded_and_skipped(tmp_path, caplog):
    (tmp_path / "hooks.d").mkdir()
    bad = tmp_path / "hooks.d" / "10-no-interpreter"
    bad.write_text("#!/nonexistent/interpreter\n")
    bad.chmod(0o755)
    write_hook(tmp_path / "hooks.d", "20-fails", "exit 3\n")
    found = run(tmp_path)
    assert found[0].result.startswith("not started:")
    assert found[1].result == "exit 3"
    # Both at error priority: `journalctl -p err` shows them.
    assert [r.levelname for r in caplog.records
            if "(generation 1): " in r.getMessage()] == ["ERROR", "ERROR"]


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


def test_a_dirty_status_waits_for_a_pause_in_the_requests(tmp_path):
    """Acknowledgements after a change come first: the write waits until
    the requests pause, but never more than MAX_DELAY."""
    now = [10.0]
    status = StatusFile(str(tmp_path / "status.json"), lambda: {},
                        clock=lambda: now[0])
    status.write_if_due(now[0])
    status.mark_dirty()                   # at 10.0
    for t in (10.3, 10.6, 10.9):          # requests keep coming
        status.busy(t)
        assert status.due() == t + QUIET
    status.busy(10.99)
    assert status.due() == 10.0 + MAX_DELAY
    now[0] = 20.0
    status.write_if_due(20.0)
    status.mark_dirty()                   # at 20.0, no request since 10.99
    assert status.due() == 20.0 + MIN_INTERVAL


def test_outdated_watchers_go_to_their_uids_file_and_away_when_none(
        tmp_path):
    me = os.geteuid()
    path = tmp_path / "run" / "status.json"
    watchers = [{"pid": 1, "uid": me}]
    status = StatusFile(str(path), lambda: {"counter": 1},
                        lambda: watchers, clock=lambda: 0.0)
    status.write_if_due(0.0)
    folder = watchers_dir(str(path))
    assert folder == str(tmp_path / "run" / "watchers")
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o711
    mine = watcher_file(folder, me)
    assert stat.S_IMODE(os.stat(mine).st_mode) == 0o400
    assert os.stat(mine).st_uid == me
    with open(mine) as f:
        assert json.load(f) == {"uid": me, "outdated": 1,
                                "outdated_watchers": watchers}
    everyone = watcher_file(folder, None)
    assert stat.S_IMODE(os.stat(everyone).st_mode) == 0o600
    with open(everyone) as f:
        assert json.load(f) == {"outdated_watchers": watchers}
    assert json.loads(path.read_text()) == {"counter": 1}
    watchers.clear()
    status.mark_dirty()
    status.write_if_due(1.0)
    assert os.listdir(folder) == ["all.json"]
    with open(everyone) as f:
        assert json.load(f) == {"outdated_watchers": []}


def test_a_cut_list_says_how_many_its_uid_holds_in_all(tmp_path):
    """The daemon lists a few (MAX_LISTED_WATCHERS); each uid's file says
    how many it holds, also a uid none of whose watchers made the list."""
    me = os.geteuid()
    path = str(tmp_path / "status.json")
    StatusFile(path, dict, lambda: [{"pid": 1, "uid": me}],
               lambda: {me: 300}, clock=lambda: 0.0).write_if_due(0.0)
    with open(watcher_file(watchers_dir(path), me)) as f:
        assert json.load(f) == {"uid": me, "outdated": 300,
                                "outdated_watchers": [{"pid": 1, "uid": me}]}
    StatusFile(path, dict, list, lambda: {me: 7},
               clock=lambda: 0.0).write_if_due(0.0)
    with open(watcher_file(watchers_dir(path), me)) as f:
        assert json.load(f) == {"uid": me, "outdated": 7,
                                "outdated_watchers": []}


def test_a_new_daemon_removes_the_lists_an_old_one_left(tmp_path):
    me = os.geteuid()
    path = str(tmp_path / "status.json")
    old = StatusFile(path, dict, lambda: [{"pid": 1, "uid": me}],
                     clock=lambda: 0.0)
    old.write_if_due(0.0)
    assert sorted(os.listdir(watchers_dir(path))) == [f"{me}.json",
                                                      "all.json"]
    StatusFile(path, dict, list, clock=lambda: 0.0).write_if_due(0.0)
    assert os.listdir(watchers_dir(path)) == ["all.json"]


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
