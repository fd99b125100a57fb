"""``unet_runtime.keep_freed_memory``: freed large blocks are reused without new page faults.

Each check runs in a fresh interpreter, because the setting is process-wide and cannot be undone.
The measure is the count of minor page faults when a freed 64 MiB block is allocated again and
written: a block handed back to the system comes back as 16,384 new pages, a kept one as none.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import textwrap

import pytest

glibc_only = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
    reason="mallopt is glibc's",
)

PAGES = 16384  # 64 MiB of 4 KiB pages, far above glibc's largest mmap threshold (32 MiB)

PROBE = textwrap.dedent(
    f"""
    import ctypes, json, resource, sys
    from unet_runtime import freed_memory_kept, keep_freed_memory, machine_line

    if "unet" in sys.argv[1:]:  # build a model, and only that
        from unet_spec import get_preset
        from unet_torch import UNet

        UNet(get_preset("seed-small"))
        applied = False
    elif "trainer" in sys.argv[1:]:  # a Trainer of the user's own, given the callback
        from lightning.pytorch import Callback, Trainer
        from lightning.pytorch.demos.boring_classes import BoringModel
        from unet_train.process import KeepFreedMemory

        class Seen(Callback):
            def on_train_start(self, trainer, pl_module):
                self.kept = freed_memory_kept()

        keep, seen = KeepFreedMemory(), Seen()
        trainer = Trainer(accelerator="cpu", max_steps=1, limit_val_batches=0, logger=False,
                          enable_checkpointing=False, enable_progress_bar=False,
                          enable_model_summary=False, callbacks=[keep, seen])
        assert keep.in_force is None and not freed_memory_kept()  # building changes nothing
        trainer.fit(BoringModel())
        assert seen.kept, "not in force when training started"
        applied = keep.in_force
    else:
        applied = keep_freed_memory()
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = (ctypes.c_size_t,)
    libc.free.argtypes = (ctypes.c_void_p,)
    size = {PAGES} * 4096

    def round_trip():
        block = libc.malloc(size)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        ctypes.memset(block, 1, size)  # touch every page
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
        libc.free(block)
        return faults

    round_trip()  # the first use faults in either way
    print(json.dumps({{"applied": applied, "kept": freed_memory_kept(),
                      "faults": round_trip(),
                      # The machine line imports torch: asked for only where it is checked.
                      "line": machine_line() if "line" in sys.argv else None}}))
    """
)


def probe(*args: str, **env: str) -> dict:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("MALLOC_") and k not in ("GLIBC_TUNABLES", "LD_PRELOAD", "UNET_MALLOC")
    }
    out = subprocess.run(
        [sys.executable, "-c", PROBE, *args], env={**clean, **env}, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@glibc_only
def test_freed_blocks_come_back_without_page_faults():
    kept = probe("line")
    assert kept["applied"] and kept["kept"]
    assert kept["faults"] < PAGES // 10, kept
    assert "malloc keeps freed memory" in kept["line"]
    # The same round trip with malloc left alone: the block is unmapped and faulted in again.
    # No machine line here (it costs a torch import): the line is drawn from freed_memory_kept()
    # alone, and its "malloc system" for a process that keeps nothing is checked in
    # test_building_a_unet_leaves_malloc_alone, whose probe imports torch anyway.
    system = probe(UNET_MALLOC="system")
    assert not system["applied"] and not system["kept"]
    assert system["faults"] > PAGES // 2, system


@glibc_only
@pytest.mark.parametrize(
    "env",
    [
        {"MALLOC_MMAP_MAX_": "65536"},
        {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1048576"},
    ],
)
def test_a_choice_made_in_the_environment_is_left_alone(env):
    assert probe(**env)["applied"] is False


@glibc_only
def test_building_a_unet_leaves_malloc_alone():
    """``UNet(spec)`` changes nothing in the process: a freed block is still handed back."""
    built = probe("unet", "line")
    assert not built["kept"]
    assert built["faults"] > PAGES // 2, built
    assert "malloc system" in built["line"]


@glibc_only
def test_a_users_own_trainer_keeps_freed_memory_given_the_callback():
    """``KeepFreedMemory`` makes the setting when the trainer sets up, not when it is built."""
    run = probe("trainer")
    assert run["applied"] and run["kept"]
    assert run["faults"] < PAGES // 10, run


@glibc_only
@pytest.mark.parametrize(
    ("env", "kept"), [({}, True), ({"UNET_MALLOC": "system"}, False)], ids=["default", "system"]
)
def test_the_unet_command_keeps_freed_memory(env, kept):
    """The entry point makes the setting (``train.py`` does the same before LightningCLI starts)."""
    code = (
        "import contextlib, io\n"
        "from unet_runtime import freed_memory_kept\n"
        "from unet_cli.main import main\n"
        "before = freed_memory_kept()\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    status = main(['summary', '--preset', 'seed-small'])\n"
        "print(before, status, freed_memory_kept())\n"
    )
    clean = {k: v for k, v in os.environ.items() if k != "UNET_MALLOC"}
    out = subprocess.run(
        [sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "0", str(kept)]
