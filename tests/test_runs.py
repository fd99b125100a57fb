"""Run folders are claimed atomically: processes claiming in one folder at once never share a
``version_<n>`` (unet_train.runs)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from unet_train.runs import claim_version, writes_the_run

REPO = Path(__file__).resolve().parents[1]

# Each process waits for the start file, then claims ROUNDS times the way a run starts: the next
# number by the folders it sees (as Lightning's loggers pick it), then the claim. Two roots per
# claim, as a CSV and a TensorBoard logger in folders of their own.
CLAIMER = """
import os, sys, time
from pathlib import Path
from unet_train.runs import claim_version

base, start_file, rounds = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
roots = [base / "csv", base / "tb"]
while not start_file.exists():
    time.sleep(0.001)
for _ in range(rounds):
    seen = [int(p.name[8:]) for p in roots[0].glob("version_*")] if roots[0].is_dir() else []
    version, made = claim_version(roots, max(seen, default=-1) + 1)
    assert made == [root / f"version_{version}" for root in roots], made
    print(version, flush=True)
"""


def test_processes_claiming_at_once_never_share_a_folder(tmp_path):
    rounds = 200
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "NODE_RANK")}
    env["PYTHONPATH"] = str(REPO)
    start = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIMER, str(tmp_path), str(start), str(rounds)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    start.touch()
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outs]
    claimed = [[int(line) for line in out.split()] for out, _ in outs]
    assert [len(c) for c in claimed] == [rounds, rounds]
    assert not set(claimed[0]) & set(claimed[1])  # no number went to both
    for root in ("csv", "tb"):
        names = {p.name for p in (tmp_path / root).iterdir()}
        assert names == {f"version_{n}" for n in claimed[0] + claimed[1]}


def test_a_held_number_is_passed_over_in_every_root(tmp_path):
    (tmp_path / "tb" / "version_1").mkdir(parents=True)
    (tmp_path / "csv").mkdir()
    (tmp_path / "csv" / "version_3").write_text("")  # a file by that name holds the number too
    version, made = claim_version([tmp_path / "csv", tmp_path / "tb", tmp_path / "csv"], 1)
    assert version == 2 and made == [tmp_path / "csv" / "version_2", tmp_path / "tb" / "version_2"]
    # The number the other root held is not left half-claimed in the first one.
    assert not (tmp_path / "csv" / "version_1").exists()
    assert claim_version([tmp_path / "csv"], 3) == (4, [tmp_path / "csv" / "version_4"])


def test_only_rank_zero_claims(tmp_path, monkeypatch):
    for name in ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert writes_the_run()
    monkeypatch.setenv("NODE_RANK", "1")  # the second node of a multi-node run
    assert not writes_the_run()
    assert claim_version([tmp_path / "csv"], 5) == (5, [])
    assert not (tmp_path / "csv").exists()
